"""dte_native: Chilean electronic invoicing (SII DTE) with a C++ core.

>>> import dte_native as dte
>>> cert = dte.Certificate.load("firma.p12", password="secreto")  # doctest: +SKIP
>>> signed = dte.sign(dte.example(33), dte.Caf.load("caf33.xml"), cert)  # doctest: +SKIP
>>> dte.verify(signed.xml).ok  # doctest: +SKIP
True
"""
from __future__ import annotations

import pkgutil

# In a source checkout (e.g. `python -m pytest` from the repository root) this folder shadows
# the installed package, which holds the compiled _core and the data folders: let the package
# path span both, source first.
__path__ = pkgutil.extend_path(__path__, __name__)

from . import errors  # noqa: E402  (the C++ translator imports the exception classes)
from . import _core  # noqa: E402
from ._api import (  # noqa: E402
    SII_RUT,
    Caf,
    Certificate,
    Document,
    SchemaSet,
    SiiKeyring,
    barcode_png,
    barcode_svg,
    check_rules,
    default_schema_set,
    envelope,
    example,
    example_types,
    is_boleta,
    normalize,
    precheck,
    rut_check_digit,
    rut_format,
    rut_is_valid,
    rut_normalize,
    schema_dir,
    schemas,
    sign,
    sign_many,
    sign_seed,
    supported_types,
    ted_payload,
    today_in_chile,
    type_name,
    validate,
    verify,
)
from ._types import (  # noqa: E402
    CafInfo,
    CertificateInfo,
    Check,
    Finding,
    SchemaIssue,
    SignedDte,
    SignOutcome,
    ValidationResult,
    VerifiedDocument,
    VerifyReport,
)
from .errors import (  # noqa: E402
    CafError,
    CertificateError,
    DocumentError,
    DteError,
    RutError,
    SchemaError,
    SignatureError,
    XmlSyntaxError,
)
from . import testkit  # noqa: E402

__version__: str = _core.__version__

__all__ = [
    "SII_RUT", "Caf", "CafError", "CafInfo", "Certificate", "CertificateError", "CertificateInfo",
    "Check", "Document", "DocumentError", "DteError", "Finding", "RutError", "SchemaError",
    "SchemaIssue", "SchemaSet", "SiiKeyring", "SignOutcome", "SignatureError", "SignedDte",
    "ValidationResult", "VerifiedDocument", "VerifyReport", "XmlSyntaxError", "barcode_png",
    "barcode_svg", "check_rules", "default_schema_set", "envelope", "errors", "example",
    "example_types", "is_boleta", "normalize", "precheck", "rut_check_digit", "rut_format", "rut_is_valid", "rut_normalize",
    "schema_dir", "schemas", "sign", "sign_many", "sign_seed", "supported_types", "ted_payload",
    "testkit", "today_in_chile", "type_name", "validate", "verify",
]
