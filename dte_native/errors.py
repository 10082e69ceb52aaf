"""Exceptions raised by dte_native, one per cause, each with a stable ``code``.

Every class inherits :class:`DteError` and the builtin that fits, so callers may catch either::

    >>> from dte_native.errors import CafError
    >>> try:
    ...     raise CafError("CAF of another RUT", "caf.wrong_rut")
    ... except ValueError as e:
    ...     print(e.code)
    caf.wrong_rut

Expected outcomes (a schema-invalid document, a signature that does not verify) are values
(:class:`~dte_native.ValidationResult`, :class:`~dte_native.VerifyReport`), not exceptions.
"""
from __future__ import annotations

__all__ = [
    "DteError",
    "XmlSyntaxError",
    "RutError",
    "CertificateError",
    "CafError",
    "SignatureError",
    "DocumentError",
    "SchemaError",
    "SiiError",
    "SiiTransportError",
    "SiiAuthError",
    "SiiRejected",
    "SiiMalformedAnswer",
]


class DteError(Exception):
    """Base of every error dte_native raises on purpose.

    ``code`` is short and stable (``"caf.wrong_rut"``, ``"cert.wrong_password"``): match on it,
    not on the message.

    >>> DteError("not implemented yet", "unimplemented").code
    'unimplemented'
    """

    code: str
    message: str

    def __init__(self, message: str, code: str = "dte.error") -> None:
        super().__init__(message)
        self.message = message
        self.code = code

    def __reduce__(self) -> tuple[type[DteError], tuple[str, str]]:
        return (type(self), (self.message, self.code))


class XmlSyntaxError(DteError, ValueError):
    """Input that is not well-formed XML or breaks the secure-parsing limits (DTD, entities,
    depth, size)."""


class RutError(DteError, ValueError):
    """A RUT that cannot be parsed or whose check digit is wrong."""


class CertificateError(DteError, ValueError):
    """PKCS#12/PEM loading and certificate problems (wrong password, expired, no RUT...)."""


class CafError(DteError, ValueError):
    """CAF problems: unreadable, SII signature bad, wrong RUT/type, folio range, expiry."""


class SignatureError(DteError, RuntimeError):
    """Creating a signature failed (xmlsec or OpenSSL refused)."""


class DocumentError(DteError, ValueError):
    """A document input that cannot become a DTE (bad JSON, wrong field types, rule errors)."""


class SchemaError(DteError, RuntimeError):
    """Schema loading problems (missing folder, XSD that does not compile)."""


class SiiError(DteError):
    """Base of the errors of talking to SII (dte_native.sii)."""


class SiiTransportError(SiiError, ConnectionError):
    """Network failure, timeout, HTTP 5xx, HTML/garbled answer or open circuit: retryable.
    ``maybe_delivered`` is False only when the request cannot have reached SII."""

    maybe_delivered: bool = True


class SiiAuthError(SiiError, PermissionError):
    """No token could be obtained, or the service kept refusing it after one renewal."""


class SiiRejected(SiiError, RuntimeError):
    """SII answered and said no; ``sii_code`` is its code (STATUS, ESTADO...), ``details`` its
    error lines (e.g. the schema errors of DTEUpload STATUS 7)."""

    def __init__(self, message: str, code: str = "sii.rejected", sii_code: str = "",
                 details: list[str] | tuple[str, ...] = ()) -> None:
        super().__init__(message, code)
        self.sii_code = sii_code
        self.details = list(details)

    def __reduce__(self) -> tuple[type[DteError], tuple[str, str, str, list[str]]]:  # type: ignore[override]
        return (type(self), (self.message, self.code, self.sii_code, self.details))


class SiiMalformedAnswer(SiiError, ValueError):
    """A well-formed answer that lacks what the protocol promises, or carries an unknown code."""
