"""Talking to SII: token, upload, status, acceptance/claims (typed facade of the C++ client).

The C++ client does the work with the GIL released: SOAP/REST authentication with a token cache
shared by every thread (renewed before ``token_ttl_s`` and on every expiry signal, with exactly
one retry), timeouts, retries with jittered exponential backoff, a circuit breaker per endpoint,
and uploads that are never repeated blindly (see ``cpp/include/dte/sii_client.hpp``, "Upload
strategy", and the code tables there).

>>> from dte_native import sii
>>> client = sii.SiiClient(cert, sii.ClientConfig("simulator", base_url="http://127.0.0.1:8080"))  # doctest: +SKIP
>>> sent = client.upload(envelope_bytes)  # doctest: +SKIP
>>> client.envelope_status(sent.track_id, "76543210-3").state  # doctest: +SKIP
'accepted'

Errors: :class:`~dte_native.errors.SiiTransportError` (retryable), ``SiiAuthError``,
``SiiRejected`` (``sii_code``, ``details``), ``SiiMalformedAnswer``.
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Generic, Literal, Sequence, TypeVar

from . import _core
from ._api import Certificate

__all__ = [
    "Environment", "ClientConfig", "SiiClient", "UploadResult", "TypeCounts", "DocumentOutcome",
    "EnvelopeStatus", "DocumentQuery", "DocumentStatus", "ClaimResult", "ClaimEvent", "EventsResult",
    "BatchResult", "documents_of_envelope", "default_endpoints", "ENVELOPE_STATES", "DOCUMENT_STATES",
    "CLAIM_ACTIONS", "EnvelopeKind", "MailResendResult", "StateInfo", "state_table", "envelope_kind_of",
    "VERDICTS",
]

Environment = Literal["certification", "production", "simulator"]
ENVELOPE_STATES = ("in_progress", "accepted", "accepted_with_objections", "rejected")
DOCUMENT_STATES = ("received", "data_mismatch", "not_received", "folio_not_authorized",
                   "folio_annulled", "company_not_authorized", "modified_by_note", "annulled_by_note")
# What a state leads to (state_table(), DocumentStatus.verdict).
VERDICTS = ("in_progress", "accepted", "accepted_with_objections", "rejected", "not_received")
# How to read an upload's QueryEstUp answer: books (LibroCV, LibroGuia) and the boleta summary
# (ConsumoFolios/RVD) have no per-type counts, so their EPR stands alone; "documents" (EnvioDTE)
# refuses an EPR without counts (sii.no_counts); "auto" accepts it.
EnvelopeKind = Literal["auto", "documents", "book"]
CLAIM_ACTIONS = {"ACD": "accept content", "RCD": "claim content",
                 "ERM": "grant receipt of goods/services (Ley 19.983)",
                 "RFP": "claim partial lack of goods", "RFT": "claim total lack of goods"}


@dataclass
class ClientConfig:
    """Where and how to talk to SII. Empty URLs take the environment's defaults (the simulator's
    are derived from ``base_url``: SOAP/upload/claims at the base, boleta API at ``/apicert``,
    boleta envío at ``/pangal``).

    >>> ClientConfig("simulator", base_url="http://127.0.0.1:8080", timeout_s=5).environment
    'simulator'
    """

    environment: Environment = "certification"
    base_url: str = ""
    soap_base: str = ""
    upload_base: str = ""
    claims_url: str = ""
    boleta_api_base: str = ""
    boleta_envio_base: str = ""
    upload_user_agent: str = ""
    boleta_user_agent: str = ""
    connect_timeout_s: float = 10.0
    timeout_s: float = 60.0
    token_ttl_s: float = 1800.0
    max_attempts: int = 4
    base_delay_s: float = 0.5
    max_delay_s: float = 8.0
    jitter: float = 0.5
    breaker_failures: int = 5
    breaker_open_s: float = 30.0
    breaker_half_open_successes: int = 1
    verify_tls: bool = True
    ca_file: str = ""
    batch_threads: int = 0
    random_seed: int = 0
    # Redis shared by every process (tokens with one renewer at a time, circuit breakers, rate
    # limit): a redis:// URL, default $DTE_REDIS_URL; "" = this process only (embedded default).
    redis_url: str = field(default_factory=lambda: os.environ.get("DTE_REDIS_URL", ""))
    redis_prefix: str = "dte"
    rate_per_s: float = 0.0   # requests per second to SII over all processes (needs redis_url)
    rate_burst: float = 0.0

    def to_native(self) -> dict[str, Any]:
        # Empty strings mean "default": leave them out so the core fills them in.
        return {k: v for k, v in asdict(self).items() if v != ""}


@dataclass(frozen=True)
class UploadResult:
    """``track_id`` is empty for a duplicate (SII does not repeat it): follow such an upload with
    :meth:`SiiClient.document_status` of its documents."""

    track_id: str
    duplicate: bool
    verified: bool
    status: int
    timestamp: str
    family: str
    attempts: int


@dataclass(frozen=True)
class TypeCounts:
    doc_type: int
    informed: int
    accepted: int
    rejected: int
    objections: int


@dataclass(frozen=True)
class DocumentOutcome:
    doc_type: int
    folio: int
    state: str
    description: str
    errors: list[str]


@dataclass(frozen=True)
class EnvelopeStatus:
    """``state`` is one of :data:`ENVELOPE_STATES`; ``sii_state`` is SII's code (EPR, RCT...)."""

    track_id: str
    state: str
    sii_state: str
    glosa: str
    final: bool
    duplicate: bool
    counts: list[TypeCounts]
    details: list[DocumentOutcome]
    num_atencion: str

    @classmethod
    def _from(cls, d: dict[str, Any]) -> EnvelopeStatus:
        return cls(d["track_id"], d["state"], d["sii_state"], d["glosa"], d["final"], d["duplicate"],
                   [TypeCounts(**c) for c in d["counts"]], [DocumentOutcome(**o) for o in d["details"]],
                   d["num_atencion"])


