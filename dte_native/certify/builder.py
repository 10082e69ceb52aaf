"""Turns the cases of a certification set into document inputs (the facade's JSON format,
docs/INPUT.md) and the book sets into book inputs (docs/BOOKS.md).

Every document carries the reference SII looks for: ``TpoDocRef SET``, ``RazonRef "CASO n-m"``
(boletas: ``CodRef SET``, ``RazonRef "CASO-n"``); notes add a second reference to the document
issued for the case they modify (its type, folio and date) with CodRef 1 (annuls), 2 (corrects
text) or 3 (corrects amounts).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Mapping

from .codes import CUSTOMS, EXPORT_REFERENCES, plain
from .parser import BoletaCase, Case, Line, SetError, TestSet

NOTE_TYPES = (56, 61, 111, 112)
EXPORT_TYPES = (110, 111, 112)
IVA_RATE = Decimal("0.19")

DEFAULT_RECEIVER: dict[str, Any] = {
    "RUTRecep": "77777777-7", "RznSocRecep": "CLIENTE DE PRUEBA CERTIFICACION SPA",
    "GiroRecep": "COMERCIO AL POR MAYOR", "DirRecep": "AV. LIBERTADOR B. O'HIGGINS 1449",
    "CmnaRecep": "SANTIAGO", "CiudadRecep": "SANTIAGO",
}
DEFAULT_EXPORT_RECEIVER: dict[str, Any] = {
    "RUTRecep": "55555555-5", "RznSocRecep": "FOREIGN CUSTOMER LTD",
    "GiroRecep": "IMPORTADOR", "DirRecep": "1 MAIN STREET",
}
DEFAULT_SUPPLIER: dict[str, Any] = {
    "RUTRecep": "88888888-8", "RznSocRecep": "PROVEEDOR DE PRUEBA CERTIFICACION",
    "GiroRecep": "AGRICULTOR", "DirRecep": "CAMINO RURAL KM 5", "CmnaRecep": "MELIPILLA",
    "CiudadRecep": "MELIPILLA",
}


@dataclass
class Company:
    """Who is certifying: the issuer block (SII names), the counterparts the sets do not name,
    the resolution and options. Read from ``company.json`` (see docs/CERTIFY.md)."""
    emisor: dict[str, Any]
    receptor: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_RECEIVER))
    export_receptor: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_EXPORT_RECEIVER))
    supplier: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_SUPPLIER))
    resolution_date: str = ""
    resolution_number: int = 0
    set_folio_ref: str = "0"
    purchase_retention: int = 15          # CodImpAdic of factura de compra lines (0: none)
    folio_notificacion: int = 1
    sii_office: str = "SANTIAGO CENTRO"   # printed under the folio box
    codes: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def rut(self) -> str:
        return str(self.emisor["RUTEmisor"])

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "company.json") -> Company:
        known = {"Emisor", "Receptor", "ReceptorExportacion", "Proveedor", "FchResol", "NroResol",
                 "FolioRefSet", "RetencionCompra", "FolioNotificacion", "UnidadSII", "codes"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SetError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}", "certify.company")
        emisor = data.get("Emisor")
        if not isinstance(emisor, dict) or not emisor.get("RUTEmisor"):
            raise SetError(f"{where}: 'Emisor' with at least RUTEmisor, RznSoc, GiroEmis, Acteco, "
                           f"DirOrigen and CmnaOrigen is required", "certify.company")
        c = cls(emisor=dict(emisor))
        c.receptor = {**DEFAULT_RECEIVER, **data.get("Receptor", {})}
        c.export_receptor = {**DEFAULT_EXPORT_RECEIVER, **data.get("ReceptorExportacion", {})}
        c.supplier = {**DEFAULT_SUPPLIER, **data.get("Proveedor", {})}
        c.resolution_date = str(data.get("FchResol", ""))
        c.resolution_number = int(data.get("NroResol", 0))
        c.set_folio_ref = str(data.get("FolioRefSet", "0"))
        c.purchase_retention = int(data.get("RetencionCompra", 15))
        c.folio_notificacion = int(data.get("FolioNotificacion", 1))
        c.sii_office = str(data.get("UnidadSII", "SANTIAGO CENTRO"))
        c.codes = {k: {plain(n): int(v) for n, v in t.items()} for k, t in data.get("codes", {}).items()}
        return c


@dataclass
class Issued:
    """A document issued for a case: what later notes and books need of it."""
    case_id: str
    set_name: str
    doc_type: int
    folio: int
    date: str
    document: dict[str, Any]           # the input, as built
    totals: dict[str, Any] = field(default_factory=dict)  # from the signed DTE
    file: str = ""


def _num(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


def _round(value: Decimal, places: int = 0) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def _line_input(line: Line) -> dict[str, Any]:
    d: dict[str, Any] = {"NmbItem": line.name}
    if line.exempt:
        d["IndExe"] = 1
    if line.qty is not None:
        d["QtyItem"] = _num(line.qty)
    if line.unit:
        d["UnmdItem"] = line.unit[:4]
    if line.price is not None:
        d["PrcItem"] = _num(line.price)
    if line.discount_pct is not None:
        d["DescuentoPct"] = _num(line.discount_pct)
    if line.surcharge_pct is not None:
        d["RecargoPct"] = _num(line.surcharge_pct)
    return d


def _lines_of(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    lines = doc.get("Detalle") or []
    return [dict(x) for x in (lines if isinstance(lines, list) else [lines])]


def _emisor(company: Company) -> dict[str, Any]:
    return copy.deepcopy(company.emisor)


def _set_reference(case_id: str, date: str, company: Company) -> dict[str, Any]:
    return {"NroLinRef": 1, "TpoDocRef": "SET", "FolioRef": company.set_folio_ref, "FchRef": date,
            "RazonRef": f"CASO {case_id}"}


def _code(company: Company, table: str, value: str, where: str, key: str) -> int:
    name = plain(value)
    found = company.codes.get(table, {}).get(name, CUSTOMS[table].get(name))
    if found is None:
        raise SetError(f"{where}: no customs code for {key} {value!r}; add it to company.json as "
                       f'"codes": {{"{table}": {{"{name}": CODE}}}}', "certify.code")
    return found


def build_case(case: Case, folio: int, date: str, company: Company,
               issued: Mapping[str, Issued]) -> dict[str, Any]:
    """The document input for one case. ``issued`` holds the documents of the cases already
    issued (notes reference them)."""
    where = f"{case.where} (line {case.source_line})"
    doc: dict[str, Any] = {"Encabezado": {
        "IdDoc": {"TipoDTE": case.doc_type, "Folio": folio, "FchEmis": date},
        "Emisor": _emisor(company),
        "Receptor": copy.deepcopy(company.receptor),
    }}
    head = doc["Encabezado"]
    refs = [_set_reference(case.case_id, date, company)]
    target: Issued | None = None
    if case.doc_type in NOTE_TYPES:
        target = issued.get(case.ref_case)
        if target is None:
            raise SetError(f"{where}: CASO {case.ref_case} has not been issued (run its set first or "
                           f"in the same command)", "certify.missing_reference")
        refs.append({"NroLinRef": 2, "TpoDocRef": str(target.doc_type), "FolioRef": str(target.folio),
                     "FchRef": target.date, "CodRef": case.cod_ref, "RazonRef": case.ref_reason[:90]})
        head["Receptor"] = copy.deepcopy(target.document["Encabezado"]["Receptor"])
        doc["Detalle"] = _note_lines(case, target, where)
        if case.cod_ref == 1:
            for key in ("DscRcgGlobal",):
                if key in target.document:
                    doc[key] = copy.deepcopy(target.document[key])
    else:
        doc["Detalle"] = [_line_input(x) for x in case.lines]
        for i, pct in case.line_discounts.items():
            if not 1 <= i <= len(doc["Detalle"]):
                raise SetError(f"{where}: DESCUENTO LINEA # {i}: there is no line {i}")
            doc["Detalle"][i - 1]["DescuentoPct"] = _num(pct)
        if case.line_surcharge_pct is not None:
            for line in doc["Detalle"]:
                line["RecargoPct"] = _num(case.line_surcharge_pct)
        adjustments = [a for a in case.adjustments if not a.of_clause]
        if adjustments:
            doc["DscRcgGlobal"] = [
                {"NroLinDR": i, "TpoMov": a.move, "GlosaDR": a.glosa[:45], "TpoValor": "%" if a.percent else "$",
                 "ValorDR": _num(a.value), **({"IndExeDR": 1} if a.exempt and case.doc_type == 33 else {})}
                for i, a in enumerate(adjustments, 1)]
    if case.doc_type == 52:
        head["IdDoc"]["IndTraslado"] = case.ind_traslado
        if case.tipo_despacho:
            head["IdDoc"]["TipoDespacho"] = case.tipo_despacho
        if case.ind_traslado == 5:  # internal transfer: the company is its own receiver
            e = company.emisor
            head["Receptor"] = {"RUTRecep": e["RUTEmisor"], "RznSocRecep": e.get("RznSoc", ""),
                                "GiroRecep": str(e.get("GiroEmis", ""))[:40], "DirRecep": e.get("DirOrigen", ""),
                                "CmnaRecep": e.get("CmnaOrigen", "")}
    if case.doc_type == 46 or (target is not None and target.doc_type == 46):
        head["Receptor"] = copy.deepcopy(company.supplier)
        if company.purchase_retention:
            for line in doc["Detalle"]:
                if not line.get("IndExe") and line.get("PrcItem"):
                    line["CodImpAdic"] = company.purchase_retention
    if case.doc_type in EXPORT_TYPES:
        _export(doc, case, company, target, where, refs)
    doc["Referencia"] = refs
    return doc


def _note_lines(case: Case, target: Issued, where: str) -> list[dict[str, Any]]:
    source = _lines_of(target.document)
    exempt_doc = target.doc_type in (34, 110, 111, 112)
    if not case.lines:
        if case.cod_ref == 2:
            # Text corrections carry no amounts: one line that says what is corrected.
            text_line: dict[str, Any] = {"NmbItem": case.ref_reason[:80]}
            if exempt_doc and target.doc_type == 34:
                text_line["IndExe"] = 1
            return [text_line]
        out = []
        for x in source:  # annulment: the whole document again
            keep = {k: v for k, v in x.items() if k not in ("NroLinDet", "MontoItem", "DescuentoMonto", "RecargoMonto")}
            out.append(keep)
        return out
    out = []
    for line in case.lines:
        match = next((x for x in source if plain(str(x.get("NmbItem", ""))) == plain(line.name)), None)
        if match is None and line.price is None:
            raise SetError(f"{case.where}, line {line.source_line}: item {line.name!r} is not in the "
                           f"document of CASO {case.ref_case}", "certify.missing_item")
        d: dict[str, Any] = {"NmbItem": str(match["NmbItem"]) if match else line.name}
        if (match and match.get("IndExe")) or target.doc_type == 34:
            d["IndExe"] = 1
        qty = line.qty if line.qty is not None else (Decimal(str(match["QtyItem"])) if match and "QtyItem" in match else None)
        if qty is not None:
            d["QtyItem"] = _num(qty)
        if match and match.get("UnmdItem"):
            d["UnmdItem"] = match["UnmdItem"]
        if line.price is not None:
            d["PrcItem"] = _num(line.price)
        elif match and "PrcItem" in match:
            # Same unit price (and the same line discount) as the document the note modifies.
            d["PrcItem"] = match["PrcItem"]
            for key in ("DescuentoPct", "RecargoPct"):
                if key in match:
                    d[key] = match[key]
        out.append(d)
    return out


def _export(doc: dict[str, Any], case: Case, company: Company, target: Issued | None, where: str,
            refs: list[dict[str, Any]]) -> None:
    head = doc["Encabezado"]
    if target is not None:
        # Notes: the invoice's currency, customs data (without its totals) and receiver.
        src = target.document["Encabezado"]
        head["Receptor"] = copy.deepcopy(src["Receptor"])
        head["Totales"] = {"TpoMoneda": src["Totales"]["TpoMoneda"]}
        for key in ("FmaPagExp", "IndServicio"):
            if key in src["IdDoc"]:
                head["IdDoc"][key] = src["IdDoc"][key]
        copied: dict[str, Any] | None = copy.deepcopy(src.get("Transporte", {}).get("Aduana"))
        if copied:
            for key in ("TotClauVenta", "MntFlete", "MntSeguro", "TotBultos", "TipoBultos"):
                copied.pop(key, None)
            head["Transporte"] = {"Aduana": copied}
        return
    ex = case.export
    if "MONEDA DE LA OPERACION" not in ex:
        raise SetError(f"{where}: an export needs MONEDA DE LA OPERACION")
    head["Totales"] = {"TpoMoneda": ex["MONEDA DE LA OPERACION"]}
    receptor = copy.deepcopy(company.export_receptor)
    head["Receptor"] = receptor
    if "FORMA DE PAGO EXPORTACION" in ex:
        head["IdDoc"]["FmaPagExp"] = _code(company, "FmaPagExp", ex["FORMA DE PAGO EXPORTACION"], where,
                                           "FORMA DE PAGO EXPORTACION")
    if "NACIONALIDAD" in ex:
        head["IdDoc"]["IndServicio"] = 4  # hotel services to a foreign tourist
        receptor.setdefault("Extranjero", {})["Nacionalidad"] = str(
            _code(company, "CodPais", ex["NACIONALIDAD"], where, "NACIONALIDAD"))
    elif any(plain(r).startswith("RESOLUCION SNA") for r in case.export_refs):
        head["IdDoc"]["IndServicio"] = 3  # services qualified as exports by the SNA
    aduana: dict[str, Any] = {}
    pairs = [("MODALIDAD DE VENTA", "CodModVenta", "CodModVenta"),
             ("CLAUSULA DE VENTA DE EXPORTACION", "CodClauVenta", "CodClauVenta"),
             ("VIA DE TRANSPORTE", "CodViaTransp", "CodViaTransp"),
             ("PUERTO DE EMBARQUE", "CodPtoEmbarque", "CodPuerto"),
             ("PUERTO DE DESEMBARQUE", "CodPtoDesemb", "CodPuerto"),
             ("UNIDAD DE MEDIDA DE TARA", "CodUnidMedTara", "CodUnidMed"),
             ("UNIDAD PESO BRUTO", "CodUnidPesoBruto", "CodUnidMed"),
             ("UNIDAD PESO NETO", "CodUnidPesoNeto", "CodUnidMed")]
    for key, field_name, table in pairs:
        if key in ex:
            aduana[field_name] = _code(company, table, ex[key], where, key)
    if "TOTAL CLAUSULA DE VENTA" in ex:
        aduana["TotClauVenta"] = _num(Decimal(ex["TOTAL CLAUSULA DE VENTA"]))
    if "TOTAL BULTOS" in ex:
        aduana["TotBultos"] = int(ex["TOTAL BULTOS"])
    if "TIPO DE BULTO" in ex:
        bulto: dict[str, Any] = {"CodTpoBultos": _code(company, "CodTpoBultos", ex["TIPO DE BULTO"], where,
                                                        "TIPO DE BULTO")}
        if "TOTAL BULTOS" in ex:
            bulto["CantBultos"] = int(ex["TOTAL BULTOS"])
        if not 73 <= bulto["CodTpoBultos"] <= 78:
            bulto["Marcas"] = "S/M"  # "sin marcas"; containers carry IdContainer/Sello instead
        aduana["TipoBultos"] = [bulto]
    for key, field_name in (("FLETE (**)", "MntFlete"), ("FLETE", "MntFlete"),
                            ("SEGURO (**)", "MntSeguro"), ("SEGURO", "MntSeguro")):
        if key in ex:
            aduana[field_name] = _num(Decimal(ex[key]))
    country = ex.get("PAIS RECEPTOR Y PAIS DESTINO")
    if country:
        code = _code(company, "CodPais", country, where, "PAIS RECEPTOR Y PAIS DESTINO")
        aduana["CodPaisRecep"] = code
        aduana["CodPaisDestin"] = code
        receptor.setdefault("Extranjero", {}).setdefault("Nacionalidad", str(code))
    if aduana:
        head["Transporte"] = {"Aduana": aduana}
    for adj in (a for a in case.adjustments if a.of_clause):
        if "TotClauVenta" not in aduana:
            raise SetError(f"{where}: {adj.glosa} is a share of TOTAL CLAUSULA DE VENTA, which the case lacks")
        amount = _round(Decimal(str(aduana["TotClauVenta"])) * adj.value / 100, 2)
        doc.setdefault("DscRcgGlobal", []).append(
            {"NroLinDR": len(doc.get("DscRcgGlobal", [])) + 1, "TpoMov": adj.move, "GlosaDR": adj.glosa[:45],
             "TpoValor": "$", "ValorDR": _num(amount)})
    for text in case.export_refs:
        code_ref = EXPORT_REFERENCES.get(plain(text))
        if code_ref is None:
            raise SetError(f"{where}: unknown REFERENCIA {text!r}; known: {', '.join(EXPORT_REFERENCES)}",
                           "certify.code")
        refs.append({"NroLinRef": len(refs) + 1, "TpoDocRef": code_ref, "FolioRef": "1",
                     "FchRef": head["IdDoc"]["FchEmis"], "RazonRef": plain(text)[:90]})


# --- boletas ---------------------------------------------------------------------------------------


def build_boleta(case: BoletaCase, folio: int, date: str, company: Company) -> dict[str, Any]:
    e = company.emisor
    emisor = {"RUTEmisor": e["RUTEmisor"], "RznSocEmisor": e.get("RznSocEmisor", e.get("RznSoc", "")),
              "GiroEmisor": e.get("GiroEmisor", e.get("GiroEmis", "")), "DirOrigen": e.get("DirOrigen", ""),
              "CmnaOrigen": e.get("CmnaOrigen", "")}
    return {
        "Encabezado": {"IdDoc": {"TipoDTE": 39, "Folio": folio, "FchEmis": date, "IndServicio": 3},
                       "Emisor": emisor},
        "Detalle": [_line_input(x) for x in case.lines],
        "Referencia": [{"NroLinRef": 1, "CodRef": "SET", "RazonRef": f"CASO-{case.number}"}],
    }


def build_boleta_note(case: BoletaCase, boleta: Issued, folio: int, date: str,
                      company: Company) -> dict[str, Any] | None:
    """The credit note the boleta set asks for (Anular: annuls; Rebajar N: N % of the line),
    or None. Boleta prices include IVA; the note's are net (6 decimals)."""
    if case.annul:
        lines, cod, reason = case.lines, 1, "ANULA BOLETA"
    else:
        lines = [x for x in case.lines if x.rebate_pct is not None]
        cod, reason = 3, "DEVOLUCION DE MERCADERIAS"
        if not lines:
            return None
    detail = []
    for x in lines:
        qty = x.qty if x.qty is not None else Decimal(1)
        if not case.annul and x.rebate_pct is not None:
            qty = qty * x.rebate_pct / 100
        price = x.price or Decimal(0)
        net = price if x.exempt else _round(price / (1 + IVA_RATE), 6)
        d: dict[str, Any] = {"NmbItem": x.name, "QtyItem": _num(_round(qty, 6)), "PrcItem": _num(net)}
        if x.exempt:
            d["IndExe"] = 1
        if x.unit:
            d["UnmdItem"] = x.unit[:4]
        detail.append(d)
    return {
        "Encabezado": {"IdDoc": {"TipoDTE": 61, "Folio": folio, "FchEmis": date},
                       "Emisor": _emisor(company), "Receptor": copy.deepcopy(company.receptor)},
        "Detalle": detail,
        "Referencia": [
            {"NroLinRef": 1, "TpoDocRef": "SET", "FolioRef": company.set_folio_ref, "FchRef": date,
             "RazonRef": f"CASO-{case.number}"},
            {"NroLinRef": 2, "TpoDocRef": "39", "FolioRef": str(boleta.folio), "FchRef": boleta.date,
             "CodRef": cod, "RazonRef": reason}],
    }


