"""Plain result types of the facade (values, not exceptions)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Mapping

CheckStatus = Literal["pass", "fail", "skip"]
Severity = Literal["error", "warning"]


def _s(d: Mapping[str, Any], key: str) -> str:
    return str(d.get(key, ""))


@dataclass(frozen=True)
class Check:
    """One named check of a verification.

    >>> Check("ted.frmt", "T33F1", "pass").passed
    True
    """

    name: str
    subject: str
    status: CheckStatus
    reason: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "pass"

    @property
    def failed(self) -> bool:
        return self.status == "fail"

    @classmethod
    def _from(cls, d: Mapping[str, Any]) -> Check:
        try:  # the core's dicts carry every key as str: one lookup each (verification's hot path)
            name, subject, status, reason = d["name"], d["subject"], d["status"], d["reason"]
            if type(name) is not str or type(subject) is not str or type(reason) is not str:
                raise TypeError
        except (KeyError, TypeError):
            name, subject, status, reason = _s(d, "name"), _s(d, "subject"), _s(d, "status"), _s(d, "reason")
        if status not in ("pass", "fail", "skip"):
            status = "fail"
        return cls(name, subject, status, reason)


@dataclass(frozen=True)
class Finding:
    """A rule-engine finding: what SII would reject (error) or object to (warning).

    >>> Finding("error", "totals.mnt_total_mismatch", "Encabezado.Totales.MntTotal", "...").is_error
    True
    """

    severity: Severity
    code: str
    field: str
    message: str

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    @classmethod
    def _from(cls, d: Mapping[str, Any]) -> Finding:
        severity = "warning" if d.get("severity") == "warning" else "error"
        return cls(severity, _s(d, "code"), _s(d, "field"), _s(d, "message"))  # type: ignore[arg-type]


@dataclass(frozen=True)
class SchemaIssue:
    """One schema violation, with its line in the validated bytes and the element path."""

    line: int
    path: str
    message: str


@dataclass(frozen=True)
class ValidationResult:
    """Outcome of XSD validation.

    >>> ValidationResult(True, "DTE_v10.xsd", []).valid
    True
    """

    valid: bool
    schema: str
    errors: list[SchemaIssue] = field(default_factory=list)

    def __bool__(self) -> bool:
        return self.valid

    @classmethod
    def _from(cls, d: Mapping[str, Any]) -> ValidationResult:
        errors = [
            SchemaIssue(int(e.get("line", 0)), _s(e, "path"), _s(e, "message"))
            for e in d.get("errors", [])
        ]
        return cls(bool(d.get("valid")), _s(d, "schema"), errors)


@dataclass(frozen=True)
class VerifiedDocument:
    """One DTE found in verified bytes, with the outcome of its own checks."""

    id: str
    doc_type: int
    folio: int
    issuer_rut: str
    receiver_rut: str
    issue_date: str
    total: int
    signed_at: str
    ok: bool


@dataclass(frozen=True)
class VerifyReport:
    """Every check of a verification; ``ok`` when none failed (skips allowed).

    >>> report = VerifyReport("DTE", [Check("dte.signature", "T33F1", "fail", "digest")], [])
    >>> report.ok, [c.name for c in report.failures]
    (False, ['dte.signature'])
    """

    kind: str
    checks: list[Check]
    documents: list[VerifiedDocument] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(c.failed for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.failed]

    def check(self, name: str) -> list[Check]:
        """Every check with this name (one per document for per-document checks)."""
        return [c for c in self.checks if c.name == name]

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "ok": self.ok,
            "checks": [asdict(c) for c in self.checks],
            "documents": [asdict(d) for d in self.documents],
        }

    @classmethod
    def _from(cls, d: Mapping[str, Any]) -> VerifyReport:
        docs = [
            VerifiedDocument(
                _s(x, "id"),
                int(x.get("doc_type", 0)),
                int(x.get("folio", 0)),
                _s(x, "issuer_rut"),
                _s(x, "receiver_rut"),
                _s(x, "issue_date"),
                int(x.get("total", 0)),
                _s(x, "signed_at"),
                bool(x.get("ok")),
            )
            for x in d.get("documents", [])
        ]
        return cls(_s(d, "kind"), [Check._from(c) for c in d.get("checks", [])], docs)


@dataclass(frozen=True)
class CertificateInfo:
    """What a signer certificate says about itself (no key material)."""

    subject: str
    issuer: str
    common_name: str
    serial_number: str
    signer_rut: str
    rut_source: str
    email: str
    not_before: str
    not_after: str
    sha256_fingerprint: str

    @classmethod
    def _from(cls, d: Mapping[str, Any]) -> CertificateInfo:
        return cls(*(_s(d, k) for k in cls.__dataclass_fields__))


@dataclass(frozen=True)
class CafInfo:
    """What a CAF authorizes: issuer, document type, folio range, dates."""

    issuer_rut: str
    issuer_name: str
    doc_type: int
    folio_from: int
    folio_to: int
    authorized_on: str
    idk: int
    expires_on: str
    has_private_key: bool

    def covers(self, folio: int) -> bool:
        return self.folio_from <= folio <= self.folio_to

    @classmethod
    def _from(cls, d: Mapping[str, Any]) -> CafInfo:
        return cls(
            _s(d, "issuer_rut"),
            _s(d, "issuer_name"),
            int(d.get("doc_type", 0)),
            int(d.get("folio_from", 0)),
            int(d.get("folio_to", 0)),
            _s(d, "authorized_on"),
            int(d.get("idk", 0)),
            _s(d, "expires_on"),
            bool(d.get("has_private_key")),
        )


@dataclass(frozen=True)
class SignedDte:
    """A stamped and signed DTE.

    ``xml`` is the ISO-8859-1 document exactly as it must go into an envelope: never re-encode
    or pretty-print it (that breaks the signature).

    >>> # signed = dte_native.sign(dte_native.example("33"), caf, cert)
    >>> # Path("T33F1.xml").write_bytes(signed.xml)
    """

    xml: bytes
    id: str
    doc_type: int
    folio: int
    total: int
    issuer_rut: str
    receiver_rut: str
    issue_date: str
    ted_xml: str
    warnings: list[Finding] = field(default_factory=list)

    @classmethod
    def _from(cls, d: Mapping[str, Any]) -> SignedDte:
        if type(d) is dict and d.keys() == _SIGNED_KEYS:
            # The binding's own dict, with these types already: filled in directly, about
            # 2 us less per document than the generated frozen __init__ (sign_many's results
            # are converted while the pool waits).
            obj = object.__new__(cls)
            fields = obj.__dict__
            fields.update(d)
            warnings = d["warnings"]
            fields["warnings"] = [Finding._from(w) for w in warnings] if warnings else []
            return obj
        xml = d.get("xml", b"")
        return cls(
            bytes(xml),
            _s(d, "id"),
            int(d.get("doc_type", 0)),
            int(d.get("folio", 0)),
            int(d.get("total", 0)),
            _s(d, "issuer_rut"),
            _s(d, "receiver_rut"),
            _s(d, "issue_date"),
            _s(d, "ted_xml"),
            [Finding._from(w) for w in d.get("warnings", [])],
        )


@dataclass(frozen=True)
class SignOutcome:
    """One item of a batch: the signed document, or the error code and message that stopped it."""

    ok: bool
    dte: SignedDte | None
    error_code: str = ""
    error_message: str = ""

    @classmethod
    def _from(cls, d: Mapping[str, Any]) -> SignOutcome:
        signed = d.get("dte")
        if type(d) is dict and d.keys() == _OUTCOME_KEYS:  # the binding's own dict (see SignedDte._from)
            obj = object.__new__(cls)
            obj.__dict__.update(d)
            if signed:
                obj.__dict__["dte"] = SignedDte._from(signed)
            return obj
        return cls(bool(d.get("ok")), SignedDte._from(signed) if signed else None,
                   _s(d, "error_code"), _s(d, "error_message"))


# The keys of the binding's dicts, as fields of the classes above (checked by a test).
_SIGNED_KEYS = frozenset(("xml", "id", "doc_type", "folio", "total", "issuer_rut", "receiver_rut",
                          "issue_date", "ted_xml", "warnings"))
_OUTCOME_KEYS = frozenset(("ok", "dte", "error_code", "error_message"))