@dataclass(frozen=True)
class DocumentQuery:
    """One DTE as QueryEstDte asks for it (``date`` is FchEmis ``YYYY-MM-DD``, ``amount`` MntTotal)."""

    issuer_rut: str
    receiver_rut: str
    doc_type: int
    folio: int
    date: str
    amount: int
    signature_value: str = ""


@dataclass(frozen=True)
class DocumentStatus:
    """``state`` is one of :data:`DOCUMENT_STATES`; ``sii_state`` SII's code (DOK, FAU...)."""

    state: str
    sii_state: str
    err_code: str
    glosa: str
    description: str
    final: bool = False
    verdict: str = ""   # accepted, accepted_with_objections (DNK), rejected (FNA FAN EMP), not_received (FAU)


@dataclass(frozen=True)
class MailResendResult:
    """wsDTECorreo.reenvioCorreo accepted the request (``code`` 0): SII e-mails the upload's
    result, with the per-document error codes, to the company's registered address."""

    code: int
    glosa: str
    description: str
    ok: bool


@dataclass(frozen=True)
class StateInfo:
    """One documented SII code: ``service`` (upload, estup, estup_book, estdte, boleta_envelope,
    correo), whether it is ``final`` and the ``verdict`` it leads to; ``source`` is PROTOCOL.md's
    confidence tag."""

    service: str
    code: str
    meaning: str
    final: bool
    verdict: str
    source: str


def state_table() -> list[StateInfo]:
    """Every SII state and code the client maps.

    >>> any(s.code == "FAN" and s.verdict == "rejected" for s in state_table())
    True
    """
    return [StateInfo(**row) for row in _core.sii_state_table()]


