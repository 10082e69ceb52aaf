"""Reception of suppliers' DTEs: the exchange mailbox (IMAP), what arrives in it (MIME, XML
classification, full verification of each EnvioDTE addressed to us) and the answers
(RespuestaDTE, EnvioRecibos) sent back by SMTP. Acceptance or claim at SII is
:meth:`dte_native.sii.SiiClient.claim`; :func:`claim_at_sii` wraps it per document.

The work happens in the C++ core (GMime, libcurl, libxml2/xmlsec); this module only types it.

>>> batch = fetch_inbox("imaps://mail.example.cl/INBOX", "dte", "secret", since_uid=0)  # doctest: +SKIP
>>> outcome = process_message(batch.messages[0].raw, company_rut="77123456-9")  # doctest: +SKIP
>>> outcome.quarantined, [i.status for i in outcome.items]  # doctest: +SKIP
(False, ['verified'])
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import smtplib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping, Sequence

from . import _core
from ._api import Certificate, SchemaSet, SiiKeyring, default_schema_set
from ._types import Check
from .certify import xmlread
from .errors import DocumentError, XmlSyntaxError

from lxml import etree  # type: ignore[import-untyped]

__all__ = [
    "RECIBO_DECLARACION", "ReceivedDocument", "ReceivedEnvelope", "MessageItem", "MessageOutcome",
    "InboxMessage", "InboxBatch", "InboxEntry", "classify", "fetch_inbox", "process_message",
    "verify_received", "build_recepcion", "build_resultado", "build_recibos", "respond",
    "answer_message", "send_answer", "run_inbox", "claim_at_sii",
    "MAX_DTE_BYTES", "DteHeader", "DteParty", "DteTax", "DteTotals", "DteItemCode", "DteLine",
    "DteGlobalAdjustment", "DteReference", "DteContent", "read_dte",
]

RECIBO_DECLARACION: str = _core.RECIBO_DECLARACION
"""The Ley 19.983 sentence of every Recibo, byte-exact from Recibos_v10.xsd."""

XmlKind = Literal["EnvioDTE", "RespuestaDTE", "EnvioRecibos", "ResultadoEnvio", "other"]


def _checks(items: Iterable[Mapping[str, Any]], memo: dict[Any, Check]) -> list[Check]:
    """Check objects for the core's dicts; equal checks share one (frozen) object."""
    out = []
    for c in items:
        try:
            key: Any = (c["name"], c["subject"], c["status"], c["reason"])
            check = memo.get(key)
        except (KeyError, TypeError):  # not the core's shape: no sharing
            key, check = None, None
        if check is None:
            check = Check._from(c)
            if key is not None:
                memo[key] = check
        out.append(check)
    return out


@dataclass(frozen=True)
class ReceivedDocument:
    id: str
    doc_type: int
    folio: int
    issuer_rut: str
    receiver_rut: str
    issue_date: str
    total: int
    signed_at: str
    key: str  # "RUT|type|folio": what duplicate detection compares
    state: int  # EstadoRecepDTE: 0 ok, 1 signature, 2 issuer, 3 receiver, 4 repeated, 99 other
    glosa: str
    duplicate: bool
    ok: bool
    checks: list[Check]
    xml: bytes = field(repr=False)

    @classmethod
    def _from(cls, d: Mapping[str, Any], memo: dict[Any, Check] | None = None) -> ReceivedDocument:
        return cls(d["id"], int(d["doc_type"]), int(d["folio"]), d["issuer_rut"], d["receiver_rut"],
                   d["issue_date"], int(d["total"]), d["signed_at"], d["key"], int(d["state"]),
                   d["glosa"], bool(d["duplicate"]), bool(d["ok"]),
                   _checks(d["checks"], {} if memo is None else memo), bytes(d["xml"]))


