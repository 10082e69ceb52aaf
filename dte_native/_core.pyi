"""Type stubs of the compiled core (private: use the dte_native package)."""
from typing import Literal, TypedDict

__version__: str
SUPPORTED_TYPES: tuple[int, ...]

class CheckDict(TypedDict):
    name: str
    subject: str
    status: Literal["pass", "fail", "skip"]
    reason: str

class FindingDict(TypedDict):
    severity: Literal["error", "warning"]
    code: str
    field: str
    message: str

class SchemaIssueDict(TypedDict):
    line: int
    path: str
    message: str

class ValidationDict(TypedDict):
    valid: bool
    schema: str
    errors: list[SchemaIssueDict]

class CertInfoDict(TypedDict):
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

class CafInfoDict(TypedDict):
    issuer_rut: str
    issuer_name: str
    doc_type: int
    folio_from: int
    folio_to: int
    authorized_on: str
    idk: int
    expires_on: str
    has_private_key: bool

class SignedDict(TypedDict):
    xml: bytes
    id: str
    doc_type: int
    folio: int
    total: int
    issuer_rut: str
    receiver_rut: str
    issue_date: str
    ted_xml: str
    warnings: list[FindingDict]

class SignOutcomeDict(TypedDict):
    ok: bool
    dte: SignedDict | None
    error_code: str
    error_message: str

class VerifiedDocumentDict(TypedDict):
    id: str
    doc_type: int
    folio: int
    issuer_rut: str
    receiver_rut: str
    issue_date: str
    total: int
    signed_at: str
    ok: bool

class ReportDict(TypedDict):
    kind: str
    ok: bool
    checks: list[CheckDict]
    documents: list[VerifiedDocumentDict]

def _raise_for_test(kind: str, code: str) -> None: ...
def rut_normalize(text: str) -> str: ...
def rut_format(text: str) -> str: ...
def rut_is_valid(text: str) -> bool: ...
def rut_check_digit(body: int) -> str: ...

class Certificate:
    @staticmethod
    def from_pkcs12(der: bytes, password: str) -> Certificate: ...
    @staticmethod
    def from_pem(cert_pem: str | bytes, key_pem: str | bytes, key_password: str = "") -> Certificate: ...
    @staticmethod
    def public_only(pem_or_der: bytes | str) -> Certificate: ...
    def info(self) -> CertInfoDict: ...
    @property
    def has_private_key(self) -> bool: ...
    def check_valid_at(self, when: str = "") -> None: ...
    def valid_at(self, when: str = "") -> bool: ...
    def cert_der(self) -> bytes: ...
    def cert_base64(self) -> str: ...

class SiiKeyring:
    def __init__(self) -> None: ...
    def add_pem(self, idk: int, pem: str | bytes) -> None: ...
    def add_dir(self, dir: str) -> int: ...
    def idks(self) -> list[int]: ...

class Caf:
    @staticmethod
    def parse(xml: bytes | str) -> Caf: ...
    def info(self) -> CafInfoDict: ...
    def check(self, keyring: SiiKeyring) -> list[CheckDict]: ...
    def verify(self, keyring: SiiKeyring) -> None: ...
    def check_fits(self, issuer_rut: str, doc_type: int, folio: int, on_date: str = "") -> None: ...
    def caf_xml(self) -> str: ...

class SchemaSet:
    def __init__(self, dir: str) -> None: ...
    @staticmethod
    def shared(dir: str) -> SchemaSet: ...
    @property
    def dir(self) -> str: ...
    def validate_bytes(self, data: bytes) -> ValidationDict: ...

def sign_seed(seed: str, cert: Certificate) -> str: ...
def testkit_make_rsa_key(bits: int = 1024, exponent: int = 65537) -> tuple[str, str]: ...
def testkit_make_caf(issuer_rut: str, doc_type: int, folio_from: int, folio_to: int,
                     sii_private_pem: str, issuer_name: str = ..., authorized_on: str = "",
                     idk: int = 100) -> bytes: ...
def testkit_make_certificate(rut: str, password: str, name: str = ..., email: str = ...,
                             days_valid: int = 365, days_offset: int = 0, rut_in_san: bool = True,
                             rut_in_serial_number: bool = True,
                             legacy_pkcs12: bool = False) -> tuple[bytes, str, str]: ...

def is_supported_type(doc_type: int) -> bool: ...
def is_boleta(doc_type: int) -> bool: ...
def is_export(doc_type: int) -> bool: ...
def is_exempt_type(doc_type: int) -> bool: ...
def type_name(doc_type: int) -> str: ...
def normalize(input_json: str) -> str: ...
def check_rules(normalized_json: str, today: str = "", caf_folio_from: int = 0,
                caf_folio_to: int = 0, caf_doc_type: int = 0, caf_issuer_rut: str = "",
                caf_expires_on: str = "") -> list[FindingDict]: ...
def precheck(input_json: str, caf: Caf | None = None, cert: Certificate | None = None,
             timestamp: str = "", today: str = "", doc_id: str = "",
             keyring: SiiKeyring | None = None,
             check_certificate_validity: bool = True) -> list[FindingDict]: ...
def sign_document(input_json: str, caf: Caf, cert: Certificate, timestamp: str = "",
                  today: str = "", doc_id: str = "", keyring: SiiKeyring | None = None,
                  check_certificate_validity: bool = True) -> SignedDict: ...
def sign_many(inputs: list[str], cafs: list[Caf], cert: Certificate, timestamp: str = "",
              today: str = "", keyring: SiiKeyring | None = None,
              check_certificate_validity: bool = True, threads: int = 0) -> list[SignOutcomeDict]: ...
def build_envelope(signed_dtes: list[bytes], cert: Certificate, rut_emisor: str,
                   rut_envia: str = "", rut_receptor: str = "", fch_resol: str = "",
                   nro_resol: int = 0, tmst_firma_env: str = "", boleta: bool = False,
                   set_id: str = "SetDoc") -> bytes: ...
def verify_document(data: bytes, keyring: SiiKeyring | None = None,
                    schemas: SchemaSet | None = None,
                    check_cert_validity: bool = True) -> ReportDict: ...
def ted_barcode_payload(ted_xml: str) -> bytes: ...
def pdf417_png(payload: bytes, ecc_level: int = 5, columns: int = 0, module_px: int = 2,
               row_height: int = 3, quiet_zone: int = 2) -> bytes: ...
def pdf417_svg(payload: bytes, ecc_level: int = 5, columns: int = 0, module_px: int = 2,
               row_height: int = 3, quiet_zone: int = 2) -> str: ...