def build_rvd(boletas: list[Issued], notes: list[Issued], company: Company, date: str) -> dict[str, Any]:
    """ConsumoFolios (RVD) of the day's boletas and their notes."""
    docs = []
    for d in boletas + notes:
        t = d.totals
        entry: dict[str, Any] = {"TipoDTE": d.doc_type, "Folio": d.folio, "MntTotal": t.get("MntTotal", 0)}
        if t.get("MntExe"):
            entry["MntExe"] = t["MntExe"]
        if d.doc_type == 61:
            entry["MntNeto"] = t.get("MntNeto", 0)
            entry["MntIVA"] = t.get("IVA", 0)
        docs.append(entry)
    return {"Caratula": {"RutEmisor": company.rut, "FchResol": company.resolution_date,
                         "NroResol": company.resolution_number, "FchInicio": date, "FchFinal": date,
                         "SecEnvio": 1},
            "Documentos": docs}


# --- books -----------------------------------------------------------------------------------------


def _caratula(company: Company, period: str, operation: str | None) -> dict[str, Any]:
    c: dict[str, Any] = {"RutEmisorLibro": company.rut, "PeriodoTributario": period,
                         "FchResol": company.resolution_date, "NroResol": company.resolution_number}
    if operation:
        c["TipoOperacion"] = operation
    c.update({"TipoLibro": "ESPECIAL", "TipoEnvio": "TOTAL", "FolioNotificacion": company.folio_notificacion})
    return c