@dataclass(frozen=True)
class ReceivedEnvelope:
    kind: str
    set_id: str
    digest: str
    rut_emisor: str
    rut_envia: str
    rut_receptor: str
    tmst_firma_env: str
    state: int  # EstadoRecepEnv: 0 ok, 1 schema, 2 signature, 3 receiver, 90 repeated, 91 unreadable, 99
    glosa: str
    ok: bool
    checks: list[Check]
    documents: list[ReceivedDocument]

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.status == "fail"]

    @classmethod
    def _from(cls, d: Mapping[str, Any]) -> ReceivedEnvelope:
        memo: dict[Any, Check] = {}  # each document's checks are also the envelope's: made once
        return cls(d["kind"], d["set_id"], d["digest"], d["rut_emisor"], d["rut_envia"],
                   d["rut_receptor"], d["tmst_firma_env"], int(d["state"]), d["glosa"], bool(d["ok"]),
                   _checks(d["checks"], memo),
                   [ReceivedDocument._from(x, memo) for x in d["documents"]])


@dataclass(frozen=True)
class MessageItem:
    filename: str
    part_path: str
    kind: str
    root: str
    status: str  # verified | failed | unreadable | refused | answer | ignored
    reason: str
    envelope: ReceivedEnvelope | None
    checks: list[Check]
    xml: bytes = field(repr=False)


@dataclass(frozen=True)
class MessageOutcome:
    message_id: str
    sender: str     # From
    reply_to: str   # where answers go: Reply-To, else From
    subject: str
    date: str
    quarantined: bool
    reason: str
    items: list[MessageItem]

    @property
    def documents(self) -> list[ReceivedDocument]:
        return [d for i in self.items if i.envelope for d in i.envelope.documents]

    @classmethod
    def _from(cls, d: Mapping[str, Any]) -> MessageOutcome:
        m = d["mime"]
        items = [MessageItem(i["filename"], i["part_path"], i["kind"], i["root"], i["status"], i["reason"],
                             ReceivedEnvelope._from(i["envelope"]) if i["envelope"] else None,
                             [Check._from(c) for c in i["checks"]], bytes(i["xml"]))
                 for i in d["items"]]
        return cls(m["message_id"], m["from"], m["reply_to"] or m["from"], m["subject"], m["date"],
                   bool(d["quarantined"]), d["reason"], items)

    def summary(self) -> dict[str, Any]:
        """JSON-friendly, without the XML bytes."""
        return {
            "message_id": self.message_id, "from": self.sender, "reply_to": self.reply_to,
            "subject": self.subject, "date": self.date, "quarantined": self.quarantined,
            "reason": self.reason,
            "items": [{
                "filename": i.filename, "kind": i.kind, "status": i.status, "reason": i.reason,
                "envelope_state": i.envelope.state if i.envelope else None,
                "documents": [{k: v for k, v in asdict(doc).items() if k not in ("xml", "checks")}
                              | {"failures": [asdict(c) for c in doc.checks if c.status == "fail"]}
                              for doc in (i.envelope.documents if i.envelope else [])],
            } for i in self.items],
        }


@dataclass(frozen=True)
class InboxMessage:
    uid: int
    raw: bytes = field(repr=False)


@dataclass(frozen=True)
class InboxBatch:
    uid_validity: int
    messages: list[InboxMessage]


def _schemas_or_none(schema_set: SchemaSet | None) -> _core.SchemaSet | None:
    if schema_set is not None:
        return schema_set._native
    default = default_schema_set()
    return default._native if default is not None else None


def _keyring(keyring: SiiKeyring | None) -> _core.SiiKeyring:
    return (keyring if keyring is not None else SiiKeyring.default())._native


def classify(data: bytes) -> XmlKind:
    """"EnvioDTE", "RespuestaDTE", "EnvioRecibos", "ResultadoEnvio" (SII's mails) or "other"."""
    return _core.reception_classify(data)["kind"]  # type: ignore[no-any-return]


def fetch_inbox(imap_url: str, user: str, password: str, since_uid: int = 0, *,
                uid_validity: int | None = None, verify_tls: bool = True, ca_file: str = "",
                timeout_s: float = 120.0, limit: int | None = None) -> InboxBatch:
    """Fetches the messages with UID above ``since_uid`` (oldest first). When ``uid_validity``
    is given and the server's differs, the remembered UID is void and everything is fetched.
    Nothing is marked or deleted: persist ``since_uid`` yourself after storing each message."""
    client = _core.ImapClient(imap_url, user, password, verify_tls, ca_file, timeout_s)
    status = client.status()
    if uid_validity is not None and uid_validity != status["uid_validity"]:
        since_uid = 0
    uids = client.uids_above(since_uid)
    if limit is not None:
        uids = uids[:limit]
    return InboxBatch(int(status["uid_validity"]), [InboxMessage(u, client.fetch(u)) for u in uids])


