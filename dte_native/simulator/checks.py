"""The checks SII runs on what it receives, written with lxml, python-xmlsec and cryptography.

Deliberately independent of the C++ core: this is the yardstick the core is measured against.
"""
from __future__ import annotations

import base64
import datetime as dt
import re
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

# lxml.etree before xmlsec: python-xmlsec imported first leaves libxml2 with an external-entity
# loader that refuses lxml's later file parses (python-xmlsec issue #96), so an XSD read from
# disk would fail with an empty XMLSyntaxError.
from lxml import etree  # type: ignore[import-untyped]
import xmlsec
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

SII_NS = "http://www.sii.cl/SiiDte"
DS_NS = "http://www.w3.org/2000/09/xmldsig#"
C14N_URI = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
RSA_SHA1_URI = "http://www.w3.org/2000/09/xmldsig#rsa-sha1"
SHA1_URI = "http://www.w3.org/2000/09/xmldsig#sha1"
ENVELOPED_URI = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
RUT_OID = x509.ObjectIdentifier("1.3.6.1.4.1.8321.1")

# No DTD, no entities, no network: what we parse comes from the outside.
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                          huge_tree=False, remove_blank_text=False)

ROOT_SCHEMAS = {
    "EnvioDTE": "EnvioDTE_v10.xsd",
    "EnvioBOLETA": "EnvioBOLETA_v11.xsd",
    "LibroCompraVenta": "LibroCV_v10.xsd",
    "LibroGuia": "LibroGuia_v10.xsd",
    "ConsumoFolios": "ConsumoFolio_v10.xsd",
    "RespuestaDTE": "RespuestaEnvioDTE_v10.xsd",
    "EnvioRecibos": "EnvioRecibos_v10.xsd",
    "AEC": "AEC_v10.xsd",
}


# libxml2 names (element names, whitespace texts) are interned in dictionaries that lxml shares
# between threads (a thread's dictionary looks names up in the main one; a compiled schema keeps
# its compiling thread's), and those are not safe for concurrent use: with request threads
# parsing uploads while another compiled or validated a schema, a parse now and then got a
# wrong name back ("Opening and ending tag mismatch: xs line 2 and EnvioDTE"), a valid upload
# was refused about one demo run in 15. Parsing and schema work therefore take turns.
_LXML_LOCK = threading.RLock()


def parse(data: bytes) -> etree._Element:
    with _LXML_LOCK:
        return etree.fromstring(data, _PARSER)


def local(el: etree._Element) -> str:
    tag = el.tag
    # "{namespace}name" or "name": the same answer as etree.QName(el).localname, without the object.
    return tag.rpartition("}")[2] if isinstance(tag, str) else ""


def child(el: etree._Element | None, *names: str) -> etree._Element | None:
    """Follow a path of local names (namespace-agnostic, first match)."""
    for name in names:
        if el is None:
            return None
        found = None
        for c in el:
            tag = c.tag
            if isinstance(tag, str) and tag.rpartition("}")[2] == name:
                found = c
                break
        el = found
    return el


def text(el: etree._Element | None, *names: str) -> str:
    found = child(el, *names) if names else el
    return (found.text or "").strip() if found is not None else ""


def children(el: etree._Element | None, name: str) -> list[etree._Element]:
    if el is None:
        return []
    return [c for c in el if isinstance(c.tag, str) and local(c) == name]


# --------------------------------------------------------------------------- RUT

def rut_dv(body: int) -> str:
    total, factor = 0, 2
    for digit in reversed(str(body)):
        total += int(digit) * factor
        factor = 2 if factor == 7 else factor + 1
    rest = 11 - total % 11
    return {11: "0", 10: "K"}.get(rest, str(rest))


def rut_valid(rut: str) -> bool:
    m = re.fullmatch(r"(\d{1,8})-([\dkK])", rut.strip())
    return m is not None and rut_dv(int(m.group(1))) == m.group(2).upper()


def rut_norm(rut: str) -> str:
    return rut.replace(".", "").strip().upper()


