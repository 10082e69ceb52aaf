"""reception.read_dte: a received DTE's content as typed values, for every type, on the real
samples, and refusing malformed, oversized and entity/DTD-carrying input."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

import dte_native as dte
from dte_native import reception
from dte_native.certify import xmlread
from conftest import ISSUER, SHARED, all_types, extract_dtes

EXPORTS = (110, 111, 112)
BOLETAS = (39, 41)


@pytest.mark.parametrize("doc_type", all_types())
def test_reads_every_generated_type(doc_type: int, signed: dict[int, dte.SignedDte]) -> None:
    example = dte.example(doc_type)
    content = reception.read_dte(signed[doc_type].xml)
    assert content.header.doc_type == doc_type
    assert content.header.folio == 1
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", content.header.issue_date)  # defaulted to today
    assert content.header.export is (doc_type in EXPORTS)
    assert content.issuer.rut == ISSUER
    assert content.issuer.name  # RznSoc or, on boletas, RznSocEmisor
    receptor = example["Encabezado"].get("Receptor")
    if receptor:
        assert content.receiver.rut == receptor["RUTRecep"]
    else:  # a boleta to an anonymous buyer: the signer puts a generic RUT
        assert dte.rut_is_valid(content.receiver.rut)
    totals = xmlread.totals(signed[doc_type].xml)  # what the signer computed
    assert content.totals.total == totals["MntTotal"] > 0
    assert (content.totals.net, content.totals.vat) == (totals.get("MntNeto", 0), totals.get("IVA", 0))
    details = example["Detalle"]
    assert [line.name for line in content.lines] == [d["NmbItem"] for d in details]
    for line, d in zip(content.lines, details):
        assert line.amount > 0  # MontoItem, computed by the signer when the example omits it
        assert line.quantity == float(d.get("QtyItem", 1) or 1)
        assert line.unit_price == float(d.get("PrcItem", 0))
        assert line.exempt is (str(d.get("IndExe", "")) in ("1", "2"))
    refs = example.get("Referencia", [])
    assert [(r.doc_type, r.folio) for r in content.references] == [
        (str(r["TpoDocRef"]), str(r.get("FolioRef", ""))) for r in refs]
    if doc_type in EXPORTS:
        assert content.totals.vat == 0


def test_lines_taxes_discounts_and_references(cafs: dict[int, dte.Caf], cert: dte.Certificate,
                                              keyring: dte.SiiKeyring) -> None:
    from conftest import document
    doc = document(33, folio=7)
    doc["Detalle"] = [
        {"NroLinDet": 1, "CdgItem": [{"TpoCodigo": "INT1", "VlrCodigo": "A-1"}], "NmbItem": "Vino",
         "DscItem": "Tinto", "QtyItem": 4, "PrcItem": 2500, "DescuentoPct": 10, "DescuentoMonto": 1000,
         "CodImpAdic": [27], "MontoItem": 9000},
        {"NroLinDet": 2, "IndExe": 1, "NmbItem": "Flete", "QtyItem": 1, "PrcItem": 3000, "MontoItem": 3000},
    ]
    doc["DscRcgGlobal"] = [{"NroLinDR": 1, "TpoMov": "D", "GlosaDR": "Cliente frecuente", "TpoValor": "%",
                            "ValorDR": 10}]
    doc["Referencia"] = [{"NroLinRef": 1, "TpoDocRef": "801", "FolioRef": "OC-55", "FchRef": "2025-01-02",
                          "RazonRef": "Orden de compra"}]
    xml = dte.sign(doc, cafs[33], cert, keyring=keyring).xml
    content = reception.read_dte(xml)
    wine, freight = content.lines
    assert (wine.name, wine.description, wine.quantity, wine.unit_price) == ("Vino", "Tinto", 4.0, 2500.0)
    assert (wine.discount_pct, wine.discount_amount, wine.tax_codes, wine.exempt) == (10.0, 1000.0, [27], False)
    assert wine.item_codes == [reception.DteItemCode("INT1", "A-1")]
    assert freight.exempt and freight.amount == 3000
    assert content.global_adjustments == [reception.DteGlobalAdjustment("D", "Cliente frecuente", "%", 10.0, False)]
    assert content.references == [reception.DteReference("801", "OC-55", "2025-01-02", "", "Orden de compra")]
    totals = xmlread.totals(xml)  # as the signer computed them: net 9000 - 10% = 8100
    assert (content.totals.net, content.totals.exempt, content.totals.vat_rate, content.totals.vat) == (
        8100.0, 3000.0, 19.0, totals["IVA"])
    rate = float(re.search(rb"<TasaImp>([\d.]+)</TasaImp>", xml).group(1))  # type: ignore[union-attr]
    assert [(t.code, t.rate) for t in content.totals.additional_taxes] == [(27, rate)]
    assert content.totals.additional_taxes[0].amount > 0


def _sample_dtes() -> list[tuple[str, bytes]]:
    samples = SHARED / "samples"
    if not samples.is_dir():
        return []
    out = []
    for path in sorted(samples.glob("*.xml")):
        data = path.read_bytes()
        if path.name.startswith("DTE--") or path.name.startswith("libredte-boleta"):
            out.append((path.name, data))
        elif b"<EnvioDTE" in data:  # skeleton DTEs (IdDoc only) are the test below's
            out += [(f"{path.name}#{i}", d) for i, d in enumerate(extract_dtes(data)) if b"<Totales" in d]
    return out


@pytest.mark.parametrize("name,data", _sample_dtes() or [pytest.param("", b"", marks=pytest.mark.skip(
    reason="../shared/sii/samples not available"))])
def test_reads_real_samples(name: str, data: bytes) -> None:
    content = reception.read_dte(data)
    assert content.header.doc_type in dte.supported_types()
    assert content.header.folio > 0
    assert dte.rut_is_valid(content.issuer.rut)
    assert content.lines and all(line.name for line in content.lines)
    assert content.totals.total > 0
    if name.startswith("DTE--"):  # DTE--RUT--TYPE--FOLIO
        _, rut, doc_type, folio = name.split("--")[:4]
        assert (content.issuer.rut, content.header.doc_type, content.header.folio) == (
            rut, int(doc_type), int(folio.split(".")[0]))
    if content.header.doc_type == 61:
        assert content.references


@pytest.mark.parametrize("name", ["libredte-unsigned.xml", "libredte-valid_signed.xml"])
def test_sample_skeleton_without_header_is_refused(name: str) -> None:
    path = SHARED / "samples" / name
    if not path.is_file():
        pytest.skip(f"{path} not available")
    (dte_xml,) = extract_dtes(path.read_bytes())
    with pytest.raises(dte.DocumentError) as e:  # IdDoc only: no Emisor, no Totales
        reception.read_dte(dte_xml)
    assert e.value.code == "dte.no_header"


XXE = b"""<?xml version="1.0"?>
<!DOCTYPE DTE [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<DTE xmlns="http://www.sii.cl/SiiDte"><Documento><Encabezado><IdDoc><TipoDTE>33</TipoDTE><Folio>1</Folio>
</IdDoc><Emisor><RUTEmisor>&xxe;</RUTEmisor></Emisor><Totales><MntTotal>1</MntTotal></Totales></Encabezado>
</Documento></DTE>"""
BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE DTE [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">]>
<DTE xmlns="http://www.sii.cl/SiiDte"><Documento><Encabezado><IdDoc><TipoDTE>33</TipoDTE><Folio>1</Folio>
</IdDoc><Emisor><RUTEmisor>&d;</RUTEmisor></Emisor><Totales><MntTotal>1</MntTotal></Totales></Encabezado>
</Documento></DTE>"""


@pytest.mark.parametrize("payload", [XXE, BILLION_LAUGHS], ids=["xxe", "entity_expansion"])
def test_refuses_dtd_and_entities(payload: bytes) -> None:
    with pytest.raises(dte.XmlSyntaxError) as e:
        reception.read_dte(payload)
    assert e.value.code == "xml.dtd"
    assert b"root:" not in str(e.value).encode()


@pytest.mark.parametrize("payload,error,code", [
    (b"not xml", dte.XmlSyntaxError, "xml.syntax"),
    (b"<DTE><Documento>", dte.XmlSyntaxError, "xml.syntax"),
    (b"<EnvioDTE xmlns='http://www.sii.cl/SiiDte'/>", dte.DocumentError, "dte.not_dte"),
    (b"<DTE xmlns='http://www.sii.cl/SiiDte'><Otro/></DTE>", dte.DocumentError, "dte.no_document"),
    (b"<DTE xmlns='http://www.sii.cl/SiiDte'><Documento><Encabezado/></Documento></DTE>",
     dte.DocumentError, "dte.no_header"),
    (b"<DTE xmlns='http://www.sii.cl/SiiDte'><Documento><Encabezado><IdDoc><TipoDTE>x</TipoDTE></IdDoc>"
     b"<Emisor/><Totales/></Encabezado></Documento></DTE>", dte.DocumentError, "dte.bad_number"),
], ids=["text", "truncated", "envelope", "no_document", "no_header", "bad_type"])
def test_malformed_input_raises_specific_errors(payload: bytes, error: type[dte.DteError], code: str) -> None:
    with pytest.raises(error) as e:
        reception.read_dte(payload)
    assert e.value.code == code


def test_tampered_number_and_oversized(signed: dict[int, dte.SignedDte]) -> None:
    xml = signed[33].xml.replace(b"<MntTotal>", b"<MntTotal>x", 1)
    with pytest.raises(dte.DocumentError, match="MntTotal"):
        reception.read_dte(xml)
    with pytest.raises(dte.XmlSyntaxError) as e:
        reception.read_dte(b"<DTE>" + b" " * reception.MAX_DTE_BYTES + b"</DTE>")
    assert e.value.code == "xml.too_large"
    with pytest.raises(TypeError):
        reception.read_dte("<DTE/>")  # type: ignore[arg-type]


def test_path_free_of_network(tmp_path: Path) -> None:
    """An external DTD reference is neither fetched nor accepted."""
    payload = b'<!DOCTYPE DTE SYSTEM "http://127.0.0.1:9/x.dtd"><DTE/>'
    with pytest.raises(dte.XmlSyntaxError):
        reception.read_dte(payload)