def process_message(raw: bytes, *, company_rut: str, keyring: SiiKeyring | None = None,
                    schema_set: SchemaSet | None = None, known: Iterable[str] = (),
                    check_cert_validity: bool = True,
                    max_attachment_bytes: int = 0) -> MessageOutcome:
    """Parses one mail and verifies every EnvioDTE in it (see ReceivedEnvelope). Never raises
    for bad content: broken MIME, non-XML, oversized or hostile attachments, tampered
    signatures, a wrong receiver or an untrusted CAF make ``quarantined`` true with a reason."""
    return MessageOutcome._from(_core.reception_process_message(
        raw, company_rut, _keyring(keyring), _schemas_or_none(schema_set), set(known),
        check_cert_validity, max_attachment_bytes))


def verify_received(data: bytes, *, company_rut: str, keyring: SiiKeyring | None = None,
                    schema_set: SchemaSet | None = None, known: Iterable[str] = (),
                    check_cert_validity: bool = True) -> ReceivedEnvelope:
    """Full verification of one received EnvioDTE (no MIME)."""
    return ReceivedEnvelope._from(_core.reception_verify(
        data, company_rut, _keyring(keyring), _schemas_or_none(schema_set), set(known),
        check_cert_validity))


def _caratula(company_rut: str, supplier_rut: str, id_respuesta: int, contact: Mapping[str, str] | None,
              timestamp: str | _dt.datetime | None) -> dict[str, Any]:
    c = dict(contact or {})
    ts = timestamp.strftime("%Y-%m-%dT%H:%M:%S") if isinstance(timestamp, _dt.datetime) else (timestamp or "")
    return {"rut_responde": company_rut, "rut_recibe": supplier_rut, "id_respuesta": id_respuesta,
            "nmb_contacto": c.get("name", ""), "fono_contacto": c.get("phone", ""),
            "mail_contacto": c.get("email", ""), "tmst_firma": ts}


def _doc_fields(d: ReceivedDocument) -> dict[str, Any]:
    return {"folio": d.folio, "fch_emis": d.issue_date, "rut_emisor": d.issuer_rut,
            "rut_recep": d.receiver_rut, "mnt_total": d.total}


def build_recepcion(envelopes: Sequence[tuple[ReceivedEnvelope, str]], cert: Certificate, *,
                    company_rut: str, id_respuesta: int = 1, cod_envio: int = 1,
                    contact: Mapping[str, str] | None = None,
                    timestamp: str | _dt.datetime | None = None) -> bytes:
    """RespuestaDTE with one RecepcionEnvio per (envelope, file name): the envelope's and each
    document's reception state. Signed, schema-valid, ISO-8859-1."""
    if not envelopes:
        raise ValueError("no envelope to answer")
    items = []
    for n, (env, name) in enumerate(envelopes):
        items.append({
            "nmb_envio": name, "cod_envio": cod_envio + n, "envio_dte_id": env.set_id or "SetDoc",
            "digest": env.digest, "rut_emisor": env.rut_emisor, "rut_receptor": env.rut_receptor,
            "estado": env.state, "glosa": env.glosa,
            "documents": [{"tipo_dte": d.doc_type, **_doc_fields(d), "estado": d.state, "glosa": d.glosa}
                          for d in env.documents],
        })
    supplier = envelopes[0][0].rut_emisor
    return _core.reception_build_recepcion(
        _caratula(company_rut, supplier, id_respuesta, contact, timestamp), items, cert._native)