# --------------------------------------------------------------------------- keys / certificates

def _b64int(value: str) -> int:
    return int.from_bytes(base64.b64decode("".join(value.split())), "big")


# Decoded keys and certificates by their text. A batch of 1 000 DTEs carries the same signer
# certificate and a dozen CAFs: decoding them once per batch instead of once per document is what
# made the simulator's verification fast enough (BENCHMARKS.md). Only the decoding is cached;
# every signature is still verified. Bounded: cleared when it grows past _CACHE_MAX entries.
_CACHE_MAX = 512
_RSA_CACHE: dict[tuple[str, str], rsa.RSAPublicKey | None] = {}
_CERT_CACHE: dict[str, x509.Certificate | None] = {}
_XMLSEC_KEYS: dict[object, "xmlsec.Key"] = {}
_CAF_FRMA_OK: dict[tuple[str, bytes, str], bool] = {}


def _remember(cache: dict, key: object, value: object) -> None:  # type: ignore[type-arg]
    if len(cache) >= _CACHE_MAX:
        cache.clear()
    cache[key] = value


def rsa_key(exponent_b64: str, modulus_b64: str) -> rsa.RSAPublicKey | None:
    k = (exponent_b64, modulus_b64)
    if k in _RSA_CACHE:
        return _RSA_CACHE[k]
    try:
        key: rsa.RSAPublicKey | None = rsa.RSAPublicNumbers(_b64int(exponent_b64), _b64int(modulus_b64)).public_key()
    except Exception:
        key = None
    _remember(_RSA_CACHE, k, key)
    return key


def rsa_from_keyvalue(signature: etree._Element) -> rsa.RSAPublicKey | None:
    kv = child(signature, "KeyInfo", "KeyValue", "RSAKeyValue")
    if kv is None:
        return None
    return rsa_key(text(kv, "Exponent"), text(kv, "Modulus"))


def cert_from_signature(signature: etree._Element) -> x509.Certificate | None:
    node = child(signature, "KeyInfo", "X509Data", "X509Certificate")
    if node is None:
        return None
    b64 = "".join((node.text or "").split())
    if b64 in _CERT_CACHE:
        return _CERT_CACHE[b64]
    try:
        cert: x509.Certificate | None = x509.load_der_x509_certificate(base64.b64decode(b64))
    except Exception:
        cert = None
    _remember(_CERT_CACHE, b64, cert)
    return cert


def _xmlsec_key(key: rsa.RSAPublicKey) -> "xmlsec.Key":
    # Keyed by the key object (the rsa_key cache hands out the same object for the same numbers;
    # the dict holds a reference, so an identity is never reused while cached).
    found = _XMLSEC_KEYS.get(key)
    if found is None:
        pem = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        found = xmlsec.Key.from_memory(pem, xmlsec.constants.KeyDataFormatPem)
        _remember(_XMLSEC_KEYS, key, found)
    return found


def _der_string(value: bytes) -> str:
    """Decode the DER value of a SAN otherName (tolerates the [0] EXPLICIT wrapper)."""
    while value and value[0] == 0xA0:
        value = _der_tlv_content(value)
    if value and value[0] in (0x0C, 0x16, 0x13, 0x14, 0x1E):
        content = _der_tlv_content(value)
        return content.decode("utf-16-be" if value[0] == 0x1E else "utf-8", "replace")
    return value.decode("utf-8", "replace")


def _der_tlv_content(tlv: bytes) -> bytes:
    length = tlv[1]
    if length < 0x80:
        return tlv[2:2 + length]
    n = length & 0x7F
    length = int.from_bytes(tlv[2:2 + n], "big")
    return tlv[2 + n:2 + n + length]


