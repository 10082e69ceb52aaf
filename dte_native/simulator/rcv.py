"""The Registro de Compras y Ventas as the simulator keeps it: built from the documents it
accepted (DOK/RPR). The issuer's sales register holds what it issued; the receiver's purchases
register holds what was addressed to it, in the state its receiver events give:

* RECLAMADO  a claim (RCD, RFP, RFT) was registered;
* REGISTRO   accepted (ACD or ERM), or the 8-day window passed (tacit acceptance);
* PENDIENTE  otherwise; NO_INCLUIR is always empty (nobody here marks documents so).

Served like SII's portal facade (``/consdcvinternetui/services/data/facadeService/<op>``,
PROTOCOL.md section 11): ``getResumen`` gives totals per document type, ``getDetalleCompraExport`` /
``getDetalleVentaExport`` give the CSV export line by line in SII's dialect (``;``, dd/mm/yyyy,
empty cells). Simplification: the period of a document is the month of its FchEmis."""
from __future__ import annotations

from typing import Any

from . import checks

FACADE_PREFIX = "/consdcvinternetui/services/data/facadeService/"
# Not detailed in the RCV: boletas are summarised elsewhere (RVD), guías are not tax documents.
NOT_IN_RCV = {35, 38, 39, 41, 50, 52}
VENTAS_HEADER = ("Nro;Tipo Doc;Tipo Venta;Rut cliente;Razon Social;Folio;Fecha Docto;Fecha Recepcion;"
                 "Fecha Acuse Recibo;Fecha Reclamo;Monto Exento;Monto Neto;Monto IVA;Monto total;"
                 "IVA Retenido Total;IVA Retenido Parcial;IVA no retenido;IVA propio;IVA Terceros;"
                 "Tipo Docto. Referencia;Folio Docto. Referencia;Codigo Otro Imp.;Valor Otro Imp.;Tasa Otro Imp.")
COMPRAS_COLUMNS = {
    "REGISTRO": "Fecha Acuse", "PENDIENTE": None, "NO_INCLUIR": "Fecha Acuse", "RECLAMADO": "Fecha Reclamo",
}
COMPRAS_TAIL = ("Monto Exento;Monto Neto;Monto IVA Recuperable;Monto Iva No Recuperable;Codigo IVA No Rec.;"
                "Monto Total;Monto Neto Activo Fijo;IVA Activo Fijo;IVA uso Comun;Impto. Sin Derecho a Credito;"
                "IVA No Retenido;NCE o NDE sobre Fact. de Compra;Codigo Otro Impuesto;Valor Otro Impuesto;"
                "Tasa Otro Impuesto")
TOKEN_MESSAGE = "El token no es valido: NO Existen Datos"


def compras_header(state: str) -> str:
    extra = COMPRAS_COLUMNS.get(state)
    head = "Nro;Tipo Doc;Tipo Compra;RUT Proveedor;Razon Social;Folio;Fecha Docto;Fecha Recepcion;"
    return head + (f"{extra};" if extra else "") + COMPRAS_TAIL


def _ddmmyyyy(iso: str) -> str:
    return f"{iso[8:10]}/{iso[5:7]}/{iso[0:4]}" if len(iso) >= 10 else ""


def _num(value: Any) -> int:
    try:
        return int(round(float(value or 0)))
    except (TypeError, ValueError):
        return 0