def build_resultado(documents: Sequence[ReceivedDocument], cert: Certificate, *, company_rut: str,
                    accept: bool = True, reason: str = "", code: int = 0, discrepancies: bool = False,
                    id_respuesta: int = 1, cod_envio: int = 1, contact: Mapping[str, str] | None = None,
                    timestamp: str | _dt.datetime | None = None) -> bytes:
    """RespuestaDTE with ResultadoDTE: commercial acceptance (EstadoDTE 0, or 1 with
    ``discrepancies``) or rejection (2; ``reason`` is required, ``code`` a negative CodRchDsc)."""
    if not documents:
        raise ValueError("no document to answer")
    estado = (1 if discrepancies else 0) if accept else 2
    items = [{"tipo_dte": d.doc_type, **_doc_fields(d), "cod_envio": cod_envio, "estado": estado,
              "glosa": reason, "cod_rch_dsc": code} for d in documents]
    return _core.reception_build_resultado(
        _caratula(company_rut, documents[0].issuer_rut, id_respuesta, contact, timestamp), items,
        cert._native)


def build_recibos(documents: Sequence[ReceivedDocument], cert: Certificate, *, company_rut: str,
                  recinto: str, signer_rut: str = "", contact: Mapping[str, str] | None = None,
                  timestamp: str | _dt.datetime | None = None) -> bytes:
    """EnvioRecibos (Ley 19.983 receipt of goods or services): each Recibo signed, then the set."""
    if not documents:
        raise ValueError("no document to acknowledge")
    ts = _caratula(company_rut, "", 1, None, timestamp)["tmst_firma"]
    items = [{"tipo_doc": d.doc_type, **_doc_fields(d), "recinto": recinto, "rut_firma": signer_rut,
              "tmst_firma": ts} for d in documents]
    return _core.reception_build_recibos(
        _caratula(company_rut, documents[0].issuer_rut, 1, contact, timestamp), items, cert._native)


Action = Literal["receive", "accept", "reject", "receipt"]


def respond(envelope: ReceivedEnvelope, cert: Certificate, action: Action, *, company_rut: str,
            file_name: str = "envio.xml", reason: str = "", code: int = 0, recinto: str = "",
            id_respuesta: int = 1, cod_envio: int = 1, contact: Mapping[str, str] | None = None,
            timestamp: str | _dt.datetime | None = None) -> tuple[str, bytes]:
    """The answer for one received envelope, with its customary file name:
    ``receive`` RecepcionEnvio, ``accept``/``reject`` ResultadoDTE for the envelope's valid
    documents, ``receipt`` EnvioRecibos."""
    docs = [d for d in envelope.documents if d.ok] or list(envelope.documents)
    if action == "receive":
        return ("RecepcionDTE.xml", build_recepcion([(envelope, file_name)], cert, company_rut=company_rut,
                                                    id_respuesta=id_respuesta, cod_envio=cod_envio,
                                                    contact=contact, timestamp=timestamp))
    if action in ("accept", "reject"):
        return ("ResultadoDTE.xml", build_resultado(docs, cert, company_rut=company_rut,
                                                    accept=action == "accept", reason=reason, code=code,
                                                    id_respuesta=id_respuesta, cod_envio=cod_envio,
                                                    contact=contact, timestamp=timestamp))
    if action == "receipt":
        if not recinto:
            raise ValueError("a receipt needs recinto (where the goods or services were received)")
        return ("EnvioRecibos.xml", build_recibos(docs, cert, company_rut=company_rut, recinto=recinto,
                                                  contact=contact, timestamp=timestamp))
    raise ValueError(f"unknown action {action!r}")


def answer_message(sender: str, to: str, subject: str, body: str,
                   attachments: Sequence[tuple[str, bytes]]) -> bytes:
    """An RFC 5322 message (built by GMime) carrying the answers as XML attachments."""
    return _core.mime_build_message(sender, to, subject, body,
                                    [(name, "application/xml", data) for name, data in attachments])


