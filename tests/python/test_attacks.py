"""XML attack corpus through the public facade (issue 10): every hostile input is refused (an
exception named by cause, or a report with a failed check saying why), never crashes, never
reaches the network or the file system, and stays within a small memory budget.

Network and file access are watched, not assumed: every URL points at a local TCP listener that
counts connections, and every file reference at a temporary file holding a marker that must never
come back in a report, an error message or a signed document."""
from __future__ import annotations

import copy
import re
import resource
import socket
import threading
from pathlib import Path
from typing import Callable, Iterator

import pytest

import dte_native as dte
from dte_native import testkit

from conftest import ISSUER, document

MARKER = "SECRET-MARKER-7f3a9c"
MEMORY_BUDGET_MB = 256  # peak RSS growth allowed for one attack beyond its own input


class Listener:
    """A local TCP port that counts whoever connects (an entity or Reference fetch would)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def url(self, path: str = "x") -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@pytest.fixture(scope="module")
def net() -> Iterator[Listener]:
    listener = Listener()
    yield listener
    listener.close()
    assert listener.connections == 0, "an attack made the library open a network connection"


@pytest.fixture
def no_net(net: Listener) -> Iterator[Listener]:
    before = net.connections
    yield net
    assert net.connections == before, "network access during this attack"


@pytest.fixture(scope="module")
def secret_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("attacks") / "secret.txt"
    path.write_text(MARKER + "\n", encoding="ascii")
    return path


@pytest.fixture(scope="module")
def material(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    kit = testkit.write_kit(tmp_path_factory.mktemp("attackkit"), rut=ISSUER, types=[33, 39])
    cert, ring = kit.certificate(), kit.keyring()
    signed = dte.sign(document(33), kit.caf(33), cert, keyring=ring)
    return {"kit": kit, "cert": cert, "ring": ring, "caf": kit.caf(33), "xml": signed.xml,
            "envelope": dte.envelope([signed], cert)}


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def bounded(fn: Callable[[], object], input_bytes: int = 0) -> object:
    """Runs `fn`; fails if the process' peak RSS grew by more than the budget (plus a few copies
    of the input, which the facade and libxml2 legitimately hold)."""
    before = peak_mb()
    result = fn()
    grown = peak_mb() - before
    allowed = MEMORY_BUDGET_MB + 4 * input_bytes / 2**20
    assert grown < allowed, f"peak RSS grew by {grown:.0f} MB (allowed {allowed:.0f} MB)"
    return result


def verify(data: bytes, ring: dte.SiiKeyring, **kw: object) -> dte.VerifyReport:
    report = bounded(lambda: dte.verify(data, keyring=ring, **kw), len(data))
    assert isinstance(report, dte.VerifyReport)
    for check in report.checks:
        assert MARKER not in check.reason
    return report


def failed(report: dte.VerifyReport, name: str, *reason_words: str) -> dte.Check:
    assert not report.ok, "hostile document verified"
    hits = [c for c in report.failures if c.name == name]
    assert hits, f"expected a failed {name!r} check, got {[(c.name, c.reason) for c in report.failures]}"
    for word in reason_words:
        assert any(word.lower() in c.reason.lower() for c in hits), (word, [c.reason for c in hits])
    return hits[0]


def parsers(data: bytes) -> list[Callable[[], object]]:
    """The calls besides verify that read `data`: validate (when the package has schemas; with
    none it stops at "no XSD folder" before reading) and Caf.parse."""
    calls: list[Callable[[], object]] = [lambda: dte.Caf.parse(data)]
    if dte.schema_dir() is not None:
        calls.insert(0, lambda: dte.validate(data))
    return calls


def refuse_everywhere(data: bytes, material: dict[str, object], *reason_words: str) -> None:
    """verify, validate and Caf.parse all refuse `data` with a clear reason and no crash."""
    report = verify(data, material["ring"])
    failed(report, "xml", *reason_words)
    for call in parsers(data):
        with pytest.raises(dte.DteError) as info:
            bounded(call, len(data))
        assert MARKER not in str(info.value)
        message = str(info.value).lower()
        for word in reason_words:
            assert word.lower() in message, (word, str(info.value))


# --- DTDs and entities: refused outright ------------------------------------------------------


def test_external_entity_file(material: dict, secret_file: Path, no_net: Listener) -> None:
    data = (f'<?xml version="1.0"?><!DOCTYPE DTE [<!ENTITY x SYSTEM "file://{secret_file}">]>'
            f'<DTE xmlns="http://www.sii.cl/SiiDte">&x;</DTE>').encode()
    refuse_everywhere(data, material, "DTD")


def test_external_entity_http(material: dict, no_net: Listener) -> None:
    data = (f'<?xml version="1.0"?><!DOCTYPE DTE [<!ENTITY x SYSTEM "{no_net.url("e")}">]>'
            f'<DTE xmlns="http://www.sii.cl/SiiDte">&x;</DTE>').encode()
    refuse_everywhere(data, material, "DTD")


def test_external_dtd_subset(material: dict, no_net: Listener) -> None:
    data = f'<?xml version="1.0"?><!DOCTYPE DTE SYSTEM "{no_net.url("d.dtd")}"><DTE/>'.encode()
    refuse_everywhere(data, material, "DTD")


def test_parameter_entities(material: dict, secret_file: Path, no_net: Listener) -> None:
    data = (f'<?xml version="1.0"?><!DOCTYPE DTE [<!ENTITY % file SYSTEM "file://{secret_file}">'
            f'<!ENTITY % remote SYSTEM "{no_net.url("p.dtd")}">%remote;%file;]>'
            '<DTE xmlns="http://www.sii.cl/SiiDte"/>').encode()
    report = verify(data, material["ring"])
    failed(report, "xml")
    for call in parsers(data):
        with pytest.raises(dte.XmlSyntaxError) as info:
            call()
        assert MARKER not in str(info.value)


def test_billion_laughs(material: dict) -> None:
    entities = '<!ENTITY l0 "lol">' + "".join(
        f'<!ENTITY l{i} "{("&l%d;" % (i - 1)) * 10}">' for i in range(1, 10))
    data = f'<?xml version="1.0"?><!DOCTYPE DTE [{entities}]><DTE>&l9;</DTE>'.encode()
    report = verify(data, material["ring"])
    failed(report, "xml")
    with pytest.raises(dte.XmlSyntaxError):
        bounded(lambda: dte.Caf.parse(data))


def test_quadratic_blowup_with_entity_is_refused(material: dict) -> None:
    data = ('<?xml version="1.0"?><!DOCTYPE DTE [<!ENTITY a "' + "x" * 50_000 + '">]><DTE>' +
            "&a;" * 20_000 + "</DTE>").encode()
    refuse_everywhere(data, material)


def test_long_entity_free_text_and_attribute(material: dict) -> None:
    # No entity: plain bytes cost what they weigh. Refused for shape, parsed within budget.
    text = b'<DTE xmlns="http://www.sii.cl/SiiDte"><Documento ID="A">' + b"x" * 8_000_000 + \
        b"</Documento></DTE>"
    report = verify(text, material["ring"])
    assert not report.ok
    attr = b'<DTE xmlns="http://www.sii.cl/SiiDte" a="' + b"y" * 8_000_000 + b'"/>'
    assert not verify(attr, material["ring"]).ok
    with pytest.raises(dte.DteError):
        bounded(lambda: dte.Caf.parse(attr), len(attr))


def test_too_large_is_refused_by_size(material: dict) -> None:
    report = verify(b"<a>" + b" " * (65 * 1024 * 1024) + b"</a>", material["ring"])
    failed(report, "xml", "exceeds the limit")


# --- nesting ----------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [65, 300, 100_000])
def test_deep_nesting(material: dict, depth: int) -> None:
    data = b'<DTE xmlns="http://www.sii.cl/SiiDte">' + b"<a>" * depth + b"</a>" * depth + b"</DTE>"
    check = failed(verify(data, material["ring"]), "xml")
    assert "depth" in check.reason.lower() or "deeper" in check.reason.lower()
    with pytest.raises(dte.XmlSyntaxError):
        dte.Caf.parse(data)


def test_deep_nesting_inside_signed_document(material: dict) -> None:
    xml: bytes = material["xml"]
    data = xml.replace(b"<RznSoc>", b"<RznSoc>" + b"<b>" * 80 + b"</b>" * 80, 1)
    failed(verify(data, material["ring"]), "xml", "deeper")


# --- signature wrapping -----------------------------------------------------------------------


def _documento(xml: bytes) -> bytes:
    m = re.search(rb'<Documento ID="T33F1">.*?</Documento>', xml, re.S)
    assert m
    return m.group(0)


def _evil(doc: bytes, new_id: bytes | None = None) -> bytes:
    evil = doc.replace(b"<MntTotal>", b"<MntTotal>9", 1)
    return evil.replace(b'ID="T33F1"', b'ID="' + new_id + b'"') if new_id else evil


def test_genuine_document_verifies(material: dict) -> None:
    report = verify(material["xml"], material["ring"])
    assert report.ok, report.failures
    assert verify(material["envelope"], material["ring"]).ok


def test_wrapping_duplicated_id(material: dict) -> None:
    xml: bytes = material["xml"]
    doc = _documento(xml)
    for data in (xml.replace(doc, doc + _evil(doc)), xml.replace(doc, _evil(doc) + doc)):
        failed(verify(data, material["ring"]), "dte.signature_target", "more than once")


def test_wrapping_duplicated_id_in_envelope(material: dict) -> None:
    env: bytes = material["envelope"]
    doc = _documento(env)
    data = env.replace(doc, doc + _evil(doc), 1)
    report = verify(data, material["ring"])
    assert not report.ok
    assert any("more than once" in c.reason for c in report.failures), report.failures


@pytest.mark.parametrize("where", ["object", "sibling-wrapper", "inside-evil"])
def test_wrapping_moved_signed_documento(material: dict, where: str) -> None:
    xml: bytes = material["xml"]
    doc = _documento(xml)
    evil = _evil(doc, b"EVIL")
    if where == "object":  # the signed original hidden in ds:Object, the evil one in its place
        data = xml.replace(doc, evil).replace(b"</Signature>", b"<Object>" + doc + b"</Object></Signature>")
    elif where == "sibling-wrapper":
        data = xml.replace(doc, evil + b"<Extra>" + doc + b"</Extra>")
    else:
        data = xml.replace(doc, evil.replace(b"</Documento>", b"<Extra>" + doc + b"</Extra></Documento>"))
    report = verify(data, material["ring"])
    assert not report.ok
    target = [c for c in report.failures if c.name == "dte.signature_target"]
    assert target or any(c.name == "xml" for c in report.failures), report.failures
    # whatever the application reads as "the" document is never the evil one marked as good
    assert all(not d.ok for d in report.documents)


@pytest.mark.parametrize("uri", ["#EVIL", "", "#T33F1-x"])
def test_wrapping_reference_points_elsewhere(material: dict, uri: str) -> None:
    xml: bytes = material["xml"]
    doc = _documento(xml)
    data = xml.replace(doc, _evil(doc, b"EVIL")).replace(b'URI="#T33F1"', f'URI="{uri}"'.encode())
    report = verify(data, material["ring"])
    failed(report, "dte.signature")


def test_reference_to_external_uri_is_never_fetched(material: dict, secret_file: Path,
                                                    no_net: Listener) -> None:
    xml: bytes = material["xml"]
    for uri in (no_net.url("doc"), f"file://{secret_file}", str(secret_file)):
        data = xml.replace(b'URI="#T33F1"', f'URI="{uri}"'.encode())
        failed(verify(data, material["ring"]), "dte.signature", "unsupported reference uri")


def test_xslt_transform_is_not_run(material: dict, secret_file: Path, no_net: Listener) -> None:
    xml: bytes = material["xml"]
    xslt = (f'<Transforms><Transform Algorithm="http://www.w3.org/TR/1999/REC-xslt-19991116">'
            f'<xsl:stylesheet xmlns:xsl="http://www.w3.org/1999/XSL/Transform" version="1.0">'
            f'<xsl:template match="/"><xsl:value-of select="document(\'{no_net.url("xslt")}\')"/>'
            f'<xsl:value-of select="document(\'file://{secret_file}\')"/></xsl:template>'
            f'</xsl:stylesheet></Transform></Transforms>').encode()
    data = re.sub(rb"(<Reference URI=\"#T33F1\">)", rb"\1" + xslt.replace(b"\\", b"\\\\"), xml, count=1)
    assert data != xml
    failed(verify(data, material["ring"]), "dte.signature")


def test_keyinfo_retrieval_method_is_not_followed(material: dict, no_net: Listener) -> None:
    xml: bytes = material["xml"]
    data = xml.replace(b"<KeyInfo>", f'<KeyInfo><RetrievalMethod URI="{no_net.url("key")}"/>'.encode(), 1)
    assert data != xml
    verify(data, material["ring"])  # outcome either way; no fetch (checked by no_net)


# --- comments ---------------------------------------------------------------------------------


def test_comments_inside_signed_text_still_verify(material: dict) -> None:
    # C14N without comments: the digest ignores them, and every field is read whole.
    xml: bytes = material["xml"]
    data = xml.replace(f"<RUTEmisor>{ISSUER}</RUTEmisor>".encode(),
                       f"<RUTEmisor>{ISSUER[:4]}<!-- c -->{ISSUER[4:]}</RUTEmisor>".encode())
    data = data.replace(b"<MntTotal>", b"<MntTotal><!---->", 1)
    assert data != xml
    report = verify(data, material["ring"])
    assert report.ok, report.failures
    assert report.documents[0].issuer_rut == ISSUER
    assert report.documents[0].total == verify(xml, material["ring"]).documents[0].total


def test_comment_hiding_a_changed_value_fails(material: dict) -> None:
    xml: bytes = material["xml"]
    data = xml.replace(f"<RUTEmisor>{ISSUER}</RUTEmisor>".encode(),
                       f"<RUTEmisor><!--{ISSUER}-->11111111-1</RUTEmisor>".encode())
    failed(verify(data, material["ring"]), "dte.signature", "digest")


# --- namespace tricks -------------------------------------------------------------------------


NS_TRICKS = {
    "default-switch": (b'<Documento ID="T33F1">', b'<Documento xmlns="urn:evil" ID="T33F1">'),
    "sii-prefixed": (b'<DTE xmlns="http://www.sii.cl/SiiDte"',
                     b'<DTE xmlns:sii="http://www.sii.cl/SiiDte" xmlns="http://www.sii.cl/SiiDte"'),
    "redeclared-default-inside": (b"<Encabezado>", b'<Encabezado xmlns="urn:evil">'),
    "ds-prefix": (b'<Signature xmlns="http://www.w3.org/2000/09/xmldsig#">',
                  b'<Signature xmlns="http://www.w3.org/2000/09/xmldsig#" '
                  b'xmlns:ds="http://www.w3.org/2000/09/xmldsig#">'),
    "signature-no-namespace": (b'<Signature xmlns="http://www.w3.org/2000/09/xmldsig#">',
                               b"<Signature>"),
    "signedinfo-other-ns": (b"<SignedInfo>", b'<SignedInfo xmlns="urn:evil">'),
}


@pytest.mark.parametrize("trick", sorted(NS_TRICKS))
def test_namespace_tricks(material: dict, trick: str) -> None:
    old, new = NS_TRICKS[trick]
    xml: bytes = material["xml"]
    data = xml.replace(old, new, 1)
    assert data != xml
    report = verify(data, material["ring"], check_schema=False)
    assert not report.ok
    assert any(c.name.startswith("dte.signature") for c in report.failures), report.failures


def test_unused_namespace_on_root_changes_nothing_silently(material: dict) -> None:
    # Inclusive C14N carries ancestors' declarations: either the signature fails, or it verifies
    # standalone (as SII does) with the same data. Never a crash, never other fields.
    xml: bytes = material["xml"]
    data = xml.replace(b'<DTE xmlns="http://www.sii.cl/SiiDte"',
                       b'<DTE xmlns:evil="urn:evil" xmlns="http://www.sii.cl/SiiDte"', 1)
    report = verify(data, material["ring"])
    if not report.ok:
        assert {c.name for c in report.failures} <= {"dte.signature", "schema"}
    assert report.documents[0].issuer_rut == ISSUER


# --- huge base64 ------------------------------------------------------------------------------


@pytest.mark.parametrize("element", [b"SignatureValue", b"X509Certificate", b"Modulus"])
@pytest.mark.parametrize("size_mb", [1, 9, 20])
def test_huge_base64(material: dict, element: bytes, size_mb: int) -> None:
    xml: bytes = material["xml"]
    junk = b"QUFB" * (size_mb * 2**20 // 4)
    data = re.sub(rb"<" + element + rb">.*?</" + element + rb">",
                  lambda m: b"<" + element + b">" + junk + b"</" + element + b">", xml, count=1,
                  flags=re.S)
    assert len(data) > len(xml)
    report = verify(data, material["ring"])
    assert not report.ok
    assert any(c.name in ("xml", "dte.signature", "cert.key_match") for c in report.failures)


def test_invalid_base64_is_a_failed_check(material: dict) -> None:
    xml: bytes = material["xml"]
    data = re.sub(rb"<SignatureValue>.*?</SignatureValue>", b"<SignatureValue>!!not base64!!</SignatureValue>",
                  xml, count=1, flags=re.S)
    failed(verify(data, material["ring"]), "dte.signature")


# --- CAF --------------------------------------------------------------------------------------


def test_caf_attacks(material: dict, secret_file: Path, no_net: Listener) -> None:
    caf_xml = material["kit"].caf_paths[33].read_bytes()
    attacks = [
        caf_xml.replace(b"<AUTORIZACION>", f'<!DOCTYPE AUTORIZACION [<!ENTITY x SYSTEM "file://{secret_file}">]>'
                        "<AUTORIZACION>".encode(), 1).replace(b"<RS>", b"<RS>&x;", 1),
        caf_xml.replace(b"<RSASK>", b"<RSASK>" + b"A" * 5_000_000, 1),
        caf_xml.replace(b"<DA>", b"<DA>" + b"<x>" * 100, 1),
        re.sub(rb"<RNG>.*?</RNG>", b"<RNG><D>99999999999999999999999</D><H>-1</H></RNG>", caf_xml, flags=re.S),
        re.sub(rb"<TD>.*?</TD>", b"<TD>x</TD>", caf_xml),
        re.sub(rb"<FRMA[^>]*>.*?</FRMA>", b"<FRMA algoritmo=\"SHA1withRSA\">@@@</FRMA>", caf_xml, flags=re.S),
        re.sub(rb"<M>.*?</M>", b"<M></M>", caf_xml, count=1, flags=re.S),
        re.sub(rb"<E>.*?</E>", b"<E>AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==</E>", caf_xml,
               count=1, flags=re.S),
        caf_xml.replace(b"<CAF ", b"<CAF xmlns=\"urn:evil\" ", 1),
    ]
    for data in attacks:
        try:
            caf = bounded(lambda: dte.Caf.parse(data), len(data))
        except dte.DteError as exc:
            assert str(exc) and MARKER not in str(exc)
            continue
        checks = caf.check(material["ring"])  # parsed: then the checks must say what is wrong
        assert any(c.failed for c in checks) or caf.info.folio_from <= caf.info.folio_to


# --- sign with hostile JSON -------------------------------------------------------------------


def _sign(material: dict, doc: object) -> dte.SignedDte:
    return dte.sign(doc, material["caf"], material["cert"], keyring=material["ring"])


INJECTIONS = [
    "</RznSocRecep><Evil>x</Evil><RznSocRecep>",
    '<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>&e;',
    "]]><![CDATA[",
    "&amp;&lt;&#x41;&xxe;",
    "\u202e\ufeff€ñ😀",
]


@pytest.mark.parametrize("text", INJECTIONS)
def test_sign_escapes_markup_in_fields(material: dict, text: str) -> None:
    doc = document(33)
    doc["Encabezado"]["Receptor"]["RznSocRecep"] = text
    doc["Detalle"][0]["NmbItem"] = text
    signed = _sign(material, doc)
    assert b"<Evil>" not in signed.xml and b"<!DOCTYPE" not in signed.xml
    report = verify(signed.xml, material["ring"])
    assert report.ok, report.failures


@pytest.mark.parametrize("bad", ["\x00", "\x0b", "\x1f", "\ud800"])
def test_sign_control_characters(material: dict, bad: str) -> None:
    doc = document(33)
    doc["Encabezado"]["Receptor"]["RznSocRecep"] = f"A{bad}B"
    try:
        signed = _sign(material, doc if bad != "\ud800" else str(doc).replace("'", '"'))
    except (dte.DteError, ValueError, UnicodeError):
        return  # refused: fine
    assert verify(signed.xml, material["ring"]).ok  # accepted: then it must be well-formed and valid


HOSTILE_JSON = [
    "[" * 100_000 + "]" * 100_000,
    '{"Encabezado": ' * 50_000 + "1" + "}" * 50_000,
    '{"Encabezado": {"IdDoc": {"TipoDTE": 33, "Folio": 1e400}}}',
    '{"Encabezado": {"IdDoc": {"TipoDTE": 33, "Folio": -1}}}',
    '{"Encabezado": {"IdDoc": {"TipoDTE": 1e19, "Folio": 18446744073709551616}}}',
    '{"Encabezado": {"IdDoc": {"TipoDTE": "33", "Folio": NaN}}}',
    "\x00",
    "",
    '"' + "a" * 1_000_000 + '"',
]


# Regression: the facade's json.loads() let RecursionError escape for deeply nested JSON.
@pytest.mark.parametrize("index", range(len(HOSTILE_JSON)))
def test_sign_hostile_json(material: dict, index: int) -> None:
    text = HOSTILE_JSON[index]
    with pytest.raises(dte.DteError):
        bounded(lambda: _sign(material, text), len(text))


def test_sign_hostile_values(material: dict) -> None:
    cases = []
    for path, value in [(("Encabezado", "IdDoc", "Folio"), -5),
                        (("Encabezado", "IdDoc", "TipoDTE"), 9999), (("Encabezado", "IdDoc", "FchEmis"), "2025-02-30"),
                        (("Encabezado", "Totales", "MntTotal"), 10**30),
                        (("Encabezado", "IdDoc", "FchEmis"), {"nested": ["x"]})]:
        doc = document(33)
        node = doc
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
        cases.append(doc)
    many = document(33)
    many["Detalle"] = [copy.deepcopy(many["Detalle"][0]) for _ in range(5000)]
    cases.append(many)
    for doc in cases:
        with pytest.raises(dte.DteError):
            bounded(lambda: _sign(material, doc))


# Regression: the facade passed a folio beyond 64 bits to Caf.check_fits (pybind11 TypeError).
@pytest.mark.parametrize("folio", [2**70, -(2**70)])
def test_sign_folio_beyond_64_bits(material: dict, folio: int) -> None:
    doc = document(33)
    doc["Encabezado"]["IdDoc"]["Folio"] = folio
    with pytest.raises(dte.DteError):
        _sign(material, doc)