def build_sales_book(documents: list[Issued], company: Company, period: str) -> dict[str, Any]:
    detail = []
    for d in documents:
        t = d.totals
        r = d.document["Encabezado"].get("Receptor", {})
        entry: dict[str, Any] = {"TpoDoc": d.doc_type, "NroDoc": d.folio, "FchDoc": d.date,
                                 "RUTDoc": r.get("RUTRecep", ""), "RznSoc": str(r.get("RznSocRecep", ""))[:50]}
        if t.get("MntExe"):
            entry["MntExe"] = t["MntExe"]
        if t.get("MntNeto"):
            entry["MntNeto"] = t["MntNeto"]
            entry["TasaImp"] = 19
            entry["MntIVA"] = t.get("IVA", 0)
        entry["MntTotal"] = t.get("MntTotal", 0)
        detail.append(entry)
    return {"Caratula": _caratula(company, period, "VENTA"), "Detalle": detail}


def build_purchase_book(test_set: TestSet, company: Company, period: str, date: str) -> dict[str, Any]:
    supplier = company.supplier
    detail = []
    for p in test_set.purchases:
        entry: dict[str, Any] = {"TpoDoc": p.doc_type, "NroDoc": p.folio, "FchDoc": date,
                                 "RUTDoc": supplier["RUTRecep"], "RznSoc": str(supplier["RznSocRecep"])[:50]}
        if p.exempt:
            entry["MntExe"] = p.exempt
        if p.net:
            entry["MntNeto"] = p.net
            entry["TasaImp"] = 19
        iva = int(_round(Decimal(p.net) * IVA_RATE))
        if p.treatment == "uso_comun":
            entry.update({"MntIVA": 0, "IVAUsoComun": iva})
        elif p.treatment == "entrega_gratuita":
            entry["IVANoRec"] = [{"CodIVANoRec": 4}]  # takes the IVA; MntIVA becomes 0
        elif p.treatment == "retencion_total":
            entry["MntIVA"] = iva
            entry["OtrosImp"] = [{"CodImp": 15, "TasaImp": 19, "MntImp": iva}]
        detail.append(entry)
    book: dict[str, Any] = {"Caratula": _caratula(company, period, "COMPRA"), "Detalle": detail}
    if test_set.proportionality is not None:
        book["FctProp"] = _num(test_set.proportionality * 100)
    return book


