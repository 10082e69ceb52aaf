"""Names used in SII's certification sets and the codes the DTE carries for them.

Document names are SII's (accents and repeated spaces removed before the look-up). The customs
tables (Aduana, "Compendio de Normas Aduaneras", anexo 51) cover the values SII's export sets use;
a value missing here is a clear error naming the set line, and ``company.json`` may add codes
under ``"codes"`` (``{"CodPtoEmbarque": {"PUERTO MONTT": 910}}``).
"""
from __future__ import annotations

import re
import unicodedata

# The DTE types of SII's certification sets, by the name the set gives them.
DOCUMENT_TYPES: dict[str, int] = {
    "FACTURA ELECTRONICA": 33,
    "FACTURA AFECTA ELECTRONICA": 33,
    "FACTURA NO AFECTA O EXENTA ELECTRONICA": 34,
    "FACTURA EXENTA ELECTRONICA": 34,
    "LIQUIDACION FACTURA ELECTRONICA": 43,
    "FACTURA DE COMPRA ELECTRONICA": 46,
    "GUIA DE DESPACHO": 52,
    "GUIA DE DESPACHO ELECTRONICA": 52,
    "NOTA DE DEBITO ELECTRONICA": 56,
    "NOTA DE DEBITO": 56,
    "NOTA DE CREDITO ELECTRONICA": 61,
    "NOTA DE CREDITO": 61,
    "FACTURA DE EXPORTACION ELECTRONICA": 110,
    "FACTURA DE EXPORTACION": 110,
    "NOTA DE DEBITO DE EXPORTACION ELECTRONICA": 111,
    "NOTA DE DEBITO DE EXPORTACION": 111,
    "NOTA DE CREDITO DE EXPORTACION ELECTRONICA": 112,
    "NOTA DE CREDITO DE EXPORTACION": 112,
    "BOLETA ELECTRONICA": 39,
    "BOLETA EXENTA ELECTRONICA": 41,
}

# Types of the purchase book's entries (paper documents too: the book lists what was received).
BOOK_DOCUMENT_TYPES: dict[str, int] = {
    "FACTURA": 30,
    "FACTURA EXENTA": 32,
    "NOTA DE DEBITO": 55,
    "NOTA DE CREDITO": 60,
    "FACTURA ELECTRONICA": 33,
    "FACTURA NO AFECTA O EXENTA ELECTRONICA": 34,
    "FACTURA EXENTA ELECTRONICA": 34,
    "FACTURA DE COMPRA": 45,
    "FACTURA DE COMPRA ELECTRONICA": 46,
    "NOTA DE DEBITO ELECTRONICA": 56,
    "NOTA DE CREDITO ELECTRONICA": 61,
}

# Guías: MOTIVO -> IndTraslado, TRASLADO POR -> TipoDespacho.
IND_TRASLADO: dict[str, int] = {
    "VENTA": 1,
    "OPERACION CONSTITUYE VENTA": 1,
    "VENTAS POR EFECTUAR": 2,
    "VENTA POR EFECTUAR": 2,
    "CONSIGNACIONES": 3,
    "CONSIGNACION": 3,
    "ENTREGA GRATUITA": 4,
    "TRASLADO INTERNO": 5,
    "TRASLADO DE MATERIALES ENTRE BODEGAS DE LA EMPRESA": 5,
    "OTROS TRASLADOS NO VENTA": 6,
    "GUIA DE DEVOLUCION": 7,
    "DEVOLUCION": 7,
    "TRASLADO PARA EXPORTACION": 8,
    "VENTA PARA EXPORTACION": 9,
}
TIPO_DESPACHO: dict[str, int] = {
    "CLIENTE": 1,
    "DESPACHO POR CUENTA DEL RECEPTOR": 1,
    "EMISOR DEL DOCUMENTO AL LOCAL DEL CLIENTE": 2,
    "EMISOR DEL DOCUMENTO A OTRAS INSTALACIONES": 3,
}

# Referencia TpoDocRef codes of the export sets' "REFERENCIA:" lines (SII Formato DTE, table of
# reference types 801-815).
EXPORT_REFERENCES: dict[str, str] = {
    "ORDEN DE COMPRA": "801", "NOTA DE PEDIDO": "802", "CONTRATO": "803", "RESOLUCION": "804",
    "DUS": "807", "B/L": "808", "B/L (CONOCIMIENTO DE EMBARQUE)": "808", "AWB": "809",
    "AWB (AIR WAY BILL)": "809", "MIC": "810", "MIC/DTA": "810", "MIC (MANIFIESTO INTERNACIONAL)": "810",
    "CARTA DE PORTE": "811", "RESOLUCION SNA": "812", "RESOLUCION DEL SNA": "812", "PASAPORTE": "813",
}

