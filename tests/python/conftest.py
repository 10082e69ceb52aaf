"""Shared fixtures: test material made at test time with dte_native.testkit, and independent
checkers (python-xmlsec, the xmlsec1 and xmllint command lines)."""
from __future__ import annotations

import copy
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

import dte_native as dte
from dte_native import testkit

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "sii"  # the shared material beside the checkout (skipped when absent)
SII_NS = "http://www.sii.cl/SiiDte"
ISSUER = testkit.DEFAULT_ISSUER_RUT
TIMESTAMP = None  # "now": the test certificate is valid from now on


def all_types() -> list[int]:
    return list(dte.supported_types())


@pytest.fixture(scope="session")
def kit(tmp_path_factory: pytest.TempPathFactory) -> testkit.TestKit:
    return testkit.write_kit(tmp_path_factory.mktemp("kit"), rut=ISSUER, types=all_types(),
                             folio_from=1, folio_to=500)


@pytest.fixture(scope="session")
def cert(kit: testkit.TestKit) -> dte.Certificate:
    return kit.certificate()


@pytest.fixture(scope="session")
def keyring(kit: testkit.TestKit) -> dte.SiiKeyring:
    return kit.keyring()


@pytest.fixture(scope="session")
def cafs(kit: testkit.TestKit) -> dict[int, dte.Caf]:
    return {t: kit.caf(t) for t in kit.caf_paths}


def document(doc_type: int, folio: int = 1, **changes: Any) -> dict[str, Any]:
    """The shipped example of a type, issued by the kit's RUT with the given folio."""
    doc = copy.deepcopy(dte.example(doc_type))
    doc["Encabezado"]["IdDoc"]["Folio"] = folio
    doc["Encabezado"]["Emisor"]["RUTEmisor"] = ISSUER
    for key, value in changes.items():
        doc[key] = value
    return doc


@pytest.fixture(scope="session")
def signed(cafs: dict[int, dte.Caf], cert: dte.Certificate,
           keyring: dte.SiiKeyring) -> dict[int, dte.SignedDte]:
    """One signed DTE per supported type (folio 1)."""
    return {t: dte.sign(document(t), cafs[t], cert, keyring=keyring) for t in all_types()}


@pytest.fixture(scope="session")
def xsd_dir() -> Path:
    directory = dte.schema_dir()
    if directory is None or not (directory / "DTE_v10.xsd").is_file():
        pytest.skip("SII XSDs not available (no dte_native/xsd, DTE_XSD_DIR unset)")
    return directory


# --- independent checkers ----------------------------------------------------------------------


def xmlsec_verify(xml: bytes, cert_pem: str | None = None, signature_index: int = -1) -> None:
    """Verifies one ds:Signature with python-xmlsec (lxml tree, IDs registered by hand). The key
    is the certificate's when given, else the document's own X509Certificate."""
    import xmlsec
    from lxml import etree

    root = etree.fromstring(xml, etree.XMLParser(resolve_entities=False, no_network=True))
    xmlsec.tree.add_ids(root, ["ID"])
    sigs = root.xpath("//*[local-name()='Signature' and namespace-uri()="
                      "'http://www.w3.org/2000/09/xmldsig#']")
    assert sigs, "no Signature element"
    sig = sigs[signature_index]
    if cert_pem is None:
        (b64,) = sig.xpath(".//*[local-name()='X509Certificate']/text()")
        body = "".join(b64.split())
        cert_pem = ("-----BEGIN CERTIFICATE-----\n"
                    + "\n".join(body[i:i + 64] for i in range(0, len(body), 64))
                    + "\n-----END CERTIFICATE-----\n")
    ctx = xmlsec.SignatureContext()
    ctx.key = xmlsec.Key.from_memory(cert_pem.encode(), xmlsec.constants.KeyDataFormatCertPem)
    ctx.verify(sig)  # raises xmlsec.Error when it does not verify


def xmlsec1_verify(path: Path, signature_index: int | None = None) -> subprocess.CompletedProcess[str]:
    if shutil.which("xmlsec1") is None:
        pytest.skip("xmlsec1 not installed")
    cmd = ["xmlsec1", "--verify", "--insecure"]  # key from the KeyValue, as SII does
    for element in ("Documento", "Exportaciones", "Liquidacion", "SetDTE"):
        cmd += ["--id-attr:ID", element]
    if signature_index is not None:
        cmd += ["--node-xpath", f"(//*[local-name()='Signature'])[{signature_index}]"]
    cmd.append(str(path))
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def xmllint_validate(path: Path, xsd: Path) -> subprocess.CompletedProcess[str]:
    if shutil.which("xmllint") is None:
        pytest.skip("xmllint not installed")
    return subprocess.run(["xmllint", "--noout", "--nonet", "--schema", str(xsd), str(path)],
                          capture_output=True, text=True, timeout=120)


def extract_dtes(envelope: bytes) -> list[bytes]:
    """The DTEs of an envelope as their exact bytes (they were inserted verbatim), each with the
    declaration, so they can be checked standalone as SII does."""
    found = re.findall(rb"<DTE\b.*?</DTE>", envelope, flags=re.S)
    return [b'<?xml version="1.0" encoding="ISO-8859-1"?>\n' + d for d in found]


def shared_sample(name: str) -> Path:
    path = SHARED / "samples" / name
    if not path.is_file():
        pytest.skip(f"{path} not available (read-only public test data is absent)")
    return path