def envelope_kind_of(envelope: bytes) -> str:
    """The :data:`EnvelopeKind` of an envelope from its root element (``LibroCV`` -> ``book``).

    >>> envelope_kind_of(b'<?xml version="1.0"?><LibroCompraVenta xmlns="http://www.sii.cl/SiiDte"/>')
    'book'
    """
    import re

    # First start tag that is not a declaration, comment or processing instruction.
    m = re.search(rb"<([^?!/\s>][^\s>/]*)", envelope[:65536])
    if not m:
        return "auto"
    name = m.group(1).split(b":")[-1].decode("ascii", "replace")
    return str(_core.sii_envelope_kind_of_root(name))


@dataclass(frozen=True)
class ClaimResult:
    """``code`` is SII's codResp (0 done, 7 already registered, 8 past the 8 days...)."""

    code: int
    description: str
    ok: bool


@dataclass(frozen=True)
class ClaimEvent:
    code: str
    description: str
    responsible_rut: str
    date: str


@dataclass(frozen=True)
class EventsResult:
    code: int
    description: str
    events: list[ClaimEvent]


T = TypeVar("T")


@dataclass(frozen=True)
class BatchResult(Generic[T]):
    """One item of a batch: ``value`` or an error (``error_kind``: transport, auth, rejected,
    malformed, error)."""

    value: T | None
    error_kind: str = ""
    error_code: str = ""
    error_message: str = ""
    sii_code: str = ""

    @property
    def ok(self) -> bool:
        return self.value is not None


def _query(q: DocumentQuery | dict[str, Any]) -> dict[str, Any]:
    return asdict(q) if isinstance(q, DocumentQuery) else dict(q)


def documents_of_envelope(envelope: bytes) -> list[DocumentQuery]:
    """The QueryEstDte key of every DTE in an EnvioDTE/EnvioBOLETA."""
    return [DocumentQuery(**d) for d in _core.sii_documents_of_envelope(envelope)]


def default_endpoints(environment: Environment, base_url: str = "") -> dict[str, str]:
    """>>> default_endpoints("production")["soap_base"]
    'https://palena.sii.cl'
    """
    return dict(_core.sii_default_endpoints(environment, base_url))