CUSTOMS: dict[str, dict[str, int]] = {
    "FmaPagExp": {"COBRANZA": 1, "COBRANZA HASTA 1 ANO": 1, "COBRANZA MAS DE 1 ANO": 2,
                  "ACREDITIVO": 11, "ACREDITIVO HASTA 1 ANO": 11, "CREDITO DE BANCOS": 12,
                  "SIN PAGO": 21, "ANTICIPO": 32, "PAGO ANTICIPADO": 32},
    "CodModVenta": {"A FIRME": 1, "BAJO CONDICION": 2, "EN CONSIGNACION LIBRE": 3,
                    "EN CONSIGNACION CON UN MINIMO A FIRME": 4, "SIN PAGO": 9},
    "CodClauVenta": {"CIF": 1, "CFR": 2, "EXW": 3, "FAS": 4, "FOB": 5, "S/CL": 6, "OTROS": 8,
                     "DDP": 9, "FCA": 10, "CPT": 11, "CIP": 12, "DAT": 17, "DAP": 18},
    "CodViaTransp": {"MARITIMA, FLUVIAL Y LACUSTRE": 1, "AEREO": 4, "POSTAL": 5, "FERROVIARIO": 6,
                     "CARRETERO/TERRESTRE": 7, "CARRETERO / TERRESTRE": 7,
                     "OLEODUCTOS, GASODUCTOS": 8, "TENDIDO ELECTRICO": 9, "OTRA": 10},
    # Chilean ports (embarque) and the foreign ones of the sets (desembarque).
    "CodPuerto": {"ARICA": 901, "IQUIQUE": 902, "ANTOFAGASTA": 903, "COQUIMBO": 904,
                  "VALPARAISO": 905, "SAN ANTONIO": 906, "TALCAHUANO": 907, "SAN VICENTE": 908,
                  "LIRQUEN": 909, "PUERTO MONTT": 910, "PUERTO CHACABUCO": 911, "PUNTA ARENAS": 912,
                  "CALDERA": 918, "HUASCO": 920, "QUINTERO": 921, "CORONEL": 926,
                  "BARCELONA": 563, "SIDNEY": 811, "SYDNEY": 811, "MIAMI": 141, "NEW YORK": 134,
                  "LOS ANGELES": 174, "YOKOHAMA": 442, "CALLAO": 252, "BUENOS AIRES": 262,
                  "SANTOS": 292, "SHANGAI": 411},
    "CodUnidMed": {"S.U.M": 0, "TMB": 1, "QMB": 2, "MKWH": 3, "TMN": 4, "KLT": 5, "KN": 6, "GN": 7,
                   "HL": 8, "LT": 9, "U": 10, "DOC": 11, "U(JGO)": 12, "MU": 13, "MT": 14, "MT2": 15,
                   "MCUB": 16, "PAR": 17, "KNFC": 18, "CARTON": 19, "KWH": 20, "BAR": 23},
    "CodTpoBultos": {"PIEZAS": 10, "TUBOS": 11, "CILINDRO": 12, "ROLLOS": 13, "BARRAS": 16,
                     "LINGOTES": 17, "TRONCOS": 18, "BLOQUE": 19, "CAJON": 21, "CAJAS DE CARTON": 22,
                     "FARDO": 23, "CAJAS DE MADERA": 28, "BOTELLA": 32, "BIDON": 34, "BARRIL": 44,
                     "TAMBOR": 45, "PAQUETE": 61, "SACOS": 62, "BOLSA": 64,
                     "CONTENEDOR DE 20 PIES DRY": 73, "CONTENEDOR DE 40 PIES DRY": 74,
                     "PALLETS": 80, "TABLERO": 81, "BOBINA": 89, "OTROS": 98},
    "CodPais": {"ALEMANIA": 563, "ARGENTINA": 224, "AUSTRALIA": 406, "BOLIVIA": 221, "BRASIL": 220,
                "CANADA": 226, "CHINA": 336, "COLOMBIA": 202, "ECUADOR": 218, "ESPANA": 517,
                "ESTADOS UNIDOS": 225, "ESTADOS UNIDOS DE AMERICA": 225, "FRANCIA": 505,
                "ITALIA": 504, "JAPON": 331, "MEXICO": 216, "PERU": 219, "REINO UNIDO": 510,
                "URUGUAY": 223},
}


def plain(text: str) -> str:
    """Upper case, no accents, single spaces: how names are compared."""
    decomposed = unicodedata.normalize("NFKD", text)
    ascii_text = "".join(c for c in decomposed if not unicodedata.combining(c))
    return re.sub(r"\s+", " ", ascii_text).strip().upper()


def cod_ref(reason: str) -> int:
    """CodRef of a note from SII's RAZON REFERENCIA: 1 annuls, 2 corrects text, 3 amounts."""
    r = plain(reason)
    if r.startswith("ANULA"):
        return 1
    if r.startswith("CORRIGE") and "MONTO" not in r:
        return 2
    return 3