class Register:
    """Reads the store's accepted documents (callers hold ``store.lock``)."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def _stamp(self, t: float | None) -> str:
        return self.store.local_dt(t).strftime("%d/%m/%Y %H:%M:%S") if t else ""

    def compras_state(self, doc: dict[str, Any]) -> tuple[str, str]:
        """(state, date of the deciding event as dd/mm/yyyy hh:mm:ss or '')."""
        events = doc.get("events") or []
        claims = [e for e in events if e["codEvento"] in ("RCD", "RFP", "RFT")]
        if claims:
            return "RECLAMADO", claims[0]["fechaEvento"].replace("-", "/")
        accepted = [e for e in events if e["codEvento"] in ("ACD", "ERM")]
        if accepted:
            return "REGISTRO", accepted[0]["fechaEvento"].replace("-", "/")
        window = float(self.store.cfg["claim_window_days"]) * 86400
        received = float(doc.get("received_at") or 0)
        if self.store.now() - received > window:
            return "REGISTRO", self._stamp(received + window)
        return "PENDIENTE", ""

    def documents(self, company: str, period: str, operacion: str, state: str) -> list[tuple[dict[str, Any], str]]:
        company = checks.rut_norm(company)
        prefix = f"{period[:4]}-{period[4:6]}"
        out = []
        for doc in self.store.accepted.values():
            if int(doc["tipo"]) in NOT_IN_RCV or not str(doc.get("fch_emis", "")).startswith(prefix):
                continue
            if operacion == "VENTA":
                if checks.rut_norm(doc["rut_emisor"]) == company:
                    out.append((doc, ""))
            elif checks.rut_norm(doc.get("rut_recep", "")) == company:
                doc_state, when = self.compras_state(doc)
                if doc_state == state:
                    out.append((doc, when))
        out.sort(key=lambda x: (int(x[0]["tipo"]), int(x[0]["folio"])))
        return out

    def resumen(self, company: str, period: str, operacion: str, state: str) -> list[dict[str, Any]]:
        by_type: dict[int, dict[str, Any]] = {}
        for doc, _ in self.documents(company, period, operacion, state):
            t = by_type.setdefault(int(doc["tipo"]), {
                "rsmnTipoDocInteger": int(doc["tipo"]), "rsmnTotDoc": 0, "rsmnMntExe": 0, "rsmnMntNeto": 0,
                "rsmnMntIVA": 0, "rsmnMntTotal": 0, "rsmnEstadoContab": state})
            t["rsmnTotDoc"] += 1
            t["rsmnMntExe"] += _num(doc.get("mnt_exe"))
            t["rsmnMntNeto"] += _num(doc.get("mnt_neto"))
            t["rsmnMntIVA"] += _num(doc.get("iva"))
            t["rsmnMntTotal"] += _num(doc.get("mnt_total"))
        return [by_type[k] for k in sorted(by_type)]

    def export(self, company: str, period: str, operacion: str, state: str, tipo: int) -> list[str]:
        docs = [(d, w) for d, w in self.documents(company, period, operacion, state) if int(d["tipo"]) == tipo]
        if not docs:
            return []
        lines = [VENTAS_HEADER if operacion == "VENTA" else compras_header(state)]
        for n, (doc, when) in enumerate(docs, start=1):
            # Only references to tax documents: an orden de compra (801, "OC-2291") is not one.
            refs = [r for r in doc.get("references") or []
                    if str(r.get("tipo", "")).isdigit() and int(r["tipo"]) < 800 and str(r.get("folio", "")).isdigit()]
            received = self._stamp(doc.get("received_at"))
            amounts = [str(_num(doc.get("mnt_exe"))), str(_num(doc.get("mnt_neto"))), str(_num(doc.get("iva")))]
            if operacion == "VENTA":
                state_v, when_v = self.compras_state(doc)
                acuse = when_v if state_v == "REGISTRO" and doc.get("events") else ""
                reclamo = when_v if state_v == "RECLAMADO" else ""
                cells = [str(n), str(doc["tipo"]), "Del Giro", checks.rut_norm(doc.get("rut_recep", "")),
                         f" {doc.get('rzn_recep', '')} ", str(doc["folio"]), _ddmmyyyy(doc["fch_emis"]), received,
                         acuse, reclamo, *amounts, str(_num(doc.get("mnt_total"))), "0", "0", "0", "0", "0",
                         refs[0]["tipo"] if refs else "", "-".join(str(r["folio"]) for r in refs), "", "", ""]
            else:
                cells = [str(n), str(doc["tipo"]), "Del Giro", checks.rut_norm(doc["rut_emisor"]),
                         f"{doc.get('rzn_emisor', '')} ", str(doc["folio"]), _ddmmyyyy(doc["fch_emis"]), received]
                if COMPRAS_COLUMNS.get(state):
                    cells.append(when)
                cells += [*amounts, "", "", str(_num(doc.get("mnt_total"))), "", "", "", "", "0", "0", "", "", ""]
            lines.append(";".join(cells))
        return lines


def answer(data: Any, code: int = 0, message: str | None = None, op: str = "") -> dict[str, Any]:
    return {
        "data": data,
        "metaData": {"namespace": f"cl.sii.sdi.lob.diii.consdcv.data.api.interfaces.FacadeService/{op}",
                     "conversationId": None, "transactionId": None, "page": None, "errors": None},
        "respEstado": {"codRespuesta": code, "msgeRespuesta": message, "codError": None if code == 0 else code},
    }


def handle(store: Any, op: str, request: dict[str, Any], caller: str) -> dict[str, Any]:
    """One facade call from an authenticated `caller` (RUT of the token's holder)."""
    raw_data = request.get("data")
    data: dict[str, Any] = raw_data if isinstance(raw_data, dict) else {}
    try:
        company = f"{int(str(data.get('rutEmisor')))}-{str(data.get('dvEmisor', '')).strip().upper()}"
    except (TypeError, ValueError):
        return answer(None, 3, "Rut de la empresa invalido", op)
    period = str(data.get("ptributario") or "")
    operacion = str(data.get("operacion") or "").upper()
    state = str(data.get("estadoContab") or "REGISTRO").upper()
    if not checks.rut_valid(company):
        return answer(None, 3, "Rut de la empresa invalido", op)
    if len(period) != 6 or not period.isdigit() or not 1 <= int(period[4:]) <= 12:
        return answer(None, 4, "Periodo tributario invalido", op)
    if operacion not in ("COMPRA", "VENTA") or state not in COMPRAS_COLUMNS:
        return answer(None, 5, "Parametros de consulta invalidos", op)
    with store.lock:
        if not store._authorized_for(caller, company):
            return answer(None, 2, "Usuario no autorizado para consultar la empresa", op)
        reg = Register(store)
        if op == "getResumen":
            return answer(reg.resumen(company, period, operacion, state), op=op)
        if op in ("getDetalleCompraExport", "getDetalleVentaExport"):
            if (op == "getDetalleCompraExport") != (operacion == "COMPRA"):
                return answer(None, 5, "Operacion no corresponde al servicio", op)
            try:
                tipo = int(data.get("codTipoDoc") or 0)
            except (TypeError, ValueError):
                return answer(None, 5, "Tipo de documento invalido", op)
            lines = reg.export(company, period, operacion, state, tipo)
            out = answer(lines, op=op)
            out["nombreArchivo"] = f"RCV_{operacion}_{state}_{company.split('-')[0]}_{period}.csv"
            return out
    return answer(None, 99, f"Servicio {op} no disponible", op)
