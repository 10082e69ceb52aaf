"""The facade over dte_native._core: typed classes and functions, no XML or crypto here."""
from __future__ import annotations

import datetime as _dt
import json
import os
import re
import sys
import threading
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence, Union

from . import _core
from ._types import (
    CafInfo,
    CertificateInfo,
    Check,
    Finding,
    SignedDte,
    SignOutcome,
    ValidationResult,
    VerifyReport,
)
from .errors import DocumentError, SchemaError

SII_RUT = "60803000-K"

Document = Union[Mapping[str, Any], str, bytes]
"""A document input: a dict with SII's field names, or its JSON text."""

PathLike = Union[str, "os.PathLike[str]"]



def today_in_chile() -> str:
    """Today's date in Chile (YYYY-MM-DD), the date SII and the core's rules go by: between
    00:00 and 03:00/04:00 UTC it is still yesterday there."""
    try:
        from zoneinfo import ZoneInfo
        return _dt.datetime.now(ZoneInfo("America/Santiago")).date().isoformat()
    except Exception:  # no tzdata: Chile is UTC-4 (UTC-3 in summer); -4 never runs ahead of it
        return (_dt.datetime.now(_dt.timezone.utc) - _dt.timedelta(hours=4)).date().isoformat()

def _package_dirs() -> list[Path]:
    package = sys.modules[__name__.rpartition(".")[0]]
    return [Path(p) for p in getattr(package, "__path__", [])]


def _data_dir(name: str) -> Path | None:
    """A data folder shipped in the package (xsd/, sii_keys/, examples/). In a source checkout
    the package path also holds the installed copy (see __init__), so look in every entry."""
    for base in _package_dirs():
        candidate = base / name
        if candidate.is_dir():
            return candidate
    return None


def _document_text(document: Document) -> str:
    if isinstance(document, bytes):
        return document.decode("utf-8")
    if isinstance(document, str):
        return document
    return json.dumps(document, ensure_ascii=False)


def _read_bytes(source: bytes | PathLike) -> bytes:
    if isinstance(source, bytes):
        return source
    return Path(source).read_bytes()