class SiiClient:
    """A client for one signer certificate. Thread-safe; share one per process and environment."""

    def __init__(self, cert: Certificate, config: ClientConfig | None = None, **overrides: Any) -> None:
        cfg = config or ClientConfig()
        if overrides:
            known = {f.name for f in fields(ClientConfig)}
            bad = set(overrides) - known
            if bad:
                raise TypeError(f"unknown ClientConfig fields: {sorted(bad)}")
            cfg = ClientConfig(**{**asdict(cfg), **overrides})
        self.config = cfg
        self._native = _core.SiiClient(cfg.to_native(), cert._native)

    @property
    def signer_rut(self) -> str:
        return str(self._native.signer_rut)

    def endpoints(self) -> dict[str, str]:
        return dict(self._native.endpoints())

    def token(self, family: Literal["soap", "boleta"] = "soap", force_new: bool = False) -> str:
        """The cached token of the family, obtained (seed, signature, token) when missing or old."""
        return str(self._native.token(family, force_new))

    def invalidate_token(self, family: Literal["soap", "boleta"] = "soap") -> None:
        self._native.invalidate_token(family)

    def upload(self, envelope: bytes, company_rut: str = "", filename: str = "envio.xml",
               force_dte_upload: bool = False) -> UploadResult:
        """Sends an EnvioDTE (DTEUpload) or EnvioBOLETA (boleta REST envío; DTEUpload with
        ``force_dte_upload``, as certification sets do). ``company_rut`` defaults to the carátula's
        RutEmisor."""
        return UploadResult(**self._native.upload(envelope, company_rut, filename, force_dte_upload))

    def envelope_status(self, track_id: str, company_rut: str, boleta: bool = False,
                        kind: EnvelopeKind = "auto") -> EnvelopeStatus:
        """QueryEstUp (boleta REST with ``boleta``). ``kind`` says how to read an EPR without
        per-type counts (see :data:`EnvelopeKind`; :func:`envelope_kind_of` gives it)."""
        return EnvelopeStatus._from(self._native.envelope_status(str(track_id), company_rut, boleta, kind))

    def resend_mail(self, track_id: str, company_rut: str) -> MailResendResult:
        """wsDTECorreo.reenvioCorreo: asks SII to e-mail the upload's result (with the
        per-document error codes QueryEstUp does not give) to the company's registered address.
        Codes 101/102/105/106/114 raise ``SiiRejected`` (``sii.mail.*``, 114 = not validated yet)."""
        return MailResendResult(**self._native.resend_mail(str(track_id), company_rut))

    def wait_final(self, track_id: str, company_rut: str, boleta: bool = False, *,
                   poll_s: float = 5.0, timeout_s: float = 600.0, kind: EnvelopeKind = "auto") -> EnvelopeStatus:
        """Polls until the envelope's state is final (or ``timeout_s``; then the last status)."""
        deadline = time.monotonic() + timeout_s
        while True:
            st = self.envelope_status(track_id, company_rut, boleta, kind)
            if st.final or time.monotonic() >= deadline:
                return st
            time.sleep(poll_s)

    def document_status(self, query: DocumentQuery | dict[str, Any], advanced: bool = False) -> DocumentStatus:
        """QueryEstDte (QueryEstDteAv with ``advanced``: also compares ``signature_value``)."""
        return DocumentStatus(**self._native.document_status(_query(query), advanced))

    def boleta_document_status(self, query: DocumentQuery | dict[str, Any]) -> DocumentStatus:
        return DocumentStatus(**self._native.boleta_document_status(_query(query)))

    def claim(self, issuer_rut: str, doc_type: int, folio: int, action: str) -> ClaimResult:
        """ingresarAceptacionReclamoDoc: ``action`` in :data:`CLAIM_ACTIONS`."""
        return ClaimResult(**self._native.claim(issuer_rut, doc_type, folio, action))

    def claim_events(self, issuer_rut: str, doc_type: int, folio: int) -> EventsResult:
        d = self._native.claim_events(issuer_rut, doc_type, folio)
        return EventsResult(d["code"], d["description"], [ClaimEvent(**e) for e in d["events"]])

    def transferable(self, issuer_rut: str, doc_type: int, folio: int) -> ClaimResult:
        """consultarDocDteCedible (codes 20-25)."""
        return ClaimResult(**self._native.transferable(issuer_rut, doc_type, folio))

    def reception_date(self, issuer_rut: str, doc_type: int, folio: int) -> str:
        """consultarFechaRecepcionSii: ``DD-MM-YYYY HH:MM:SS`` (start of the 8-day window)."""
        return str(self._native.reception_date(issuer_rut, doc_type, folio))

    def upload_many(self, envelopes: Sequence[bytes | tuple[bytes, str]]) -> list[BatchResult[UploadResult]]:
        """Uploads on the core's thread pool with shared connections; errors are per item."""
        items = [{"envelope": e[0], "company_rut": e[1]} if isinstance(e, tuple) else {"envelope": e}
                 for e in envelopes]
        return [BatchResult(UploadResult(**r["value"]) if r["value"] else None, r["error_kind"],
                            r["error_code"], r["error_message"], r["sii_code"])
                for r in self._native.upload_many(items)]

    def status_many(self, items: Sequence[tuple[str, str]], boleta: bool = False) -> list[BatchResult[EnvelopeStatus]]:
        """Polls many (track id, company RUT) on the core's thread pool."""
        return [BatchResult(EnvelopeStatus._from(r["value"]) if r["value"] else None, r["error_kind"],
                            r["error_code"], r["error_message"], r["sii_code"])
                for r in self._native.status_many([(str(t), c) for t, c in items], boleta)]

    def breaker_states(self) -> dict[str, str]:
        return dict(self._native.breaker_states())

    def __repr__(self) -> str:
        return f"<SiiClient {self.config.environment} signer={self.signer_rut}>"