def rut_from_cert(cert: x509.Certificate) -> str | None:
    """RUT of the certificate holder: SAN otherName 1.3.6.1.4.1.8321.1, else subject serialNumber."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        for name in san.get_values_for_type(x509.OtherName):
            if name.type_id == RUT_OID:
                # Format only: the check digit is SII's registry's business (-07), and test
                # certificates in the wild carry wrong ones (CORD's 13185095-K).
                candidate = rut_norm(_der_string(name.value))
                if re.fullmatch(r"\d{1,8}-[\dK]", candidate):
                    return candidate
    except x509.ExtensionNotFound:
        pass
    for attr in cert.subject.get_attributes_for_oid(x509.NameOID.SERIAL_NUMBER):
        candidate = rut_norm(str(attr.value))
        if rut_valid(candidate):
            return candidate
    return None


def load_public_key(path: Path) -> rsa.RSAPublicKey:
    """A PEM public key, a PEM/DER certificate, or SII's CAF certs (which cryptography refuses:
    their X.509 version field is invalid) through `openssl x509 -pubkey`."""
    data = path.read_bytes()
    loaders: tuple[Callable[[], object], ...] = (
        lambda: serialization.load_pem_public_key(data),
        lambda: x509.load_pem_x509_certificate(data).public_key(),
        lambda: x509.load_der_x509_certificate(data).public_key(),
    )
    for load in loaders:
        try:
            key = load()
            if isinstance(key, rsa.RSAPublicKey):
                return key
        except Exception:
            continue
    for form in ("PEM", "DER"):
        out = subprocess.run(["openssl", "x509", "-inform", form, "-noout", "-pubkey", "-in", str(path)],
                             capture_output=True, check=False)
        if out.returncode == 0:
            key = serialization.load_pem_public_key(out.stdout)
            if isinstance(key, rsa.RSAPublicKey):
                return key
    raise ValueError(f"{path}: not an RSA public key or certificate")


def load_sii_keys(folder: str | Path | None, extra: dict[str, str] | None = None) -> dict[str, rsa.RSAPublicKey]:
    """Trusted CAF-signing keys by IDK: files named `<IDK>.pem|.cer|.pub|.der` in `folder`."""
    keys: dict[str, rsa.RSAPublicKey] = {}
    if folder:
        for path in sorted(Path(folder).iterdir()):
            if path.suffix.lower() in (".pem", ".cer", ".pub", ".der", ".crt") and path.stem.isdigit():
                keys[path.stem] = load_public_key(path)
    for idk, extra_path in (extra or {}).items():
        keys[str(idk)] = load_public_key(Path(extra_path))
    return keys


# --------------------------------------------------------------------------- TED / CAF

def _strip_ns(el: etree._Element) -> etree._Element:
    out = etree.Element(local(el), {etree.QName(k).localname: v for k, v in el.attrib.items()})
    out.text = el.text
    for c in el:
        if isinstance(c.tag, str):
            nc = _strip_ns(c)
            nc.tail = c.tail
            out.append(nc)
    return out


def flatten(el: etree._Element) -> bytes:
    """SII's "aplanado": namespace-free canonical form, no whitespace between tags, ISO-8859-1."""
    bare = _strip_ns(el)
    canon = etree.tostring(bare, method="c14n")
    canon = re.sub(rb">\s+<", b"><", canon.strip())
    return canon.decode("utf-8").encode("iso-8859-1")


def rsa_sha1_verify(key: rsa.RSAPublicKey, signature_b64: str, data: bytes) -> bool:
    try:
        key.verify(base64.b64decode("".join(signature_b64.split())), data, padding.PKCS1v15(), hashes.SHA1())
        return True
    except (InvalidSignature, ValueError):
        return False


@dataclass
class Finding:
    code: str
    message: str


@dataclass
class TedResult:
    ok: bool
    findings: list[Finding] = field(default_factory=list)
    caf_fa: dt.date | None = None
    idk: str = ""
    skipped_caf_signature: bool = False