def send_answer(smtp_host: str, smtp_port: int, sender: str, to: str, subject: str,
                attachments: Sequence[tuple[str, bytes]], *, body: str = "Respuesta de intercambio DTE.",
                starttls: bool = False, ssl: bool = False, user: str | None = None,
                password: str | None = None, timeout: float = 60.0) -> bytes:
    """Sends the answer to the supplier's exchange address; returns the message sent."""
    raw = answer_message(sender, to, subject, body, attachments)
    raw = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")  # SMTP wants CRLF lines
    cls = smtplib.SMTP_SSL if ssl else smtplib.SMTP
    with cls(smtp_host, smtp_port, timeout=timeout) as smtp:
        if starttls and not ssl:
            smtp.starttls()
        if user:
            smtp.login(user, password or "")
        smtp.sendmail(sender, [to], raw)
    return raw


# --- a whole inbox run with progress kept on disk ---------------------------------------------


@dataclass(frozen=True)
class InboxEntry:
    uid: int
    path: Path  # where the raw mail was stored (accepted/ or quarantine/)
    outcome: MessageOutcome


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def run_inbox(imap_url: str, user: str, password: str, store: str | os.PathLike[str], *,
              company_rut: str, keyring: SiiKeyring | None = None, schema_set: SchemaSet | None = None,
              verify_tls: bool = True, ca_file: str = "", limit: int | None = None) -> list[InboxEntry]:
    """Fetches what is new, verifies it, stores each mail under ``store``/accepted or
    ``store``/quarantine (with a .json of the outcome), and only then advances
    ``store``/state.json (UIDVALIDITY, last UID, documents already received). A crash at any
    point re-fetches at most the message in hand; duplicates are caught by the known keys."""
    root = Path(store)
    for sub in ("accepted", "quarantine"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    state_path = root / "state.json"
    state: dict[str, Any] = {"uid_validity": None, "last_uid": 0, "known": []}
    if state_path.exists():
        state.update(json.loads(state_path.read_text(encoding="utf-8")))
    client = _core.ImapClient(imap_url, user, password, verify_tls, ca_file, 120.0)
    status = client.status()
    if state["uid_validity"] != status["uid_validity"]:
        state["uid_validity"], state["last_uid"] = status["uid_validity"], 0
    known = set(state["known"])
    entries: list[InboxEntry] = []
    uids = client.uids_above(int(state["last_uid"]))
    for uid in uids[:limit] if limit is not None else uids:
        raw = client.fetch(uid)
        outcome = process_message(raw, company_rut=company_rut, keyring=keyring, schema_set=schema_set,
                                  known=known)
        folder = root / ("quarantine" if outcome.quarantined else "accepted")
        stem = f"{status['uid_validity']}-{uid}"
        _write_atomic(folder / f"{stem}.eml", raw)
        _write_atomic(folder / f"{stem}.json",
                      json.dumps(outcome.summary(), ensure_ascii=False, indent=1).encode("utf-8"))
        # Only documents of envelopes fully received count as received: a rejected envelope may
        # legitimately be sent again, corrected.
        known.update(d.key for i in outcome.items if i.envelope and i.envelope.ok for d in i.envelope.documents)
        state["last_uid"], state["known"] = uid, sorted(known)
        _write_atomic(state_path, json.dumps(state).encode("utf-8"))
        entries.append(InboxEntry(uid, folder / f"{stem}.eml", outcome))
    return entries


def claim_at_sii(client: Any, document: ReceivedDocument, action: str) -> Any:
    """Registers acceptance ("ACD", "ERM") or a claim ("RCD", "RFP", "RFT") at SII
    (RegistroReclamoDTE) for one received document; ``client`` is a dte_native.sii.SiiClient."""
    return client.claim(document.issuer_rut, document.doc_type, document.folio, action)


# --- reading a received DTE's content ----------------------------------------------------------

MAX_DTE_BYTES = 8 * 1024 * 1024
"""The largest DTE :func:`read_dte` reads (a received envelope is capped by the core likewise)."""


@dataclass(frozen=True)
class DteHeader:
    doc_type: int
    folio: int
    issue_date: str  # FchEmis, ISO date
    due_date: str  # FchVenc or ""
    export: bool  # an <Exportaciones> document (110, 111, 112)


@dataclass(frozen=True)
class DteParty:
    """Emisor or Receptor. Exports name the issuer RznSoc and boletas RznSocEmisor: both land in ``name``."""
    rut: str
    name: str
    activity: str
    street: str
    city: str
    email: str
    phone: str


@dataclass(frozen=True)
class DteTax:
    """One Totales/ImptoReten: an additional tax or a retention (TipoImp code, rate %, amount)."""
    code: int
    rate: float
    amount: float


@dataclass(frozen=True)
class DteTotals:
    net: float  # MntNeto
    exempt: float  # MntExe
    vat_rate: float  # TasaIVA (0 when the document has no IVA)
    vat: float  # IVA
    total: float  # MntTotal
    currency: str  # TpoMoneda (exports) or ""
    additional_taxes: list[DteTax]


@dataclass(frozen=True)
class DteItemCode:
    kind: str  # TpoCodigo
    value: str  # VlrCodigo


@dataclass(frozen=True)
class DteLine:
    number: int
    name: str
    description: str
    quantity: float  # 1 when the line gives none
    unit_price: float  # PrcItem, 0 when absent
    discount_pct: float
    discount_amount: float
    surcharge_amount: float
    amount: float  # MontoItem
    exempt: bool  # IndExe 1 (exempt) or 2 (not billable)
    tax_codes: list[int]  # CodImpAdic
    item_codes: list[DteItemCode]


@dataclass(frozen=True)
class DteGlobalAdjustment:
    """DscRcgGlobal: a global discount (``move == "D"``) or surcharge ("R"), in "%" or "$"."""
    move: str
    name: str
    kind: str
    value: float
    exempt: bool


@dataclass(frozen=True)
class DteReference:
    doc_type: str  # TpoDocRef: a DTE code or e.g. "SET", "801"
    folio: str
    date: str
    code: str  # CodRef 1 voids, 2 corrects text, 3 corrects amounts, "" otherwise
    reason: str


@dataclass(frozen=True)
class DteContent:
    """What a received DTE says, as values: read by :func:`read_dte`."""
    header: DteHeader
    issuer: DteParty
    receiver: DteParty
    totals: DteTotals
    lines: list[DteLine]
    global_adjustments: list[DteGlobalAdjustment]
    references: list[DteReference]


def _num(node: Any, name: str, default: float = 0.0) -> float:
    value = xmlread.text(node, name)
    if not value:
        return default
    try:
        return float(value)
    except ValueError:
        raise DocumentError(f"<{name}> is not a number: {value[:40]!r}", "dte.bad_number") from None


def _int(node: Any, name: str) -> int:
    value = xmlread.text(node, name)
    if not value.isdigit():
        raise DocumentError(f"<{name}> is missing or not a whole number: {value[:40]!r}", "dte.bad_number")
    return int(value)


def _party(node: Any, issuer: bool) -> DteParty:
    def t(*names: str) -> str:
        return next((v for v in (xmlread.text(node, n) for n in names) if v), "")

    if issuer:
        return DteParty(t("RUTEmisor"), t("RznSoc", "RznSocEmisor"), t("GiroEmis", "GiroEmisor"),
                        t("DirOrigen"), t("CmnaOrigen"), t("CorreoEmisor"), t("Telefono"))
    return DteParty(t("RUTRecep"), t("RznSocRecep"), t("GiroRecep"), t("DirRecep"), t("CmnaRecep"),
                    t("CorreoRecep"), t("Contacto"))


def read_dte(xml: bytes) -> DteContent:
    """The content of one ``<DTE>`` (any type: facturas, notas, guías, boletas, exports) as typed values.

    Reads only; it verifies nothing (:func:`verify_received` does). The parser loads no DTD, resolves
    no entity and opens no network; a DOCTYPE, input over :data:`MAX_DTE_BYTES`, malformed XML or a
    document without its header raise :class:`~dte_native.errors.XmlSyntaxError` /
    :class:`~dte_native.errors.DocumentError`.

    >>> content = read_dte(received.xml)  # doctest: +SKIP
    >>> content.header.doc_type, content.totals.total, content.lines[0].name  # doctest: +SKIP
    (33, 119000.0, 'Servicio')
    """
    if not isinstance(xml, (bytes, bytearray)):
        raise TypeError("read_dte takes the DTE as bytes")
    if len(xml) > MAX_DTE_BYTES:
        raise XmlSyntaxError(f"the DTE is {len(xml)} bytes, over the {MAX_DTE_BYTES} read", "xml.too_large")
    head = bytes(xml[:xml.find(b"<DTE") if b"<DTE" in xml else len(xml)])
    if b"<!DOCTYPE" in head or b"<!ENTITY" in head:  # refused before parsing; checked again after
        raise XmlSyntaxError("the DTE carries a DOCTYPE (DTDs and entities are refused)", "xml.dtd")
    try:
        root = xmlread.parse(bytes(xml))
    except etree.XMLSyntaxError as e:
        raise XmlSyntaxError(f"the DTE is not well-formed XML: {e}", "xml.syntax") from None
    if root.getroottree().docinfo.doctype:
        raise XmlSyntaxError("the DTE carries a DOCTYPE (DTDs and entities are refused)", "xml.dtd")
    if any(isinstance(n, etree._Entity) for n in root.iter()):
        raise XmlSyntaxError("the DTE uses entities (refused)", "xml.entity")
    if xmlread.local(root) != "DTE":
        raise DocumentError(f"expected one <DTE>, got <{xmlread.local(root)}>", "dte.not_dte")
    doc = xmlread.document(root)
    if doc is None:
        raise DocumentError("the <DTE> has no Documento, Exportaciones or Liquidacion", "dte.no_document")
    enc = xmlread.find(doc, "Encabezado")
    id_doc, emisor, receptor, totales = (xmlread.find(enc, n) for n in ("IdDoc", "Emisor", "Receptor", "Totales"))
    if id_doc is None or emisor is None or totales is None:
        raise DocumentError("the DTE has no Encabezado with IdDoc, Emisor and Totales", "dte.no_header")
    header = DteHeader(_int(id_doc, "TipoDTE"), _int(id_doc, "Folio"), xmlread.text(id_doc, "FchEmis"),
                       xmlread.text(id_doc, "FchVenc"), xmlread.local(doc) == "Exportaciones")
    taxes = [DteTax(int(_num(imp, "TipoImp")), _num(imp, "TasaImp"), _num(imp, "MontoImp"))
             for imp in xmlread.findall(totales, "ImptoReten")]
    totals = DteTotals(_num(totales, "MntNeto"), _num(totales, "MntExe"), _num(totales, "TasaIVA"),
                       _num(totales, "IVA"), _num(totales, "MntTotal"), xmlread.text(totales, "TpoMoneda"), taxes)
    lines = [DteLine(
        int(_num(det, "NroLinDet")), xmlread.text(det, "NmbItem"), xmlread.text(det, "DscItem"),
        _num(det, "QtyItem", 1.0) or 1.0, _num(det, "PrcItem"), _num(det, "DescuentoPct"),
        _num(det, "DescuentoMonto"), _num(det, "RecargoMonto"), _num(det, "MontoItem"),
        xmlread.text(det, "IndExe") in ("1", "2"),
        [int(c.text) for c in xmlread.findall(det, "CodImpAdic") if (c.text or "").strip().isdigit()],
        [DteItemCode(xmlread.text(c, "TpoCodigo"), xmlread.text(c, "VlrCodigo"))
         for c in xmlread.findall(det, "CdgItem")],
    ) for det in xmlread.findall(doc, "Detalle")]
    adjustments = [DteGlobalAdjustment(
        xmlread.text(dr, "TpoMov"), xmlread.text(dr, "GlosaDR"), xmlread.text(dr, "TpoValor"),
        _num(dr, "ValorDR"), xmlread.text(dr, "IndExeDR") in ("1", "2"),
    ) for dr in xmlread.findall(doc, "DscRcgGlobal")]
    references = [DteReference(
        xmlread.text(ref, "TpoDocRef"), xmlread.text(ref, "FolioRef"), xmlread.text(ref, "FchRef"),
        xmlread.text(ref, "CodRef"), xmlread.text(ref, "RazonRef"),
    ) for ref in xmlread.findall(doc, "Referencia")]
    return DteContent(header, _party(emisor, True), _party(receptor, False), totals, lines, adjustments, references)