def _when(value: str | _dt.datetime | _dt.date | None) -> str:
    if value is None:
        return ""
    if isinstance(value, _dt.datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%S")
    if isinstance(value, _dt.date):
        return value.isoformat()
    return value


# --- RUT -------------------------------------------------------------------------------------


def rut_normalize(text: str) -> str:
    """SII's form of a RUT (no dots, upper-case K); RutError when malformed or wrong check digit.

    >>> rut_normalize("76.192.083-9")
    '76192083-9'
    """
    return _core.rut_normalize(text)


def rut_format(text: str) -> str:
    """A RUT with thousands dots.

    >>> rut_format("761920839")
    '76.192.083-9'
    """
    return _core.rut_format(text)


def rut_is_valid(text: str) -> bool:
    """Whether ``text`` is a RUT with the right check digit.

    >>> rut_is_valid("76192083-1")
    False
    """
    return _core.rut_is_valid(text)


def rut_check_digit(body: int) -> str:
    """The check digit of a RUT body.

    >>> rut_check_digit(60803000)
    'K'
    """
    return _core.rut_check_digit(body)


# --- key material -----------------------------------------------------------------------------


class Certificate:
    """The signer's certificate and (usually) its private key.

    >>> cert = Certificate.load("firma.p12", password="secreto")  # doctest: +SKIP
    >>> cert.info.signer_rut  # doctest: +SKIP
    '11111111-1'
    """

    __slots__ = ("_native", "_info")

    def __init__(self, native: _core.Certificate) -> None:
        self._native = native
        self._info: CertificateInfo | None = None

    @classmethod
    def from_pkcs12(cls, data: bytes, password: str) -> Certificate:
        """Loads PKCS#12 bytes (legacy RC2/3DES too). CertificateError "cert.wrong_password"..."""
        return cls(_core.Certificate.from_pkcs12(data, password))

    @classmethod
    def load(cls, path: PathLike, password: str) -> Certificate:
        """Loads a .p12/.pfx file."""
        return cls.from_pkcs12(Path(path).read_bytes(), password)

    @classmethod
    def from_pem(cls, cert_pem: str | bytes, key_pem: str | bytes, key_password: str = "") -> Certificate:
        """Loads a PEM certificate and its PEM private key (they may be the same text)."""
        return cls(_core.Certificate.from_pem(cert_pem, key_pem, key_password))

    @classmethod
    def public_only(cls, pem_or_der: bytes | str) -> Certificate:
        """A certificate without private key, for inspection and verification."""
        return cls(_core.Certificate.public_only(pem_or_der))

    @property
    def info(self) -> CertificateInfo:
        if self._info is None:
            self._info = CertificateInfo._from(self._native.info())
        return self._info

    @property
    def has_private_key(self) -> bool:
        return self._native.has_private_key

    def check_valid_at(self, when: str | _dt.datetime | None = None) -> None:
        """CertificateError "cert.expired" / "cert.not_yet_valid" unless valid at ``when``
        (Chile local time; now when None)."""
        self._native.check_valid_at(_when(when))

    def valid_at(self, when: str | _dt.datetime | None = None) -> bool:
        return self._native.valid_at(_when(when))

    @property
    def der(self) -> bytes:
        return self._native.cert_der()

    @property
    def pem(self) -> str:
        body = self._native.cert_base64().replace("\n", "")
        lines = [body[i : i + 64] for i in range(0, len(body), 64)]
        return "-----BEGIN CERTIFICATE-----\n" + "\n".join(lines) + "\n-----END CERTIFICATE-----\n"

    def __repr__(self) -> str:
        info = self.info
        return f"<Certificate {info.common_name!r} rut={info.signer_rut!r} until={info.not_after}>"


class SiiKeyring:
    """SII's CAF-signing public keys by IDK (100 certification, 300 production) and any extra
    keys trusted by configuration.

    >>> ring = SiiKeyring.default()  # keys shipped in the wheel, plus $DTE_SII_KEYS
    >>> ring.add_dir("test-material/sii-keys")  # doctest: +SKIP
    1
    """

    __slots__ = ("_native",)
    _default_lock = threading.Lock()
    _default_cache: dict[tuple[str, str], SiiKeyring] = {}

    def __init__(self) -> None:
        self._native = _core.SiiKeyring()

    @classmethod
    def default(cls, extra_dirs: Iterable[PathLike] = ()) -> SiiKeyring:
        """The wheel's keys (``dte_native/sii_keys/``) plus the folder named by ``DTE_SII_KEYS``
        and ``extra_dirs``. Cached per configuration; treat the result as read-only."""
        extras = [str(d) for d in extra_dirs]
        env = os.environ.get("DTE_SII_KEYS", "")
        key = (env, os.pathsep.join(extras))
        with cls._default_lock:
            ring = cls._default_cache.get(key)
            if ring is None:
                ring = cls()
                shipped = _data_dir("sii_keys")
                if shipped is not None:
                    ring.add_dir(shipped)
                for d in [env, *extras]:
                    if d:
                        ring.add_dir(d)
                cls._default_cache[key] = ring
            return ring

    def add_pem(self, idk: int, pem: str | bytes) -> None:
        """Trusts a PEM certificate or public key for ``idk``; CafError "caf.bad_key"."""
        self._native.add_pem(idk, pem)

    def add_dir(self, path: PathLike) -> int:
        """Trusts every ``<IDK>.pem|.cer|.pub`` in a folder; returns how many were added."""
        return self._native.add_dir(str(path))

    @property
    def idks(self) -> list[int]:
        return sorted(self._native.idks())

    def __repr__(self) -> str:
        return f"<SiiKeyring idks={self.idks}>"


class Caf:
    """A CAF (folio authorization) and its range key.

    >>> caf = Caf.load("FoliosSII76192083933.xml")  # doctest: +SKIP
    >>> caf.info.folio_from, caf.info.folio_to  # doctest: +SKIP
    (1, 100)
    """

    __slots__ = ("_native", "_info")

    def __init__(self, native: _core.Caf) -> None:
        self._native = native
        self._info: CafInfo | None = None

    @classmethod
    def parse(cls, data: bytes | str) -> Caf:
        """Parses AUTORIZACION bytes (ISO-8859-1 or UTF-8). CafError / XmlSyntaxError."""
        return cls(_core.Caf.parse(data))

    @classmethod
    def load(cls, path: PathLike) -> Caf:
        return cls.parse(Path(path).read_bytes())

    @property
    def info(self) -> CafInfo:
        if self._info is None:
            self._info = CafInfo._from(self._native.info())
        return self._info

    @property
    def caf_xml(self) -> str:
        """The <CAF> element exactly as in the file (public part)."""
        return self._native.caf_xml()

    def check(self, keyring: SiiKeyring | None = None) -> list[Check]:
        """Every CAF check: SII signature (FRMA), key pair consistency."""
        ring = keyring if keyring is not None else SiiKeyring.default()
        return [Check._from(c) for c in self._native.check(ring._native)]

    def verify(self, keyring: SiiKeyring | None = None) -> None:
        """Raises the first failing check as CafError."""
        ring = keyring if keyring is not None else SiiKeyring.default()
        self._native.verify(ring._native)

    def check_fits(self, issuer_rut: str, doc_type: int, folio: int,
                   on_date: str | _dt.date | None = None) -> None:
        """CafError "caf.wrong_rut" / "caf.wrong_type" / "caf.folio_out_of_range" / "caf.expired"."""
        self._native.check_fits(issuer_rut, doc_type, folio, _when(on_date))

    def __repr__(self) -> str:
        i = self.info
        return f"<Caf {i.issuer_rut} type={i.doc_type} folios={i.folio_from}-{i.folio_to}>"


# --- schemas -----------------------------------------------------------------------------------


class SchemaSet:
    """SII's XSDs in one folder, each compiled once and shared between threads.

    >>> schemas().validate(Path("T33F1.xml").read_bytes()).valid  # doctest: +SKIP
    True
    """

    __slots__ = ("_native", "dir")

    def __init__(self, directory: PathLike) -> None:
        self.dir = Path(directory)
        self._native = _core.SchemaSet.shared(str(self.dir))

    def validate(self, data: bytes) -> ValidationResult:
        """Validates against the XSD the root element calls for. XmlSyntaxError when not XML."""
        return ValidationResult._from(self._native.validate_bytes(data))

    def __repr__(self) -> str:
        return f"<SchemaSet {str(self.dir)!r}>"


def schema_dir() -> Path | None:
    """``$DTE_XSD_DIR`` when set, else the XSDs shipped in the wheel, else None."""
    env = os.environ.get("DTE_XSD_DIR")
    if env:
        return Path(env)
    return _data_dir("xsd")


def schemas() -> SchemaSet:
    """The schema set to use: ``$DTE_XSD_DIR`` or the wheel's ``dte_native/xsd/``.

    >>> schemas().dir.joinpath("DTE_v10.xsd").is_file()  # doctest: +SKIP
    True
    """
    directory = schema_dir()
    if directory is None:
        raise SchemaError("no XSD folder: the package ships none and DTE_XSD_DIR is not set",
                          "schema.dir_missing")
    return SchemaSet(directory)


_default_schema_sets: dict[str, SchemaSet | None] = {}


def default_schema_set() -> SchemaSet | None:
    """``schemas()`` when there is an XSD folder, else None: what ``verify``, ``validate`` and
    reception use when given no set. Remembered per value of ``$DTE_XSD_DIR`` (the shipped
    folder does not move), so a call does not search the file system for it every time."""
    key = os.environ.get("DTE_XSD_DIR", "")
    if key not in _default_schema_sets:
        directory = schema_dir()
        _default_schema_sets[key] = SchemaSet(directory) if directory is not None else None
    return _default_schema_sets[key]


def validate(data: bytes, schema_set: SchemaSet | None = None) -> ValidationResult:
    """XSD validation of any SII document.

    >>> validate(Path("EnvioDTE.xml").read_bytes()).errors  # doctest: +SKIP
    []
    """
    return (schema_set or default_schema_set() or schemas()).validate(data)


# --- documents -------------------------------------------------------------------------------


def normalize(document: Document) -> dict[str, Any]:
    """Fills in what the issuer need not type (line amounts, totals, IVA, dates).

    >>> normalize(example("33"))["Encabezado"]["Totales"]["MntTotal"]  # doctest: +SKIP
    37485
    """
    result: dict[str, Any] = json.loads(_core.normalize(_document_text(document)))
    return result


def check_rules(document: Document, *, today: str | _dt.date | None = None,
                caf: Caf | None = None, normalized: bool = False) -> list[Finding]:
    """Every rule SII is known to enforce, on a document (normalised first unless
    ``normalized``). Findings are values; nothing is raised for content.

    >>> [f.code for f in check_rules(example("33"))]  # doctest: +SKIP
    []
    """
    text = _document_text(document) if normalized else _core.normalize(_document_text(document))
    kwargs: dict[str, Any] = {"today": _when(today)}
    if caf is not None:
        i = caf.info
        kwargs.update(caf_folio_from=i.folio_from, caf_folio_to=i.folio_to, caf_doc_type=i.doc_type,
                      caf_issuer_rut=i.issuer_rut, caf_expires_on=i.expires_on)
    return [Finding._from(f) for f in _core.check_rules(text, **kwargs)]


def example(doc_type: int | str) -> dict[str, Any]:
    """The example input of a document type (``dte_native/examples/<type>.json``).

    >>> example(33)["Encabezado"]["IdDoc"]["TipoDTE"]  # doctest: +SKIP
    33
    """
    name = str(doc_type)
    if not name.replace("_", "").replace("-", "").isalnum():
        raise DocumentError(f"no example named {name!r}", "example.unknown")
    folder = _data_dir("examples")
    path = folder / f"{name}.json" if folder is not None else None
    if path is None or not path.is_file():
        raise DocumentError(f"no example for document type {name!r}; known: {example_types()}",
                            "example.unknown")
    result: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return result


def example_types() -> list[str]:
    """The names of the shipped examples (document types)."""
    folder = _data_dir("examples")
    if folder is None:
        return []
    names = [p.stem for p in folder.glob("*.json")]
    return sorted(names, key=lambda n: (not n.isdigit(), int(n) if n.isdigit() else 0, n))


def supported_types() -> tuple[int, ...]:
    """The DTE types this package emits."""
    return tuple(_core.SUPPORTED_TYPES)


def type_name(doc_type: int) -> str:
    """SII's name of a type.

    >>> type_name(33)  # doctest: +SKIP
    'Factura electrónica'
    """
    return _core.type_name(doc_type)


def is_boleta(doc_type: int) -> bool:
    return _core.is_boleta(doc_type)


# --- signing ---------------------------------------------------------------------------------


def _keyring_arg(keyring: SiiKeyring | None, verify_caf: bool) -> _core.SiiKeyring | None:
    if not verify_caf:
        return None
    return (keyring if keyring is not None else SiiKeyring.default())._native


def precheck(document: Document, caf: Caf | None = None, cert: Certificate | None = None, *,
             timestamp: str | _dt.datetime | None = None, today: str | _dt.date | None = None,
             keyring: SiiKeyring | None = None, verify_caf: bool = True,
             check_certificate_validity: bool = True) -> list[Finding]:
    """Everything that can be known before a folio is spent: rules, CAF fit and signature,
    certificate. Returns findings; never raises for content.

    >>> [f.code for f in precheck(example("33"), caf, cert) if f.is_error]  # doctest: +SKIP
    []
    """
    found = _core.precheck(
        _document_text(document),
        caf._native if caf is not None else None,
        cert._native if cert is not None else None,
        timestamp=_when(timestamp),
        today=_when(today),
        keyring=_keyring_arg(keyring, verify_caf) if caf is not None else None,
        check_certificate_validity=check_certificate_validity,
    )
    return [Finding._from(f) for f in found]


def sign(document: Document, caf: Caf, cert: Certificate, *,
         timestamp: str | _dt.datetime | None = None, today: str | _dt.date | None = None,
         doc_id: str | None = None, keyring: SiiKeyring | None = None, verify_caf: bool = True,
         check_certificate_validity: bool = True) -> SignedDte:
    """Builds, stamps (TED) and signs one DTE.

    The CAF's SII signature is checked with ``keyring`` (default :meth:`SiiKeyring.default`)
    unless ``verify_caf=False``. Raises DocumentError "rules.failed" (listing the findings),
    CafError, CertificateError, SignatureError; the folio is not consumed on error.

    >>> signed = sign(example("33"), Caf.load("caf33.xml"), Certificate.load("f.p12", "pw"))  # doctest: +SKIP
    >>> signed.id  # doctest: +SKIP
    'T33F1'
    """
    text = _document_text(document)
    result = _core.sign_document(
        text, caf._native, cert._native,
        timestamp=_when(timestamp), today=_when(today), doc_id=doc_id or "",
        keyring=_keyring_arg(keyring, verify_caf),
        check_certificate_validity=check_certificate_validity,
    )
    return SignedDte._from(result)


def sign_many(documents: Sequence[Document], cafs: Caf | Sequence[Caf], cert: Certificate, *,
              timestamp: str | _dt.datetime | None = None, today: str | _dt.date | None = None,
              keyring: SiiKeyring | None = None, verify_caf: bool = True,
              check_certificate_validity: bool = True, threads: int = 0) -> list[SignOutcome]:
    """Signs a batch on the core's thread pool (the GIL is released for the whole batch); each
    document uses the CAF whose range holds its folio. One outcome per input, in order.

    >>> outcomes = sign_many([example("33")], [caf33], cert)  # doctest: +SKIP
    >>> outcomes[0].ok  # doctest: +SKIP
    True
    """
    caf_list = [cafs] if isinstance(cafs, Caf) else list(cafs)
    raw = _core.sign_many(
        [_document_text(d) for d in documents], [c._native for c in caf_list], cert._native,
        timestamp=_when(timestamp), today=_when(today),
        keyring=_keyring_arg(keyring, verify_caf),
        check_certificate_validity=check_certificate_validity, threads=threads,
    )
    return [SignOutcome._from(item) for item in raw]


def envelope(dtes: Sequence[bytes | SignedDte], cert: Certificate, *,
             resolution_date: str | _dt.date | None = None, resolution_number: int = 0,
             receiver: str = SII_RUT, issuer: str | None = None, sender: str | None = None,
             boleta: bool | None = None, timestamp: str | _dt.datetime | None = None,
             set_id: str = "SetDoc") -> bytes:
    """Wraps signed DTEs in an EnvioDTE (EnvioBOLETA for boletas) and signs the SetDTE.

    ``issuer`` defaults to the DTEs' RUTEmisor, ``sender`` to the certificate's RUT,
    ``boleta`` to whether the DTEs are boletas, ``resolution_date`` to today (with number 0,
    certification's usual resolution).

    >>> xml = envelope([signed], cert, resolution_date="2014-08-22", resolution_number=80)  # doctest: +SKIP
    """
    items = [d.xml if isinstance(d, SignedDte) else d for d in dtes]
    signed = [d for d in dtes if isinstance(d, SignedDte)]
    if issuer is None:
        issuer = signed[0].issuer_rut if signed else _issuer_from_xml(items)
    if boleta is None:
        boleta = bool(signed) and all(_core.is_boleta(d.doc_type) for d in signed)
        if not signed:
            boleta = _types_from_xml(items) <= {39, 41} and bool(items)
    date = _when(resolution_date) or today_in_chile()
    return _core.build_envelope(
        items, cert._native, rut_emisor=issuer, rut_envia=sender or "", rut_receptor=receiver,
        fch_resol=date, nro_resol=resolution_number, tmst_firma_env=_when(timestamp),
        boleta=boleta, set_id=set_id,
    )


def _xml_values(items: Sequence[bytes], tag: str) -> list[str]:
    # A light textual look-up, enough to fill defaults: the core parses and checks every DTE.
    pattern = re.compile(rb"<(?:\w+:)?" + tag.encode() + rb">\s*([^<]+?)\s*<")
    out = []
    for item in items:
        m = pattern.search(item)
        if m:
            out.append(m.group(1).decode("latin-1"))
    return out


def _issuer_from_xml(items: Sequence[bytes]) -> str:
    found = _xml_values(items, "RUTEmisor")
    return found[0] if found else ""


def _types_from_xml(items: Sequence[bytes]) -> set[int]:
    return {int(v) for v in _xml_values(items, "TipoDTE") if v.isdigit()}


def verify(data: bytes, *, keyring: SiiKeyring | None = None,
           schema_set: SchemaSet | None = None, check_schema: bool = True,
           check_cert_validity: bool = True) -> VerifyReport:
    """Verifies any signed SII document from its original bytes: signatures (envelope and each
    DTE), key/certificate match, certificate validity at signing time, TED and CAF, schema.
    Never raises for bad content: unusable input is a failed "xml" check.

    >>> report = verify(Path("EnvioDTE.xml").read_bytes())  # doctest: +SKIP
    >>> report.ok, [c.name for c in report.failures]  # doctest: +SKIP
    (True, [])
    """
    ring = keyring if keyring is not None else SiiKeyring.default()
    native_schemas: _core.SchemaSet | None = None
    if check_schema:
        if schema_set is None:
            schema_set = default_schema_set()
        if schema_set is not None:
            native_schemas = schema_set._native
    return VerifyReport._from(
        _core.verify_document(data, keyring=ring._native, schemas=native_schemas,
                              check_cert_validity=check_cert_validity)
    )


# --- TED barcode -----------------------------------------------------------------------------


def _ted_text(ted: str | SignedDte) -> str:
    return ted.ted_xml if isinstance(ted, SignedDte) else ted


def ted_payload(ted: str | SignedDte) -> bytes:
    """The PDF417 payload of a TED: the element flattened, ISO-8859-1."""
    return _core.ted_barcode_payload(_ted_text(ted))


def barcode_png(ted: str | SignedDte, *, ecc_level: int = 5, columns: int = 0, module_px: int = 2,
                row_height: int = 3, quiet_zone: int = 2) -> bytes:
    """The TED's PDF417 barcode as PNG bytes (SII: error-correction level 5).

    >>> Path("timbre.png").write_bytes(barcode_png(signed))  # doctest: +SKIP
    """
    return _core.pdf417_png(ted_payload(ted), ecc_level=ecc_level, columns=columns,
                            module_px=module_px, row_height=row_height, quiet_zone=quiet_zone)


def barcode_svg(ted: str | SignedDte, *, ecc_level: int = 5, columns: int = 0, module_px: int = 2,
                row_height: int = 3, quiet_zone: int = 2) -> str:
    """The TED's PDF417 barcode as SVG text."""
    return _core.pdf417_svg(ted_payload(ted), ecc_level=ecc_level, columns=columns,
                            module_px=module_px, row_height=row_height, quiet_zone=quiet_zone)


def sign_seed(seed: str, cert: Certificate) -> str:
    """The signed getToken request for an SII seed (UTF-8 XML text).

    >>> body = sign_seed("012345678901", cert)  # doctest: +SKIP
    """
    return _core.sign_seed(seed, cert._native)