def verify_ted(ted: etree._Element | None, sii_keys: dict[str, rsa.RSAPublicKey],
               require_caf_signature: bool) -> TedResult:
    res = TedResult(ok=False)
    if ted is None:
        res.findings.append(Finding("TED-3-500", "Documento sin Timbre Electronico"))
        return res
    dd = child(ted, "DD")
    da = child(dd, "CAF", "DA")
    if dd is None or da is None:
        res.findings.append(Finding("TED-3-500", "Timbre sin DD o CAF"))
        return res
    caf_key = rsa_key(text(da, "RSAPK", "E"), text(da, "RSAPK", "M"))
    if caf_key is None:
        res.findings.append(Finding("CAF-3-510", "Clave publica del CAF ilegible"))
        return res
    try:
        flat_dd = flatten(dd)
    except UnicodeEncodeError:
        res.findings.append(Finding("TED-3-511", "Timbre con caracteres fuera de ISO-8859-1"))
        return res
    if not rsa_sha1_verify(caf_key, text(ted, "FRMT"), flat_dd):
        res.findings.append(Finding("TED-3-510", "Firma del Timbre (FRMT) Incorrecta"))
    res.idk = text(da, "IDK")
    sii_key = sii_keys.get(res.idk)
    if sii_key is None:
        if sii_keys or not require_caf_signature:
            if require_caf_signature:
                res.findings.append(Finding("CAF-3-512", f"CAF firmado con llave SII desconocida (IDK {res.idk})"))
        else:
            res.skipped_caf_signature = True
    else:
        # The CAF's FRMA is checked once per distinct CAF (its DA bytes + FRMA + IDK), not per DTE.
        frma = text(dd, "CAF", "FRMA")
        cache_key = (res.idk, etree.tostring(da), frma)
        ok = _CAF_FRMA_OK.get(cache_key)
        if ok is None:
            try:
                ok = rsa_sha1_verify(sii_key, frma, flatten(da))
            except UnicodeEncodeError:
                res.findings.append(Finding("TED-3-511", "Timbre con caracteres fuera de ISO-8859-1"))
                return res
            _remember(_CAF_FRMA_OK, cache_key, ok)
        if not ok:
            res.findings.append(Finding("CAF-3-511", "Firma del CAF (FRMA) Incorrecta"))
    try:
        res.caf_fa = dt.date.fromisoformat(text(da, "FA"))
    except ValueError:
        res.caf_fa = None
    res.ok = not res.findings
    return res


# --------------------------------------------------------------------------- XMLDSig

@dataclass
class SigResult:
    ok: bool
    reason: str = ""
    code: str = ""           # getToken ESTADO-style code for the failure
    cert: x509.Certificate | None = None
    signature_value: str = ""


def _algorithm(el: etree._Element | None) -> str | None:
    return None if el is None else el.get("Algorithm")


def _check_profile(sig: etree._Element, expected_uri: str | None, enveloped: bool) -> SigResult | None:
    si = child(sig, "SignedInfo")
    if si is None:
        return SigResult(False, "Signature sin SignedInfo", "05")
    if _algorithm(child(si, "CanonicalizationMethod")) != C14N_URI:
        return SigResult(False, "CanonicalizationMethod distinto de C14N 20010315", "05")
    if _algorithm(child(si, "SignatureMethod")) != RSA_SHA1_URI:
        return SigResult(False, "SignatureMethod distinto de rsa-sha1", "05")
    refs = children(si, "Reference")
    if len(refs) != 1:
        return SigResult(False, "Se espera exactamente una Reference", "05")
    ref = refs[0]
    uri = ref.get("URI")
    if uri is None or not (uri == "" or re.fullmatch(r"#[A-Za-z_][\w.\-]*", uri)):
        return SigResult(False, f"Reference URI no permitida: {uri!r}", "05")
    if expected_uri is not None and uri != expected_uri:
        return SigResult(False, f"Reference URI {uri!r}, se esperaba {expected_uri!r}", "05")
    transforms = children(child(ref, "Transforms"), "Transform")
    if len(transforms) > 1:
        return SigResult(False, "Mas de un Transform", "05")
    if enveloped and (not transforms or transforms[0].get("Algorithm") != ENVELOPED_URI):
        return SigResult(False, "Falta Transform enveloped-signature", "05")
    if transforms and transforms[0].get("Algorithm") not in (ENVELOPED_URI, C14N_URI):
        return SigResult(False, "Transform no permitido", "05")
    if _algorithm(child(ref, "DigestMethod")) != SHA1_URI:
        return SigResult(False, "DigestMethod distinto de sha1", "05")
    return None


