"""What SII "has": seeds, tokens, envelopes, documents and receiver events, plus the rules that
decide what happens to an upload. Transport-free: the HTTP layer only translates to the wire."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation
import hashlib
import json
import math
import os
import random
import re
import string
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lxml import etree  # type: ignore[import-untyped]

from . import checks
from .checks import child, children, local, text

try:
    from zoneinfo import ZoneInfo
    _CHILE: dt.tzinfo | None = ZoneInfo("America/Santiago")
except Exception:  # no tzdata: local time is the next best thing
    _CHILE = None

SII_RUT = "60803000-K"
OK_PATH = ["REC", "SOK", "CRT", "FOK", "PDR", "EPR"]
GLOSAS = {
    "REC": "Envio Recibido Conforme", "SOK": "Schema Validado", "CRT": "Caratula OK",
    "FOK": "Firma de Envio Validada", "PDR": "Envio en Proceso", "EPR": "Envio Procesado",
    "RSC": "Rechazado por Error en Schema", "RCT": "Rechazado por Error en Caratula",
    "RFR": "Rechazado por Error en Firma", "RPT": "Repetido Rechazado",
    "RPR": "Aceptado con Reparos", "RLV": "Aceptado con Reparos Leves", "LOK": "Libro Cuadrado",
}
# Document verdicts the simulator gives (QueryEstUp counts them, boleta REST lists them):
# DOK accepted, RPR accepted with objections, RLV accepted with minor objections, RCH rejected.
ACCEPTED_STATES = ("DOK", "RPR", "RLV")
# A document property that forces a verdict, for tests: this marker in any Detalle's NmbItem or
# DscItem (e.g. "Servicio [SIM:RLV]") makes an otherwise valid document RPR, RLV or RCH.
SIM_MARKER = re.compile(r"\[SIM:(RPR|RLV|RCH)\]")
CAF_EXPIRING_TYPES = {33, 43, 46, 56, 61}
CLAIM_TYPES = {33, 34, 43}
CLAIM_ACTIONS = {
    "ACD": "Acepta Contenido del Documento",
    "RCD": "Reclamo al Contenido del Documento",
    "ERM": "Otorga Recibo de Mercaderias o Servicios",
    "RFP": "Reclamo por Falta Parcial de Mercaderias",
    "RFT": "Reclamo por Falta Total de Mercaderias",
}
CLAIMS = {"RCD", "RFP", "RFT"}
def amount(value: str) -> int | float:
    """An amount as SII writes it: whole pesos, or decimals in a foreign currency (exports:
    Exportaciones' MntTotal and TED MNT are SiiDte:ValorType)."""
    value = (value or "0").strip()
    try:
        return int(value)
    except ValueError:
        number = float(value)
        return int(number) if number.is_integer() else number


# Codes of ImptoReten that are retentions (subtract from MntTotal) rather than added taxes.
RETENTION_CODES = {15, 30, 31, 32, 33, 34, 36, 37, 38, 39, 41, 47, 48, 49, 50, 51, 53, 60}
# Note reference code -> QueryEstDte state per note type.
NOTE_STATES = {(61, "1"): ("ANC", 15), (61, "2"): ("TMC", 11), (61, "3"): ("MMC", 13),
               (56, "1"): ("AND", 14), (56, "2"): ("TMD", 10), (56, "3"): ("MMD", 12)}


def round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def split_rut(rut: str) -> tuple[str, str]:
    body, _, dv = checks.rut_norm(rut).partition("-")
    return body, dv


def doc_key(rut: str, tipo: int | str, folio: int | str) -> str:
    return f"{checks.rut_norm(rut)}|{int(tipo)}|{int(folio)}"


@dataclass
class UploadResult:
    status: int                       # RECEPCIONDTE STATUS
    trackid: str = ""
    errors: list[str] = field(default_factory=list)
    envelope: dict[str, Any] | None = None


class Store:
    def __init__(self, cfg: dict[str, Any], sii_keys: dict[str, Any], schemas: checks.SchemaSet,
                 state_file: str | Path | None = None) -> None:
        self.cfg = cfg
        self.sii_keys = sii_keys
        self.schemas = schemas
        self.state_file = Path(state_file) if state_file else None
        self.lock = threading.RLock()
        self.rng = random.Random(cfg["seed"])
        self.seeds: dict[str, dict[str, Any]] = {}
        self.tokens: dict[str, dict[str, Any]] = {}
        self.envelopes: dict[str, dict[str, Any]] = {}
        self.documents: list[dict[str, Any]] = []
        self.accepted: dict[str, dict[str, Any]] = {}
        self.file_hashes: dict[str, str] = {}
        self._receiving: set[str] = set()  # digests of uploads being processed right now
        self.events: list[dict[str, Any]] = []
        # Folio ranges SII "issued" (CAFs seen in TEDs or registered over /_sim/caf) and annulled
        # ones (/_sim/annul), per "RUT|tipo": QueryEstDte answers FNA outside every known range
        # and FAN for an annulled folio. With no range known for a RUT and type, FAU.
        self.caf_ranges: dict[str, list[list[int]]] = {}
        self.annulled: dict[str, list[list[int]]] = {}
        # wsDTECorreo.reenvioCorreo: the e-mails SII would send (with the per-document errors).
        self.mails: list[dict[str, Any]] = []
        self.next_trackid = 1_000_000_000 + self.rng.randrange(10**8)
        self.next_boleta_trackid = 100_000_000_000_000 + self.rng.randrange(10**9)
        self.attention = 1000 + self.rng.randrange(9000)
        if self.state_file and self.state_file.is_file():
            self._load()

    # ------------------------------------------------------------------ clock / persistence

    def now(self) -> float:
        return time.time() + float(self.cfg.get("clock_offset_s") or 0.0)

    def local_dt(self, t: float | None = None) -> dt.datetime:
        t = self.now() if t is None else t
        return dt.datetime.fromtimestamp(t, _CHILE) if _CHILE else dt.datetime.fromtimestamp(t)

    def event(self, event_type: str, /, **data: Any) -> None:
        self.events.append({"t": self.local_dt().strftime("%Y-%m-%dT%H:%M:%S"), "type": event_type, **data})
        del self.events[:-2000]

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            now = self.now()
            envs = []
            for env in self.envelopes.values():
                e = {k: v for k, v in env.items() if k != "path"}
                e["state"] = self.envelope_state(env, now)
                e["path"] = env["path"]
                envs.append(e)
            return {
                "now": self.local_dt(now).strftime("%Y-%m-%dT%H:%M:%S"),
                "envelopes": envs,
                "documents": [dict(d) for d in self.documents],
                "events": list(self.events),
                "tokens": len(self.tokens),
                "caf_ranges": {k: [list(r) for r in v] for k, v in self.caf_ranges.items()},
                "annulled": {k: [list(r) for r in v] for k, v in self.annulled.items()},
                "mails": [dict(m) for m in self.mails],
            }

    def _persistent(self) -> dict[str, Any]:
        return {"envelopes": self.envelopes, "documents": self.documents, "file_hashes": self.file_hashes,
                "events": self.events, "next_trackid": self.next_trackid,
                "caf_ranges": self.caf_ranges, "annulled": self.annulled, "mails": self.mails,
                "next_boleta_trackid": self.next_boleta_trackid}

    def save(self) -> None:
        if not self.state_file:
            return
        tmp = self.state_file.with_suffix(self.state_file.suffix + ".tmp")
        tmp.write_text(json.dumps(self._persistent(), indent=1, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, self.state_file)

    def _load(self) -> None:
        data = json.loads(self.state_file.read_text(encoding="utf-8"))  # type: ignore[union-attr]
        self.envelopes = data.get("envelopes", {})
        self.documents = data.get("documents", [])
        self.file_hashes = data.get("file_hashes", {})
        self.events = data.get("events", [])
        self.next_trackid = data.get("next_trackid", self.next_trackid)
        self.next_boleta_trackid = data.get("next_boleta_trackid", self.next_boleta_trackid)
        self.caf_ranges = data.get("caf_ranges", {})
        self.annulled = data.get("annulled", {})
        self.mails = data.get("mails", [])
        self.accepted = {d["key"]: d for d in self.documents if d["estado"] in ACCEPTED_STATES}

    def reset(self) -> None:
        with self.lock:
            self.seeds.clear()
            self.tokens.clear()
            self.envelopes.clear()
            self.documents.clear()
            self.accepted.clear()
            self.file_hashes.clear()
            self.events.clear()
            self.caf_ranges.clear()
            self.annulled.clear()
            self.mails.clear()
            self.save()

    def num_atencion(self) -> str:
        self.attention += 1
        return f"{self.attention} ({self.local_dt().strftime('%Y/%m/%d %H:%M:%S')})"

    # ------------------------------------------------------------------ seeds and tokens

    def new_seed(self) -> str:
        with self.lock:
            seed = f"{self.rng.randrange(10**12):012d}"
            self.seeds[seed] = {"created": self.now(), "used": False}
            self.event("seed", seed=seed)
            return seed

    def issue_token(self, xml: bytes, family: str) -> tuple[str, str, str | None]:
        """getToken: (ESTADO, GLOSA, token or None)."""
        try:
            root = checks.parse(xml)
        except etree.XMLSyntaxError as exc:
            return "02", f"Error de Entrada (SAX): {exc}", None
        seed_el = next((e for e in root.iter() if isinstance(e.tag, str) and local(e) == "Semilla"), None)
        if seed_el is None:
            return "06", "Error Obtener Semilla", None
        sig = next((e for e in root if isinstance(e.tag, str) and local(e) == "Signature"
                    and etree.QName(e).namespace == checks.DS_NS), None)
        if sig is None:
            return "04", "Error Obtener Firma", None
        with checks._XMLSEC_LOCK:
            res = checks.verify_signature(sig, expected_uri="", enveloped=True, check_cert_match=True)
        if not res.ok:
            glosa = {"21": "Error: Llave publica no corresponde al certificado",
                     "11": "Error Obtener Certificado"}.get(res.code, "Error Firma no Valida")
            return res.code or "05", f"{glosa} ({res.reason})", None
        seed = (seed_el.text or "").strip()
        with self.lock:
            rec = self.seeds.get(seed)
            if rec is None:
                return "08", "Error: Semilla no existe", None
            if rec["used"]:
                return "08", "Error: Semilla ya utilizada", None
            if self.now() - rec["created"] > float(self.cfg["seed_ttl_s"]):
                return "08", "Error: Semilla expirada (time-out)", None
            rut = checks.rut_from_cert(res.cert) if res.cert else None
            registered = self.cfg.get("registered_users")
            if rut is None or (registered is not None and rut not in {checks.rut_norm(r) for r in registered}):
                return "-07", "Error: RUT no valida / no registrado para autenticacion con certificado", None
            rec["used"] = True
            alphabet = string.ascii_uppercase + string.digits
            token = "".join(self.rng.choice(alphabet) for _ in range(13))
            now = self.now()
            self.tokens[token] = {"rut": rut, "family": family, "created": now,
                                  "expires": now + float(self.cfg["token_ttl_s"]), "revoked": False}
            self.event("token", family=family, rut=rut, token=token)
            return "00", "Token Creado", token

    def check_token(self, token: str | None, family: str) -> tuple[str, str | None]:
        """('ok', rut) or (reason, None); reason: missing, unknown, expired, revoked."""
        if not token:
            return "missing", None
        with self.lock:
            rec = self.tokens.get(token)
            if rec is None or rec["family"] != family:
                return "unknown", None
            if rec["revoked"]:
                return "revoked", None
            if self.now() > rec["expires"]:
                return "expired", None
            return "ok", rec["rut"]

    def revoke(self, token: str | None = None) -> int:
        with self.lock:
            targets = [token] if token else list(self.tokens)
            n = 0
            for t in targets:
                if t in self.tokens:
                    self.tokens[t]["revoked"] = True
                    n += 1
            self.event("tokens_revoked", count=n)
            return n

    # ------------------------------------------------------------------ authorization

    def authorization(self, company: str, sender: str) -> int:
        """0 ok, 6 company not authorized, 1 sender not authorized for the company."""
        auth = self.cfg.get("authorized")
        if auth is None:
            return 0
        table = {checks.rut_norm(k): {checks.rut_norm(s) for s in v} for k, v in auth.items()}
        if checks.rut_norm(company) not in table:
            return 6
        return 0 if checks.rut_norm(sender) in table[checks.rut_norm(company)] else 1

    # ------------------------------------------------------------------ uploads

    def _new_trackid(self, boleta: bool) -> str:
        if boleta:
            self.next_boleta_trackid += 1 + self.rng.randrange(20)
            return f"{self.next_boleta_trackid:015d}"
        self.next_trackid += 1 + self.rng.randrange(20)
        return f"{self.next_trackid:010d}"

    def receive(self, data: bytes, filename: str, rut_sender: str, rut_company: str,
                via: str, force_duplicate: bool = False) -> UploadResult:
        """Everything SII does with an uploaded file. `via`: 'upload' (DTEUpload) or 'rest'."""
        digest = hashlib.sha256(data).hexdigest()
        with self.lock:
            previous = self.file_hashes.get(digest)
            # The same file arriving while its first copy is still being processed (a client
            # killed mid-upload, then a resend) is that file again, not a second envelope.
            if force_duplicate or (self.cfg["duplicate_mode"] == "status99" and
                                   (previous or digest in self._receiving)):
                self.event("upload_duplicate", file=filename, previous_trackid=previous or "")
                return UploadResult(99, errors=["Archivo ya recibido"])
            self._receiving.add(digest)
        try:
            return self._receive(data, filename, rut_sender, rut_company, via, digest, previous)
        finally:
            with self.lock:
                self._receiving.discard(digest)

    def _receive(self, data: bytes, filename: str, rut_sender: str, rut_company: str, via: str,
                 digest: str, previous: str | None) -> UploadResult:
        upload_checks = set(self.cfg.get("upload_checks") or [])

        env: dict[str, Any] = {
            "via": via, "file": filename, "rut_sender": rut_sender, "rut_company": rut_company,
            "sha256": digest, "errors": [], "docs": [], "stats": {}, "notes": [], "root": "",
            "family": "dte",
            # Verdict markers ([SIM:RLV]...) are looked for only in files that contain one.
            "markers": b"[SIM:" in data,
        }
        try:
            root = checks.parse(data)
        except etree.XMLSyntaxError as exc:
            return self._reject_schema(env, [f"LSX-00001: XML mal formado: {exc}"], "schema" in upload_checks)
        env["root"] = local(root)
        env["family"] = "boleta" if env["root"] == "EnvioBOLETA" else "dte"
        if via == "rest" and env["root"] != "EnvioBOLETA":
            return self._reject_schema(env, ["LSX-00002: se esperaba EnvioBOLETA"], True)

        schema_errors = self.schemas.validate(root)
        if schema_errors is None:
            env["notes"].append("sin validacion de schema (XSD no disponible)")
        elif schema_errors:
            return self._reject_schema(env, schema_errors, "schema" in upload_checks)

        # Envelope signature, in place: the outermost signature verifies where it stands.
        sig = next((c for c in root if isinstance(c.tag, str) and local(c) == "Signature"), None)
        signed = next((c for c in root if isinstance(c.tag, str) and c.get("ID")), None)
        sig_ok = False
        sig_reason = "Envio sin firma"
        if sig is not None and signed is not None:
            res = checks.verify_in_place(root, sig, "#" + signed.get("ID", ""))
            sig_ok, sig_reason = res.ok, res.reason
        if not sig_ok and "signature" in upload_checks:
            self.event("upload_rejected", status=8, reason=sig_reason, file=filename)
            return UploadResult(8, errors=[f"Error en Firma: {sig_reason}"])

        with self.lock:
            if previous and self.cfg["duplicate_mode"] == "rpt":
                return self._register(env, ["REC", "RPT"], [{"code": "RPT", "message": "Envio repetido"}])
            if not sig_ok:
                return self._register(env, ["REC", "SOK", "CRT", "RFR"],
                                      [{"code": "ENV-3-0", "message": f"Error en Firma de Envio: {sig_reason}"}])
            if env["root"] not in ("EnvioDTE", "EnvioBOLETA"):
                book = env["root"] in ("LibroCompraVenta", "LibroGuia")
                final = str(self.cfg.get("book_final_state") or "EPR") if book else "EPR"
                return self._register(env, [*OK_PATH[:-1], final], [])
            setdte = child(root, "SetDTE")
            crt_errors = self._check_caratula(child(setdte, "Caratula"), children(setdte, "DTE"),
                                              rut_sender, rut_company)
            if crt_errors:
                return self._register(env, ["REC", "SOK", "RCT"], crt_errors)
            result = self._register(env, OK_PATH, [])
            self._process_documents(env, child(setdte, "Caratula"), children(setdte, "DTE"))
            self.save()
            return result

    def _reject_schema(self, env: dict[str, Any], errors: list[str], sync: bool) -> UploadResult:
        if sync:
            self.event("upload_rejected", status=7, file=env["file"], errors=errors[:5])
            return UploadResult(7, errors=errors[:20])
        with self.lock:
            return self._register(env, ["REC", "RSC"], [{"code": "LSX", "message": e} for e in errors[:20]])

    def _register(self, env: dict[str, Any], path: list[str], errors: list[dict[str, str]]) -> UploadResult:
        boleta = env["family"] == "boleta" and env["via"] == "rest"
        trackid = self._new_trackid(boleta)
        now = self.now()
        env.update(trackid=trackid, path=path, final=path[-1], errors=errors, received_at=now,
                   received_ts=self.local_dt(now).strftime("%Y-%m-%d %H:%M:%S"))
        self.envelopes[trackid] = env
        self.file_hashes.setdefault(env["sha256"], trackid)
        self.event("upload", trackid=trackid, file=env["file"], final=path[-1], via=env["via"])
        self.save()
        return UploadResult(0, trackid=trackid, envelope=env)

    def _check_caratula(self, car: etree._Element | None, dtes: list[etree._Element],
                        rut_sender: str, rut_company: str) -> list[dict[str, str]]:
        errs: list[dict[str, str]] = []
        if car is None:
            return [{"code": "CRT-3-1", "message": "Falta Caratula"}]
        if checks.rut_norm(text(car, "RutReceptor")) != SII_RUT:
            errs.append({"code": "CRT-3-18", "message": f"RutReceptor de la Caratula debe ser {SII_RUT}"})
        if checks.rut_norm(text(car, "RutEmisor")) != checks.rut_norm(rut_company):
            errs.append({"code": "CRT-3-2", "message": "RutEmisor de la Caratula distinto de la empresa que envia"})
        if checks.rut_norm(text(car, "RutEnvia")) != checks.rut_norm(rut_sender):
            errs.append({"code": "CRT-3-3", "message": "RutEnvia de la Caratula distinto del usuario que sube el archivo"})
        resol = (self.cfg.get("resolutions") or {}).get(checks.rut_norm(text(car, "RutEmisor")))
        if resol and (text(car, "FchResol") != str(resol.get("FchResol"))
                      or text(car, "NroResol") != str(resol.get("NroResol"))):
            errs.append({"code": "CRT-3-19", "message": "Fecha/Numero Resolucion Invalido"})
        counts: dict[str, int] = {}
        for d in dtes:
            tipo = text(next((c for c in d if local(c) in ("Documento", "Liquidacion", "Exportaciones")), None),
                        "Encabezado", "IdDoc", "TipoDTE")
            counts[tipo] = counts.get(tipo, 0) + 1
        declared = {text(s, "TpoDTE"): int(text(s, "NroDTE") or 0) for s in children(car, "SubTotDTE")}
        if declared != counts:
            errs.append({"code": "CRT-3-5", "message": f"SubTotDTE no cuadra: declarado {declared}, enviados {counts}"})
        return errs

    def _process_documents(self, env: dict[str, Any], car: etree._Element | None,
                           dtes: list[etree._Element]) -> None:
        seen: set[str] = set()
        stats: dict[str, dict[str, int]] = {}
        caf_notes = False
        for dte in dtes:
            doc = next((c for c in dte if isinstance(c.tag, str)
                        and local(c) in ("Documento", "Liquidacion", "Exportaciones")), None)
            enc = child(doc, "Encabezado")
            tipo = int(text(enc, "IdDoc", "TipoDTE") or 0)
            folio = int(text(enc, "IdDoc", "Folio") or 0)
            emisor = checks.rut_norm(text(enc, "Emisor", "RUTEmisor"))
            key = doc_key(emisor or "0-0", tipo, folio)
            findings: list[dict[str, str]] = []

            def bad(code: str, msg: str) -> None:
                findings.append({"code": code, "message": msg})

            if key in self.accepted or key in seen:
                bad("DTE-3-101", f"Folio {folio} tipo {tipo} ya fue recibido (folio repetido)")
            seen.add(key)
            self._learn_caf_range(child(doc, "TED"))
            if self._folio_annulled(emisor, tipo, folio):
                bad("CAF-3-515", f"Folio {folio} tipo {tipo} anulado")
            fch = text(enc, "IdDoc", "FchEmis")
            ted = checks.verify_ted(child(doc, "TED"), self.sii_keys, bool(self.cfg["require_caf_signature"]))
            caf_notes = caf_notes or ted.skipped_caf_signature
            try:
                emis_date = dt.date.fromisoformat(fch)
            except ValueError:
                emis_date = None
            if ted.caf_fa and emis_date and tipo in CAF_EXPIRING_TYPES and emis_date > ted.caf_fa + dt.timedelta(days=180):
                bad("CAF-3-517", "CAF vencido (mas de 6 meses desde su autorizacion)")
            for f in ted.findings:
                bad(f.code, f.message)
            self._check_ted_consistency(child(doc, "TED"), enc, dte, bad)
            sig = checks.verify_dte_signature(dte)
            if not sig.ok:
                bad("DTE-3-505", f"Firma del DTE Incorrecta: {sig.reason}")
            self._check_totals(tipo, enc, doc, env["family"] == "boleta", bad)
            refs = self._references(doc)
            if self.cfg.get("strict_references") and tipo in (56, 61, 111, 112):
                for r in refs:
                    if r["tipo"].isdigit() and doc_key(emisor, r["tipo"], r["folio"] or 0) not in self.accepted:
                        bad("REF-3-750", f"Documento referenciado tipo {r['tipo']} folio {r['folio']} no recibido por el SII")
            if car is not None and emisor != checks.rut_norm(text(car, "RutEmisor")):
                bad("DTE-3-102", "RUTEmisor del DTE distinto del RutEmisor de la Caratula")
            recep = checks.rut_norm(text(enc, "Receptor", "RUTRecep"))
            if recep and not checks.rut_valid(recep):
                bad("DTE-3-103", f"RUT Receptor {recep} invalido")
            if self.authorization(emisor, env["rut_sender"]) == 6:
                bad("DTE-3-104", "Empresa no autorizada a emitir DTE")

            estado = "RCH" if findings else "DOK"
            marker = self._verdict_marker(doc) if estado == "DOK" and env.get("markers") else None
            if marker == "RCH":
                estado = "RCH"
                bad("SIM-3-902", "Rechazo pedido por el documento ([SIM:RCH])")
            elif marker in ("RPR", "RLV"):
                estado = marker
                findings.append({"code": "SIM-2-903" if marker == "RPR" else "SIM-1-904",
                                 "message": f"Reparo pedido por el documento ([SIM:{marker}])"})
            elif estado == "DOK" and self.rng.random() < float(self.cfg.get("reject_share") or 0):
                estado = "RCH"
                bad("SIM-3-900", "Rechazo simulado (reject_share)")
            elif estado == "DOK" and self.rng.random() < float(self.cfg.get("reparo_share") or 0):
                estado = "RPR"
                findings.append({"code": "SIM-2-901", "message": "Reparo simulado (reparo_share)"})
            elif estado == "DOK" and self.rng.random() < float(self.cfg.get("rlv_share") or 0):
                estado = "RLV"
                findings.append({"code": "SIM-1-905", "message": "Reparo leve simulado (rlv_share)"})
            rec = {
                "key": key, "rut_emisor": emisor, "tipo": tipo, "folio": folio, "fch_emis": fch,
                "rut_recep": recep, "mnt_total": amount(text(enc, "Totales", "MntTotal")),
                # For the RCV (rcv.py): amounts and names as the registers show them.
                "mnt_neto": amount(text(enc, "Totales", "MntNeto")), "mnt_exe": amount(text(enc, "Totales", "MntExe")),
                "iva": amount(text(enc, "Totales", "IVA")), "rzn_emisor": text(enc, "Emisor", "RznSoc"),
                "rzn_recep": text(enc, "Receptor", "RznSocRecep"),
                "estado": estado, "errors": findings, "trackid": env["trackid"],
                "received_at": env["received_at"], "received_ts": env["received_ts"],
                "signature_value": sig.signature_value or "".join(text(dte, "Signature", "SignatureValue").split()),
                "references": refs, "events": [],
            }
            self.documents.append(rec)
            env["docs"].append({"key": key, "tipo": tipo, "folio": folio, "estado": estado, "errors": findings})
            s = stats.setdefault(str(tipo), {"informados": 0, "aceptados": 0, "rechazados": 0, "reparos": 0})
            s["informados"] += 1
            if estado == "RCH":
                s["rechazados"] += 1
            else:
                # ACEPTADOS includes the ones with objections; REPAROS counts those separately.
                s["aceptados"] += 1
                s["reparos"] += estado in ("RPR", "RLV")
                self.accepted[key] = rec
                self._note_effects(rec)
        env["stats"] = stats
        # SII may close an envelope whose documents carry objections as RPR / RLV instead of EPR
        # (PROTOCOL §4.1); `objection_envelope_state` picks that, default EPR with REPAROS > 0.
        closing = self.cfg.get("objection_envelope_state")
        with_objections = [d["estado"] for d in env["docs"] if d["estado"] in ("RPR", "RLV")]
        if closing and with_objections and not any(d["estado"] == "RCH" for d in env["docs"]):
            final = ("RLV" if all(e == "RLV" for e in with_objections) else "RPR") if closing == "auto" else closing
            env["path"] = [*env["path"][:-1], final]
            env["final"] = final
        if caf_notes:
            env["notes"].append("CAF FRMA no verificada: ninguna llave SII cargada (--sii-keys)")

    def _check_ted_consistency(self, ted: etree._Element | None, enc: etree._Element | None,
                               dte: etree._Element, bad: Any) -> None:
        dd = child(ted, "DD")
        if dd is None:
            return
        pairs = [("RE", checks.rut_norm(text(enc, "Emisor", "RUTEmisor"))), ("TD", text(enc, "IdDoc", "TipoDTE")),
                 ("F", text(enc, "IdDoc", "Folio")), ("FE", text(enc, "IdDoc", "FchEmis")),
                 ("MNT", text(enc, "Totales", "MntTotal"))]
        for tag, value in pairs:
            got = text(dd, tag)
            if tag == "RE":
                got = checks.rut_norm(got)
            if got != value:
                bad("TED-3-520", f"Timbre: {tag}={got!r} no corresponde al documento ({value!r})")
        da = child(dd, "CAF", "DA")
        try:
            folio = int(text(dd, "F"))
            lo, hi = int(text(da, "RNG", "D")), int(text(da, "RNG", "H"))
            if not lo <= folio <= hi:
                bad("CAF-3-513", f"Folio {folio} fuera del rango autorizado {lo}-{hi}")
        except ValueError:
            bad("CAF-3-513", "Rango de folios del CAF ilegible")
        if checks.rut_norm(text(da, "RE")) != checks.rut_norm(text(dd, "RE")) or text(da, "TD") != text(dd, "TD"):
            bad("CAF-3-514", "CAF de otra empresa o de otro tipo de documento")

    def _check_totals(self, tipo: int, enc: etree._Element | None, doc: etree._Element | None,
                      boleta: bool, bad: Any) -> None:
        tot = child(enc, "Totales")

        def num(name: str, node: etree._Element | None = tot) -> Decimal:
            # Decimal, not int: export amounts are in a foreign currency with decimals.
            try:
                return Decimal(text(node, name) or "0")
            except InvalidOperation:
                return Decimal(0)

        neto, exe, iva, total = num("MntNeto"), num("MntExe"), num("IVA"), num("MntTotal")
        extra = Decimal(0)
        for imp in children(tot, "ImptoReten"):
            code = int(text(imp, "TipoImp") or 0)
            amount = num("MontoImp", imp)
            extra += -amount if code in RETENTION_CODES else amount
        if not boleta and text(tot, "TasaIVA"):
            expected_iva = round_half_up(float(neto) * float(text(tot, "TasaIVA")) / 100)
            if iva != expected_iva:
                bad("DTE-3-600", f"IVA {iva} no corresponde a MntNeto x TasaIVA ({expected_iva})")
        expected_total = neto + exe + iva + extra
        if tipo not in (52,) and total != expected_total:
            bad("DTE-3-601", f"El Monto Total No Cuadra: MntTotal {total}, esperado {expected_total}")
        lines = children(doc, "Detalle")
        if lines and not children(doc, "DscRcgGlobal"):
            affected = sum((num("MontoItem", d) for d in lines if text(d, "IndExe") == ""), Decimal(0))
            exempt = sum((num("MontoItem", d) for d in lines if text(d, "IndExe") == "1"), Decimal(0))
            if boleta and text(enc, "IdDoc", "IndMntNeto") != "2":
                if affected + exempt != total:
                    bad("DTE-3-602", f"Suma de lineas {affected + exempt} no cuadra con MntTotal {total}")
            elif tipo in (34, 41, 110, 111, 112):
                if affected + exempt != exe:
                    bad("DTE-3-602", f"Suma de lineas {affected + exempt} no cuadra con MntExe {exe}")
            elif tipo != 52 and (affected != neto or exempt != exe):
                bad("DTE-3-602", f"Suma de lineas afectas {affected} / exentas {exempt} no cuadra con "
                                 f"MntNeto {neto} / MntExe {exe}")

    @staticmethod
    def _references(doc: etree._Element | None) -> list[dict[str, str]]:
        return [{"tipo": text(r, "TpoDocRef"), "folio": text(r, "FolioRef"), "codref": text(r, "CodRef")}
                for r in children(doc, "Referencia")]

    def _note_effects(self, note: dict[str, Any]) -> None:
        """An accepted note marks the document it modifies (QueryEstDte states, NCA/ENC events)."""
        if note["tipo"] not in (56, 61):
            return
        for r in note["references"]:
            if not r["tipo"].isdigit() or not r["folio"].isdigit():
                continue
            target = self.accepted.get(doc_key(note["rut_emisor"], r["tipo"], r["folio"]))
            if target is None:
                continue
            target.setdefault("modified_by", []).append(
                {"tipo": note["tipo"], "folio": note["folio"], "codref": r["codref"], "at": note["received_at"]})
            if note["tipo"] == 61:
                code = "NCA" if r["codref"] == "1" else "ENC"
                self._add_event(target, code, {"NCA": "Recepcion de NC de anulacion que referencia al documento",
                                               "ENC": "Recepcion de NC distinta de anulacion"}[code],
                                note["rut_emisor"])

    def envelope_state(self, env: dict[str, Any], now: float | None = None) -> str:
        delay = float(self.cfg.get("step_delay_s") or 0)
        path = env["path"]
        if delay <= 0:
            return str(path[-1])
        elapsed = (self.now() if now is None else now) - env["received_at"]
        return str(path[min(len(path) - 1, max(0, int(elapsed / delay)))])

    # ------------------------------------------------------------------ folios (CAF ranges, annulment)

    @staticmethod
    def _verdict_marker(doc: etree._Element | None) -> str | None:
        for det in children(doc, "Detalle"):
            for name in ("NmbItem", "DscItem"):
                m = SIM_MARKER.search(text(det, name))
                if m:
                    return m.group(1)
        return None

    def _learn_caf_range(self, ted: etree._Element | None) -> None:
        da = child(ted, "DD", "CAF", "DA")
        try:
            self.register_caf(text(da, "RE"), int(text(da, "TD")), int(text(da, "RNG", "D")),
                              int(text(da, "RNG", "H")), save=False)
        except ValueError:
            pass

    def register_caf(self, rut: str, tipo: int, desde: int, hasta: int, save: bool = True) -> None:
        """A folio range SII authorized (a CAF it issued)."""
        if not rut or desde <= 0 or hasta < desde:
            raise ValueError("rut, tipo and 0 < desde <= hasta are required")
        with self.lock:
            ranges = self.caf_ranges.setdefault(f"{checks.rut_norm(rut)}|{int(tipo)}", [])
            if [desde, hasta] not in ranges:
                ranges.append([desde, hasta])
            if save:
                self.save()

    def _folio_annulled(self, rut: str, tipo: int, folio: int) -> bool:
        ranges = self.annulled.get(f"{checks.rut_norm(rut)}|{int(tipo)}", [])
        return any(lo <= folio <= hi for lo, hi in ranges)

    def annul(self, rut: str, tipo: int, desde: int, hasta: int) -> dict[str, Any]:
        """SII's folio annulment: folios not yet used become FAN (QueryEstDte) and a DTE using one
        is rejected (CAF-3-515). Used folios cannot be annulled; they are listed in `skipped`."""
        if not rut or desde <= 0 or hasta < desde:
            raise ValueError("rut, tipo and 0 < desde <= hasta are required")
        if hasta - desde > 1_000_000:
            raise ValueError("range too large")
        with self.lock:
            used = sorted(f for f in range(desde, hasta + 1) if doc_key(rut, tipo, f) in self.accepted)
            key = f"{checks.rut_norm(rut)}|{int(tipo)}"
            ranges = self.annulled.setdefault(key, [])
            start = desde
            for f in [*used, hasta + 1]:
                if start <= f - 1:
                    ranges.append([start, f - 1])
                start = f + 1
            self.event("annul", rut=checks.rut_norm(rut), tipo=int(tipo), desde=desde, hasta=hasta, skipped=used)
            self.save()
            return {"annulled": [r for r in ranges], "skipped": used}

    # ------------------------------------------------------------------ wsDTECorreo

    def resend_mail(self, caller: str, rut: str, dv: str, trackid: str) -> tuple[str, str]:
        """reenvioCorreo: (ESTADO, GLOSA). 0 ok, 101 check digit, 102 missing data, 105 unknown
        track id, 106 caller without rights on the company, 114 upload not validated yet."""
        rut, dv, trackid = rut.strip(), dv.strip().upper(), trackid.strip()
        if not rut or not dv or not trackid:
            return "102", "Faltan datos de entrada"
        if not rut.isdigit() or checks.rut_dv(int(rut)) != dv:
            return "101", "Error en digito verificador del Rut de la empresa"
        with self.lock:
            env = self._find_envelope(trackid)
            if env is None or split_rut(env["rut_company"])[0] != rut:
                return "105", "Error Track ID no existe"
            if not self._authorized_for(caller, f"{rut}-{dv}"):
                return "106", "Usuario autenticado no tiene permisos sobre Empresa"
            state = self.envelope_state(env)
            if state != env["path"][-1]:
                return "114", "Envio solicitado no ha concluido su validacion, por lo tanto no existe correo"
            mail = {"to": env["rut_company"], "trackid": env["trackid"], "requested_by": caller,
                    "at": self.local_dt().strftime("%Y-%m-%dT%H:%M:%S"), "estado": state,
                    "glosa": GLOSAS.get(state, state), "errors": list(env.get("errors") or []),
                    "documents": [{"tipo": d["tipo"], "folio": d["folio"], "estado": d["estado"],
                                   "errors": d["errors"]} for d in env["docs"]]}
            self.mails.append(mail)
            del self.mails[:-500]
            self.event("mail", trackid=env["trackid"], to=env["rut_company"])
            self.save()
            return "0", "Requerimiento recibido OK"

    # ------------------------------------------------------------------ queries

    def est_up(self, rut_company: str, trackid: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]] | None]:
        with self.lock:
            env = self._find_envelope(trackid)
            if env is None or checks.rut_norm(env["rut_company"]).split("-")[0] != rut_company.strip():
                return ([("TRACKID", trackid), ("ESTADO", "-11"), ("GLOSA", "Error: Envio no corresponde a la empresa o no existe"),
                         ("ERR_CODE", "1"), ("SQL_CODE", "0"), ("SRV_CODE", "1"), ("NUM_ATENCION", self.num_atencion())], None)
            if self.now() - env["received_at"] < float(self.cfg.get("early_query_s") or 0):
                return ([("TRACKID", env["trackid"]), ("ESTADO", "-11"), ("GLOSA", "Error: Envio aun no procesado"),
                         ("ERR_CODE", "2"), ("SQL_CODE", "0"), ("SRV_CODE", "0"), ("NUM_ATENCION", self.num_atencion())], None)
            state = self.envelope_state(env)
            hdr = [("TRACKID", env["trackid"]), ("ESTADO", state), ("GLOSA", GLOSAS.get(state, state)),
                   ("NUM_ATENCION", self.num_atencion())]
            body: list[tuple[str, str]] | None = None
            if state in ("EPR", "RPR", "RLV") and env["stats"]:
                body = []
                for tipo, s in sorted(env["stats"].items(), key=lambda kv: int(kv[0])):
                    body += [("TIPO_DOCTO", tipo), ("INFORMADOS", str(s["informados"])),
                             ("ACEPTADOS", str(s["aceptados"])), ("RECHAZADOS", str(s["rechazados"])),
                             ("REPAROS", str(s["reparos"]))]
            return hdr, body

    def _find_envelope(self, trackid: str) -> dict[str, Any] | None:
        trackid = trackid.strip()
        if trackid in self.envelopes:
            return self.envelopes[trackid]
        if trackid.isdigit():
            for width in (10, 15):
                found = self.envelopes.get(f"{int(trackid):0{width}d}")
                if found:
                    return found
        return None

    def boleta_status(self, rut: str, trackid: str) -> dict[str, Any] | None:
        with self.lock:
            env = self._find_envelope(trackid)
            if env is None or split_rut(env["rut_company"])[0] != rut:
                return None
            state = self.envelope_state(env)
            final = state == env["path"][-1]
            detail = None
            if final:
                detail = [{"tipo": d["tipo"], "folio": d["folio"], "estado": d["estado"],
                           "descripcion": "; ".join(e["message"] for e in d["errors"]) or None,
                           "error": [{"seccion": e["code"].split("-")[0], "linea": 0,
                                      "nivel": 3 if d["estado"] == "RCH" else 2, "codigo": e["code"],
                                      "descripcion": e["message"], "detalle": None} for e in d["errors"]]}
                          for d in env["docs"] if d["estado"] != "DOK"]
            return {
                "rut_emisor": env["rut_company"], "rut_envia": env["rut_sender"], "trackid": int(env["trackid"]),
                "fecha_recepcion": env["received_ts"], "estado": state,
                "estadistica": [{"tipo": int(t), **s} for t, s in sorted(env["stats"].items())] if final else [],
                "detalle_rep_rech": detail,
            }

    def estado_dte(self, rut_emisor: str, tipo: str, folio: str, rut_recep: str, fecha: str,
                   monto: str, firma: str | None = None) -> tuple[str, int, str]:
        """(ESTADO, ERR_CODE, GLOSA) of QueryEstDte; `fecha` already as YYYY-MM-DD."""
        with self.lock:
            auth = self.cfg.get("authorized")
            if auth is not None and checks.rut_norm(rut_emisor) not in {checks.rut_norm(k) for k in auth}:
                return "EMP", 6, "Empresa no autorizada a Emitir Documentos Tributarios Electronicos"
            try:
                key = doc_key(rut_emisor, tipo, folio)
            except ValueError:
                return "-1", -1, "Error: parametros invalidos"
            doc = self.accepted.get(key)
            if doc is None:
                rut_key = f"{checks.rut_norm(rut_emisor)}|{int(tipo)}"
                if self._folio_annulled(rut_emisor, int(tipo), int(folio)):
                    return "FAN", 5, "Folio Anulado"
                ranges = self.caf_ranges.get(rut_key)
                if ranges and not any(lo <= int(folio) <= hi for lo, hi in ranges):
                    return "FNA", 4, "Folio No Autorizado"
                return "FAU", 3, "Documento No Recibido por el SII"
            for mod in doc.get("modified_by", []):
                st = NOTE_STATES.get((mod["tipo"], mod["codref"]))
                if st:
                    return st[0], st[1], f"Documento modificado por nota {mod['tipo']} folio {mod['folio']}"
            mismatch = []
            if doc["fch_emis"] != fecha:
                mismatch.append("fecha")
            if str(doc["mnt_total"]) != str(amount(str(monto))):
                mismatch.append("monto")
            if checks.rut_norm(doc["rut_recep"]) != checks.rut_norm(rut_recep):
                mismatch.append("receptor")
            if firma is not None and "".join(firma.split()) != doc["signature_value"]:
                mismatch.append("firma")
            if mismatch:
                return "DNK", 1, "Documento Recibido por el SII. Datos No Coinciden: " + ", ".join(mismatch)
            return "DOK", 0, "Documento Recibido por el SII. Datos Coinciden con los Registrados"

    # ------------------------------------------------------------------ RegistroReclamoDTE

    def _add_event(self, doc: dict[str, Any], code: str, desc: str, rut: str) -> None:
        body, dv = split_rut(rut)
        doc["events"].append({"codEvento": code, "descEvento": desc, "rutResponsable": body,
                              "dvResponsable": dv, "fechaEvento": self.local_dt().strftime("%d-%m-%Y %H:%M:%S")})

    def _claim_lookup(self, rut: str, dv: str, tipo: str, folio: str) -> tuple[int, str, dict[str, Any] | None]:
        try:
            body = int(rut)
        except ValueError:
            return 1, "Rut Emisor invalido", None
        if body < 1000 or checks.rut_dv(body) != dv.strip().upper():
            return 1, "Rut Emisor invalido", None
        try:
            nfolio, ntipo = int(folio), int(tipo)
        except ValueError:
            return 2, "Folio invalido", None
        if nfolio <= 0:
            return 2, "Folio invalido", None
        if ntipo not in CLAIM_TYPES:
            return 3, "Tipo de documento no corresponde", None
        doc = self.accepted.get(doc_key(f"{body}-{dv}", ntipo, nfolio))
        if doc is None:
            return 18, "Documento no ha sido recibido por el SII", None
        if doc["fch_emis"] < "2017-01-14":
            return 10, "Documento no emitido/recibido desde 2017-01-14", None
        return 0, "", doc

    def _window_over(self, doc: dict[str, Any]) -> bool:
        return self.now() - float(doc["received_at"]) > float(self.cfg["claim_window_days"]) * 86400

    def _authorized_for(self, caller: str, company: str) -> bool:
        auth = self.cfg.get("authorized")
        if auth is None:
            return True
        allowed = {checks.rut_norm(k): v for k, v in auth.items()}.get(checks.rut_norm(company), [])
        return checks.rut_norm(caller) in {checks.rut_norm(s) for s in allowed}

    def claim(self, caller: str, rut: str, dv: str, tipo: str, folio: str, accion: str) -> tuple[int, str]:
        with self.lock:
            code, desc, doc = self._claim_lookup(rut, dv, tipo, folio)
            if doc is None:
                return code, desc
            accion = accion.strip().upper()
            if accion not in CLAIM_ACTIONS:
                return 4, "Accion no valida"
            if not self._authorized_for(caller, doc["rut_recep"]):
                return 17, "Solo el receptor puede registrar esta accion"
            if self._window_over(doc):
                return 8, "Pasados 8 dias despues de la recepcion no es posible registrar reclamos o eventos"
            done = {e["codEvento"] for e in doc["events"]}
            claims_done = done & CLAIMS
            if accion in done:
                return 7, "Evento registrado previamente"
            if claims_done:
                if accion == "ERM":
                    return 6, "No es posible otorgar recibo de mercaderias a un DTE reclamado"
                if accion == "ACD":
                    return 12, "No es posible aceptar un DTE reclamado"
                if accion in ("RFP", "RFT") and claims_done & {"RFP", "RFT"}:
                    return 19, "Ya existe un reclamo por falta de mercaderias"
            if accion in CLAIMS and "ACD" in done:
                return 11, "No es posible reclamar un DTE aceptado"
            if accion in CLAIMS and "ERM" in done:
                return 13, "No es posible reclamar un DTE con recibo de mercaderias"
            self._add_event(doc, accion, CLAIM_ACTIONS[accion], caller)
            self.event("claim", key=doc["key"], accion=accion, caller=caller)
            self.save()
            return 0, "Accion Completada OK"

    def list_events(self, caller: str, rut: str, dv: str, tipo: str, folio: str) -> tuple[int, str, list[dict[str, str]]]:
        with self.lock:
            code, desc, doc = self._claim_lookup(rut, dv, tipo, folio)
            if doc is None:
                return code, desc, []
            if not (self._authorized_for(caller, doc["rut_recep"]) or self._authorized_for(caller, doc["rut_emisor"])):
                return 14, "Solo el receptor o el emisor pueden consultar", []
            if not doc["events"]:
                return 16, "No existen eventos para el documento", []
            return 15, "Se entrega lista de eventos", list(doc["events"])

    def cedible(self, caller: str, rut: str, dv: str, tipo: str, folio: str) -> tuple[int, str]:
        with self.lock:
            code, desc, doc = self._claim_lookup(rut, dv, tipo, folio)
            if doc is None:
                if code == 3:
                    return 20, "Tipo de documento no es cedible"
                return code, desc
            for mod in doc.get("modified_by", []):
                if mod["tipo"] == 61 and mod["codref"] == "1" and mod["at"] - doc["received_at"] <= 8 * 86400:
                    return 21, "DTE no cedible: anulado por nota de credito dentro de 8 dias"
            done = {e["codEvento"] for e in doc["events"]}
            if done & CLAIMS:
                return 24, "DTE no cedible: tiene reclamos"
            if self._window_over(doc):
                return 25, "DTE cedible: han pasado 8 dias desde la recepcion (acuse tacito)"
            if done & {"ACD", "ERM"}:
                return 23, "DTE cedible: sin reclamos"
            return 22, "No existen registros de reclamos ni acuse de recibo"

    def fecha_recepcion(self, rut: str, dv: str, tipo: str, folio: str) -> str | None:
        with self.lock:
            try:
                doc = self.accepted.get(doc_key(f"{int(rut)}-{dv}", int(tipo), int(folio)))
            except ValueError:
                return None
            if doc is None:
                return None
            return self.local_dt(doc["received_at"]).strftime("%d-%m-%Y %H:%M:%S")
