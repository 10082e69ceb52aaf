"""What dte_native signs verifies with independent tools (python-xmlsec, the xmlsec1 command)
and what it builds validates with xmllint against SII's XSDs."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

import dte_native as dte

from conftest import all_types, extract_dtes, xmllint_validate, xmlsec1_verify, xmlsec_verify

xmlsec = pytest.importorskip("xmlsec")


@pytest.mark.parametrize("doc_type", all_types())
def test_python_xmlsec_verifies_dte(doc_type: int, signed: dict[int, dte.SignedDte],
                                    cert: dte.Certificate) -> None:
    xmlsec_verify(signed[doc_type].xml, cert.pem)


def test_python_xmlsec_rejects_tampering(signed: dict[int, dte.SignedDte],
                                         cert: dte.Certificate) -> None:
    s = signed[33]
    tampered = s.xml.replace(f"<MntTotal>{s.total}<".encode(), f"<MntTotal>{s.total + 1}<".encode())
    assert tampered != s.xml
    with pytest.raises(xmlsec.Error):
        xmlsec_verify(tampered, cert.pem)


@pytest.mark.parametrize("doc_type", all_types())
def test_xmlsec1_verifies_dte(doc_type: int, signed: dict[int, dte.SignedDte],
                              tmp_path: Path) -> None:
    path = tmp_path / f"T{doc_type}.xml"
    path.write_bytes(signed[doc_type].xml)
    result = xmlsec1_verify(path)
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout + result.stderr


@pytest.mark.parametrize("doc_type", [t for t in all_types() if not dte.is_boleta(t)])
def test_xmllint_validates_dte(doc_type: int, signed: dict[int, dte.SignedDte], xsd_dir: Path,
                               tmp_path: Path) -> None:
    path = tmp_path / f"T{doc_type}.xml"
    path.write_bytes(signed[doc_type].xml)
    result = xmllint_validate(path, xsd_dir / "DTE_v10.xsd")
    assert result.returncode == 0, result.stderr


def build_envelope(kind: str, signed: dict[int, dte.SignedDte], cert: dte.Certificate) -> bytes:
    if kind == "EnvioBOLETA":
        return dte.envelope([signed[39], signed[41]], cert, resolution_date="2014-08-22")
    factura_types = [t for t in all_types() if not dte.is_boleta(t)]
    return dte.envelope([signed[t] for t in factura_types], cert, resolution_date="2014-08-22",
                        resolution_number=0)


@pytest.mark.parametrize("kind,xsd", [("EnvioDTE", "EnvioDTE_v10.xsd"),
                                      ("EnvioBOLETA", "EnvioBOLETA_v11.xsd")])
def test_envelope_independently(kind: str, xsd: str, signed: dict[int, dte.SignedDte],
                                cert: dte.Certificate, xsd_dir: Path, tmp_path: Path) -> None:
    data = build_envelope(kind, signed, cert)
    path = tmp_path / f"{kind}.xml"
    path.write_bytes(data)

    # The SetDTE signature (the last one) verifies in place...
    xmlsec_verify(data, cert.pem, signature_index=-1)
    count = len(re.findall(rb"<Signature[ >]", data))
    result = xmlsec1_verify(path, signature_index=count)
    assert result.returncode == 0, result.stderr

    # ...and each DTE verifies standalone, as SII re-checks it.
    dtes = extract_dtes(data)
    assert len(dtes) == count - 1
    for i, one in enumerate(dtes):
        xmlsec_verify(one, cert.pem)
        single = tmp_path / f"dte{i}.xml"
        single.write_bytes(one)
        assert xmlsec1_verify(single).returncode == 0

    result = xmllint_validate(path, xsd_dir / xsd)
    assert result.returncode == 0, result.stderr