def verify_signature(sig: etree._Element, expected_uri: str | None = None, enveloped: bool = False,
                     check_cert_match: bool = True) -> SigResult:
    """Verify one ds:Signature where it stands in its tree (IDs must already be registered)."""
    bad = _check_profile(sig, expected_uri, enveloped)
    if bad:
        return bad
    key = rsa_from_keyvalue(sig)
    cert = cert_from_signature(sig)
    if key is None:
        return SigResult(False, "Falta KeyValue/RSAKeyValue", "05")
    if cert is None:
        return SigResult(False, "Falta X509Certificate", "11")
    if check_cert_match:
        cert_key = cert.public_key()
        if not isinstance(cert_key, rsa.RSAPublicKey) or cert_key.public_numbers() != key.public_numbers():
            return SigResult(False, "Llave publica (KeyValue) no corresponde al certificado", "21", cert)
    ctx = xmlsec.SignatureContext()
    ctx.key = _xmlsec_key(key)
    try:
        ctx.verify(sig)
    except xmlsec.Error as exc:
        return SigResult(False, f"Firma invalida: {exc}", "05", cert)
    return SigResult(True, "", "", cert, "".join(text(sig, "SignatureValue").split()))


_XMLSEC_LOCK = threading.Lock()


def verify_in_place(root: etree._Element, sig: etree._Element, expected_uri: str | None) -> SigResult:
    # No KeyValue/certificate match here: SII's own example envelope (F60T33) carries a KeyValue
    # that is not the certificate's key and SII accepted it; getToken is where SII checks it (21).
    xmlsec.tree.add_ids(root, ["ID"])
    with _XMLSEC_LOCK:
        return verify_signature(sig, expected_uri, check_cert_match=False)


def standalone_dte(dte: etree._Element) -> etree._Element:
    """The DTE re-parsed as its own document with only the SiiDte default namespace in scope,
    which is how SII checks each DTE of an envelope (it was signed that way)."""
    # Serialising a sub-element carries every in-scope namespace (xmlns:xsi from the envelope...),
    # as a deep copy would, without copying the tree first. Drop the unused ones, the way a
    # standalone DTE would have been written.
    data = etree.tostring(dte, with_tail=False)
    root = parse(data)
    etree.cleanup_namespaces(root)
    return parse(etree.tostring(root))


def verify_dte_signature(dte: etree._Element) -> SigResult:
    alone = standalone_dte(dte)
    doc = next((c for c in alone if local(c) in ("Documento", "Liquidacion", "Exportaciones")), None)
    sig = child(alone, "Signature")
    if doc is None or sig is None:
        return SigResult(False, "DTE sin Documento o sin Signature", "04")
    return verify_in_place(alone, sig, "#" + (doc.get("ID") or ""))


# --------------------------------------------------------------------------- XSD

class SchemaSet:
    """Compiled SII schemas by root element, compiled on first use and shared."""

    def __init__(self, folder: str | Path | None) -> None:
        self.folder = Path(folder) if folder else None
        self._schemas: dict[str, etree.XMLSchema] = {}

    @property
    def available(self) -> bool:
        return bool(self.folder and (self.folder / "EnvioDTE_v10.xsd").is_file())

    def validate(self, root: etree._Element) -> list[str] | None:
        """Error lines, [] when valid, None when no schema is known for this root."""
        name = ROOT_SCHEMAS.get(local(root))
        if not name or not self.folder or not (self.folder / name).is_file():
            return None
        with _LXML_LOCK:
            schema = self._schemas.get(name)
            if schema is None:
                schema = etree.XMLSchema(etree.parse(str(self.folder / name)))
                self._schemas[name] = schema
            ok = schema.validate(root)
            errors = [] if ok else [f"LSX-00200: line {e.line}: {e.message}" for e in schema.error_log]
        return errors