def build_guide_book(guides: list[Issued], test_set: TestSet, company: Company, period: str,
                     invoice: Issued | None) -> dict[str, Any]:
    detail = []
    by_case = {int(g.case_id.rsplit("-", 1)[1]): g for g in guides}
    for n in test_set.guides_invoiced + test_set.guides_annulled:
        if n not in by_case:
            raise SetError(f"{test_set.name}: CASO {n} of the guías set has not been issued (run the "
                           f"guía set first or in the same command)", "certify.missing_reference")
    for g in guides:
        n = int(g.case_id.rsplit("-", 1)[1])
        t = g.totals
        r = g.document["Encabezado"].get("Receptor", {})
        entry: dict[str, Any] = {"Folio": g.folio}
        if n in test_set.guides_annulled:
            entry["Anulado"] = 2
        entry.update({"TpoOper": g.document["Encabezado"]["IdDoc"].get("IndTraslado", 1), "FchDoc": g.date,
                      "RUTDoc": r.get("RUTRecep", ""), "RznSoc": str(r.get("RznSocRecep", ""))[:50]})
        if t.get("MntNeto"):
            entry.update({"MntNeto": t["MntNeto"], "TasaImp": 19, "IVA": t.get("IVA", 0)})
        entry["MntTotal"] = t.get("MntTotal", 0)
        if n in test_set.guides_invoiced:
            entry.update({"TpoDocRef": 33, "FolioDocRef": invoice.folio if invoice else 1,
                          "FchDocRef": invoice.date if invoice else g.date})
        detail.append(entry)
    return {"Caratula": _caratula(company, period, None), "Detalle": detail}


def today_chile() -> str:
    from .._api import today_in_chile
    return today_in_chile()
