"""Books (IECV, guías, RVD), RCV parsing and reconciliation through the Python facade and the CLI;
signed books checked with xmllint (SII's XSDs), xmlsec1 and python-xmlsec."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

import dte_native as dte
from dte_native import books, cli

from conftest import ISSUER, SHARED, xmllint_validate, xmlsec_verify

BOOKS = SHARED / "books"
RCV = BOOKS / "rcv"


def caratula(op: str = "VENTA", **extra: Any) -> dict[str, Any]:
    c = {"RutEmisorLibro": ISSUER, "PeriodoTributario": "2024-05", "FchResol": "2014-08-22",
         "NroResol": 80, "TipoOperacion": op, "TipoLibro": "MENSUAL", "TipoEnvio": "TOTAL"}
    c.update(extra)
    return c


def check_signed(xml: bytes, tmp_path: Path, xsd_dir: Path, xsd: str, id_element: str) -> None:
    path = tmp_path / "book.xml"
    path.write_bytes(xml)
    r = xmllint_validate(path, xsd_dir / xsd)
    assert r.returncode == 0, r.stderr
    xmlsec_verify(xml)
    if shutil.which("xmlsec1"):
        r2 = subprocess.run(["xmlsec1", "--verify", "--insecure", "--id-attr:ID", id_element, str(path)],
                            capture_output=True, text=True, timeout=60)
        assert r2.returncode == 0, r2.stderr
    report = dte.verify(xml)
    assert report.ok, [(c.name, c.reason) for c in report.failures]


def test_libro_venta_totals_and_signature(cert: dte.Certificate, tmp_path: Path, xsd_dir: Path) -> None:
    book = {"Caratula": caratula(), "Detalle": [
        {"TpoDoc": 33, "NroDoc": 1, "FchDoc": "2024-05-02", "RUTDoc": "12345678-5", "MntNeto": 100000},
        {"TpoDoc": 33, "NroDoc": 2, "Anulado": "A"},
        {"TpoDoc": 61, "NroDoc": 4, "FchDoc": "2024-05-03", "RUTDoc": "12345678-5", "MntNeto": 50},
    ]}
    n = books.normalize_libro_cv(book)
    t33, t61 = n["ResumenPeriodo"]
    assert (t33["TotDoc"], t33["TotAnulado"], t33["TotMntIVA"], t33["TotMntTotal"]) == (1, 1, 19000, 119000)
    assert (t61["TotMntIVA"], t61["TotMntTotal"]) == (10, 60)
    xml = books.sign_libro_cv(book, cert, schemas=dte.schemas())
    assert xml.startswith(b'<?xml version="1.0" encoding="ISO-8859-1"?>')
    check_signed(xml, tmp_path, xsd_dir, "LibroCV_v10.xsd", "EnvioLibro")


def test_libro_rectifica_needs_code(cert: dte.Certificate) -> None:
    book = {"Caratula": caratula(TipoLibro="RECTIFICA"), "Detalle": []}
    with pytest.raises(dte.DocumentError) as e:
        books.normalize_libro_cv(book)
    assert e.value.code == "libro.caratula"
    book["Caratula"]["CodAutRec"] = "X1"
    assert b"<CodAutRec>X1</CodAutRec>" in books.sign_libro_cv(book, cert)


def test_libredte_ventas_csv_matches_their_book(cert: dte.Certificate, tmp_path: Path, xsd_dir: Path) -> None:
    path = BOOKS / "libredte" / "libro_ventas.csv"
    if not path.is_file():
        pytest.skip(f"{path} absent")
    entries = books.entries_from_csv(path)
    assert entries.issues == []
    n = books.normalize_libro_cv({"Caratula": caratula(), "Detalle": entries.detalle})
    assert [(t["TpoDoc"], t["TotDoc"], t["TotMntNeto"], t["TotMntIVA"], t["TotMntTotal"])
            for t in n["ResumenPeriodo"]] == [(33, 4, 1440818, 273756, 1762813),
                                              (61, 3, 751288, 142745, 928738), (56, 1, 0, 0, 0)]
    xml = books.sign_libro_cv({"Caratula": caratula(), "Detalle": entries.detalle}, cert)
    check_signed(xml, tmp_path, xsd_dir, "LibroCV_v10.xsd", "EnvioLibro")


def test_libro_guia_and_rvd(cert: dte.Certificate, tmp_path: Path, xsd_dir: Path) -> None:
    guia = {"Caratula": {"RutEmisorLibro": ISSUER, "PeriodoTributario": "2024-05", "FchResol": "2014-08-22",
                         "NroResol": 80, "FolioNotificacion": 3},
            "Detalle": [{"Folio": 1, "TpoOper": 1, "MntNeto": 1000, "FchDoc": "2024-05-02"},
                        {"Folio": 2, "Anulado": 1}]}
    n = books.normalize_libro_guia(guia)
    assert n["ResumenPeriodo"] == {"TotFolAnulado": 1, "TotGuiaVenta": 1, "TotMntGuiaVta": 1190}
    check_signed(books.sign_libro_guia(guia, cert), tmp_path, xsd_dir, "LibroGuia_v10.xsd", "EnvioLibro")

    rvd = {"Caratula": {"RutEmisor": ISSUER, "FchResol": "2014-08-22", "NroResol": 80,
                        "FchInicio": "2024-05-10"},
           "Documentos": [{"TipoDTE": 39, "Folio": f, "MntTotal": 1190} for f in (10, 11, 13)],
           "Anulados": [{"TipoDTE": 39, "Folio": 12}]}
    r = books.normalize_consumo_folios(rvd)["Resumen"][0]
    assert (r["MntNeto"], r["MntIva"], r["MntTotal"]) == (3000, 570, 3570)
    assert (r["FoliosEmitidos"], r["FoliosAnulados"], r["FoliosUtilizados"]) == (3, 1, 4)
    assert r["RangoUtilizados"] == [{"Inicial": 10, "Final": 11}, {"Inicial": 13, "Final": 13}]
    check_signed(books.sign_consumo_folios(rvd, cert), tmp_path, xsd_dir, "ConsumoFolio_v10.xsd",
                 "DocumentoConsumoFolios")
    empty = {"Caratula": rvd["Caratula"]}
    assert books.normalize_consumo_folios(empty)["Resumen"] == [
        {"TipoDocumento": 39, "MntTotal": 0, "FoliosEmitidos": 0, "FoliosAnulados": 0, "FoliosUtilizados": 0}]
    check_signed(books.sign_consumo_folios(empty, cert), tmp_path, xsd_dir, "ConsumoFolio_v10.xsd",
                 "DocumentoConsumoFolios")


def test_segmented_libro_cv_totals_and_schema(cert: dte.Certificate, tmp_path: Path, xsd_dir: Path) -> None:
    detalle = []
    for i in range(1, 251):
        doc_type = 61 if i % 10 == 0 else 33
        entry: dict[str, Any] = {"TpoDoc": doc_type, "NroDoc": i, "FchDoc": "2024-05-02", "RUTDoc": "12345678-5",
                                 "MntNeto": 1000 + i}
        if i % 7 == 0:
            entry["MntExe"] = 50
        detalle.append(entry)
    detalle.append({"TpoDoc": 33, "NroDoc": 999, "Anulado": "A"})
    book = {"Caratula": caratula(op="COMPRA"), "Detalle": detalle}
    whole = books.normalize_libro_cv(book)["ResumenPeriodo"]

    segments = books.segment_libro_cv(book, 100)
    assert [s["Caratula"]["TipoEnvio"] for s in segments] == ["PARCIAL", "PARCIAL", "FINAL"]
    assert [s["Caratula"]["NroSegmento"] for s in segments] == [1, 2, 3]
    assert [len(s["Detalle"]) for s in segments] == [100, 100, 51]
    normalized = [books.normalize_libro_cv(s) for s in segments]
    # Each segment totals its own detail; the segments add up to the period; only FINAL has the period.
    assert "ResumenPeriodo" not in normalized[0] and "ResumenPeriodo" not in normalized[1]
    assert normalized[2]["ResumenPeriodo"] == whole
    for key in ("TotDoc", "TotAnulado", "TotMntExe", "TotMntNeto", "TotMntIVA", "TotMntTotal"):
        for period in whole:
            parts = [t.get(key, 0) for n in normalized for t in n["ResumenSegmento"] if t["TpoDoc"] == period["TpoDoc"]]
            assert sum(parts) == period.get(key, 0), (key, period["TpoDoc"])
    # By hand: type 61 = folios 10, 20, ... 250 (25 documents), neto 1000 + i, IVA 19% half up.
    t61 = next(t for t in whole if t["TpoDoc"] == 61)
    neto61 = sum(1000 + i for i in range(10, 251, 10))
    assert (t61["TotDoc"], t61["TotMntNeto"]) == (25, neto61)
    assert t61["TotMntIVA"] == sum(((1000 + i) * 19 + 50) // 100 for i in range(10, 251, 10))

    signed = books.sign_libro_cv_segments(book, cert, 100, schemas=dte.schemas())
    assert len(signed) == 3
    for n, xml in enumerate(signed, start=1):
        assert f'ID="LC_2024-05_S{n}"'.encode() in xml
        assert f"<NroSegmento>{n}</NroSegmento>".encode() in xml
        assert b"<ResumenSegmento>" in xml and (b"<ResumenPeriodo>" in xml) == (n == 3)
        check_signed(xml, tmp_path, xsd_dir, "LibroCV_v10.xsd", "EnvioLibro")

    # Small enough: one TOTAL book, as before.
    assert [s["Caratula"]["TipoEnvio"] for s in books.segment_libro_cv(book, 1000)] == ["TOTAL"]
    # A FINAL segment without the period's totals, or a segment without its number, is refused.
    final = dict(segments[2])
    del final["ResumenPeriodo"]
    with pytest.raises(dte.DocumentError):
        books.normalize_libro_cv(final)
    with pytest.raises(dte.DocumentError):
        books.normalize_libro_cv({"Caratula": caratula(TipoEnvio="PARCIAL"), "Detalle": detalle[:3]})


def test_libro_compra_purchase_columns(cert: dte.Certificate, tmp_path: Path, xsd_dir: Path) -> None:
    """A purchase book with every kind of purchase VAT; totals computed by hand (IVA 19 %, half up)."""
    book = {"Caratula": caratula(op="COMPRA"), "FctProp": 60, "Detalle": [
        # Non-recoverable (code 1, no amount): the whole IVA 19000 is not recoverable.
        {"TpoDoc": 33, "NroDoc": 100, "FchDoc": "2024-05-02", "RUTDoc": "12345678-5", "MntNeto": 100000,
         "IVANoRec": [{"CodIVANoRec": 1}]},
        # Shared use: 9500 is IVA de uso común, nothing left as recoverable MntIVA.
        {"TpoDoc": 33, "NroDoc": 101, "FchDoc": "2024-05-03", "RUTDoc": "12345678-5", "MntNeto": 50000,
         "IVAUsoComun": 9500},
        # Fixed asset: its net and IVA are part of MntNeto / MntIVA and not added again.
        {"TpoDoc": 33, "NroDoc": 102, "FchDoc": "2024-05-04", "RUTDoc": "12345678-5", "MntNeto": 200000,
         "MntActivoFijo": 200000, "MntIVAActivoFijo": 38000},
        # Exempt part, ILA 10 % (code 27) and 1700 of the 5700 IVA not recoverable (code 2).
        {"TpoDoc": 33, "NroDoc": 103, "FchDoc": "2024-05-05", "RUTDoc": "12345678-5", "MntExe": 5000,
         "MntNeto": 30000, "IVANoRec": [{"CodIVANoRec": 2, "MntIVANoRec": 1700}],
         "OtrosImp": [{"CodImp": 27, "TasaImp": 10}]},
        {"TpoDoc": 33, "NroDoc": 104, "Anulado": "A"},
        # Factura de compra with IVA retenido total: OtrosImp 15 (PROTOCOL.md section 11).
        {"TpoDoc": 46, "NroDoc": 7, "FchDoc": "2024-05-06", "RUTDoc": "12345678-5", "MntNeto": 10000,
         "OtrosImp": [{"CodImp": 15, "TasaImp": 19}]},
        {"TpoDoc": 61, "NroDoc": 5, "FchDoc": "2024-05-07", "RUTDoc": "12345678-5", "MntNeto": 10000,
         "IVANoRec": [{"CodIVANoRec": 9}]},
    ]}
    n = books.normalize_libro_cv(book)
    d = n["Detalle"]
    assert (d[0]["MntIVA"], d[0]["IVANoRec"], d[0]["MntTotal"]) == (
        0, [{"CodIVANoRec": 1, "MntIVANoRec": 19000}], 119000)
    assert (d[1]["MntIVA"], d[1]["MntTotal"]) == (0, 59500)
    assert (d[2]["MntIVA"], d[2]["MntTotal"]) == (38000, 238000)
    assert (d[3]["MntIVA"], d[3]["OtrosImp"][0]["MntImp"], d[3]["MntTotal"]) == (4000, 3000, 43700)
    assert (d[5]["MntIVA"], d[5]["OtrosImp"][0]["MntImp"], d[5]["MntTotal"]) == (1900, 1900, 11900)
    t33, t46, t61 = n["ResumenPeriodo"]
    assert t33 == {
        "TpoDoc": 33, "TotDoc": 4, "TotAnulado": 1, "TotOpExe": 1, "TotMntExe": 5000, "TotMntNeto": 380000,
        "TotOpIVARec": 2, "TotMntIVA": 42000, "TotOpActivoFijo": 1, "TotMntActivoFijo": 200000,
        "TotMntIVAActivoFijo": 38000,
        "TotIVANoRec": [{"CodIVANoRec": 1, "TotOpIVANoRec": 1, "TotMntIVANoRec": 19000},
                        {"CodIVANoRec": 2, "TotOpIVANoRec": 1, "TotMntIVANoRec": 1700}],
        "TotOpIVAUsoComun": 1, "TotIVAUsoComun": 9500, "FctProp": 60, "TotCredIVAUsoComun": 5700,
        "TotOtrosImp": [{"CodImp": 27, "TotMntImp": 3000}],
        "TotMntTotal": 119000 + 59500 + 238000 + 43700}
    assert (t46["TotMntNeto"], t46["TotMntIVA"], t46["TotOtrosImp"], t46["TotMntTotal"]) == (
        10000, 1900, [{"CodImp": 15, "TotMntImp": 1900}], 11900)
    assert (t61["TotMntIVA"], t61["TotIVANoRec"], t61["TotMntTotal"]) == (
        0, [{"CodIVANoRec": 9, "TotOpIVANoRec": 1, "TotMntIVANoRec": 1900}], 11900)
    xml = books.sign_libro_cv(book, cert, schemas=dte.schemas())
    assert b"<FctProp>60.000</FctProp>" in xml and b"<TotCredIVAUsoComun>5700</TotCredIVAUsoComun>" in xml
    check_signed(xml, tmp_path, xsd_dir, "LibroCV_v10.xsd", "EnvioLibro")

    # The same book in segments of 3: the segments' own totals add up to the period's.
    segments = [books.normalize_libro_cv(s) for s in books.segment_libro_cv(book, 3)]
    assert segments[-1]["ResumenPeriodo"] == n["ResumenPeriodo"]
    no_rec = sum(e["TotMntIVANoRec"] for s in segments for t in s["ResumenSegmento"] for e in t.get("TotIVANoRec", []))
    assert no_rec == 19000 + 1700 + 1900
    assert sum(t.get("TotIVAUsoComun", 0) for s in segments for t in s["ResumenSegmento"]) == 9500
    for xml in books.sign_libro_cv_segments(book, cert, 3, schemas=dte.schemas()):
        check_signed(xml, tmp_path, xsd_dir, "LibroCV_v10.xsd", "EnvioLibro")

    bad = {"Caratula": caratula(op="COMPRA"), "Detalle": [
        {"TpoDoc": 33, "NroDoc": 1, "MntNeto": 100, "IVANoRec": [{"CodIVANoRec": 5}]}]}
    with pytest.raises(dte.DocumentError, match=r"Detalle\[0\]\.IVANoRec\[0\]\.CodIVANoRec"):
        books.normalize_libro_cv(bad)


def test_libro_venta_retained_vat_and_tobacco(cert: dte.Certificate, tmp_path: Path, xsd_dir: Path) -> None:
    """Sales book: facturas de compra (46) with IVA retenido total / parcial, and tobacco columns."""
    book = {"Caratula": caratula(), "Detalle": [
        {"TpoDoc": 33, "NroDoc": 1, "FchDoc": "2024-05-02", "RUTDoc": "12345678-5", "MntNeto": 100000},
        {"TpoDoc": 46, "NroDoc": 2, "FchDoc": "2024-05-02", "RUTDoc": "12345678-5", "MntNeto": 10000,
         "IVARetTotal": 1900},
        {"TpoDoc": 46, "NroDoc": 3, "FchDoc": "2024-05-03", "RUTDoc": "12345678-5", "MntNeto": 20000,
         "IVARetParcial": 1000},
        {"TpoDoc": 33, "NroDoc": 4, "FchDoc": "2024-05-04", "RUTDoc": "12345678-5", "MntNeto": 10000,
         "TabCigarrillos": 5000, "TabPuros": 700},
    ]}
    n = books.normalize_libro_cv(book)
    d = n["Detalle"]
    # The retained IVA is paid by the issuer of the 46: it leaves the amount payable.
    assert [e["MntTotal"] for e in d] == [119000, 11900 - 1900, 23800 - 1000, 11900]
    t33, t46 = n["ResumenPeriodo"]
    assert (t33["TotMntNeto"], t33["TotMntIVA"], t33["TotTabCigarrillos"], t33["TotTabPuros"],
            t33["TotMntTotal"]) == (110000, 20900, 5000, 700, 130900)
    assert "TotOpIVARec" not in t33  # operation counts are for purchases
    assert (t46["TotDoc"], t46["TotMntNeto"], t46["TotMntIVA"], t46["TotOpIVARetTotal"], t46["TotIVARetTotal"],
            t46["TotOpIVARetParcial"], t46["TotIVARetParcial"], t46["TotMntTotal"]) == (
        2, 30000, 5700, 1, 1900, 1, 1000, 10000 + 22800)
    check_signed(books.sign_libro_cv(book, cert, schemas=dte.schemas()), tmp_path, xsd_dir, "LibroCV_v10.xsd",
                 "EnvioLibro")


def test_segmented_libro_guia(cert: dte.Certificate, tmp_path: Path, xsd_dir: Path) -> None:
    guia = {"Caratula": {"RutEmisorLibro": ISSUER, "PeriodoTributario": "2024-05", "FchResol": "2014-08-22",
                         "NroResol": 80, "FolioNotificacion": 3},
            "Detalle": [{"Folio": f, "TpoOper": 1 if f % 3 else 5, "MntNeto": 1000, "FchDoc": "2024-05-02"}
                        for f in range(1, 8)] + [{"Folio": 8, "Anulado": 1}]}
    whole = books.normalize_libro_guia(guia)["ResumenPeriodo"]
    segments = books.segment_libro_guia(guia, 3)
    assert [s["Caratula"]["TipoEnvio"] for s in segments] == ["PARCIAL", "PARCIAL", "FINAL"]
    normalized = [books.normalize_libro_guia(s) for s in segments]
    assert sum(n["ResumenSegmento"]["TotGuiaVenta"] for n in normalized) == whole["TotGuiaVenta"] == 5
    assert sum(n["ResumenSegmento"]["TotMntGuiaVta"] for n in normalized) == whole["TotMntGuiaVta"] == 5950
    assert normalized[2]["ResumenPeriodo"] == whole
    for xml in books.sign_libro_guia_segments(guia, cert, 3, schemas=dte.schemas()):
        check_signed(xml, tmp_path, xsd_dir, "LibroGuia_v10.xsd", "EnvioLibro")


# ---- RCV


def rcv_files() -> list[Path]:
    return sorted(RCV.glob("*.csv")) if RCV.is_dir() else []


@pytest.mark.parametrize("path", rcv_files(), ids=lambda p: p.name)
def test_every_rcv_sample_parses(path: Path) -> None:
    result = books.parse_rcv(path)
    assert result.register_kind == ("venta" if "venta" in path.name else "compra")
    assert result.rows
    for row in result.rows:
        assert row.counterpart_name == row.counterpart_name.strip()
        assert len(row.issue_date) == 10 and row.folio > 0
    for e in result.errors:
        assert e.row > 1 and e.message


def test_rcv_quirks() -> None:
    if not RCV.is_dir():
        pytest.skip(f"{RCV} absent")
    extra = books.parse_rcv(RCV / "RCV-venta-extra-empty-impuestos-rows.csv")
    assert len(extra.rows) == 5 and not extra.errors
    assert [t.code for t in extra.rows[0].other_taxes] == ["27", "271"]
    refs = books.parse_rcv(RCV / "RCV-venta-multiple-dte-referencias.csv")
    assert [r.folio for r in refs.rows[2].references] == [200, 300, 400]
    bad = books.parse_rcv(RCV / "RCV-venta-validation-errors.csv")
    assert {(e.row, e.column) for e in bad.errors} == {
        (5, "Tipo Docto. Referencia"), (6, "Folio Docto. Referencia"), (7, "Folio"),
        (8, "Folio Docto. Referencia")}
    assert [r.folio for r in bad.rows] == [3210, 14395]
    ni = books.parse_rcv(RCV / "RCV-compra-no_incluir-rz_leading_trailing_whitespace.csv", state="no_incluir")
    assert ni.state == "NO_INCLUIR"


def test_reconcile_kinds() -> None:
    csv = ("Nro;Tipo Doc;Tipo Venta;Rut cliente;Razon Social;Folio;Fecha Docto;Monto Exento;Monto Neto;"
           "Monto IVA;Monto total\n"
           "1;33;Del Giro;12345678-5;A;1;01/05/2024;0;1000;190;1190\n"
           "2;33;Del Giro;12345678-5;A;2;01/05/2024;0;1000;190;1190\n"
           "3;33;Del Giro;12345678-5;A;3;01/05/2024;0;1000;190;1190\n")
    rows = books.parse_rcv(csv).rows
    docs = [books.LocalDocument(ISSUER, 33, 1, total=1190, vat=190),
            books.LocalDocument(ISSUER, 33, 2, total=1200, vat=200, reference="inv/2"),
            {"issuer_rut": ISSUER, "doc_type": 33, "folio": 9, "total": 5}]
    found = books.reconcile(rows, docs, owner_rut=ISSUER)
    assert sorted((f.kind, f.folio) for f in found) == [
        ("amount_mismatch", 2), ("missing_in_rcv", 9), ("missing_locally", 3), ("tax_mismatch", 2)]
    assert next(f for f in found if f.kind == "tax_mismatch").reference == "inv/2"


# ---- CLI


def test_cli_rcv_parse_json(capsys: pytest.CaptureFixture[str]) -> None:
    path = RCV / "RCV-venta-validation-errors.csv"
    if not path.is_file():
        pytest.skip(f"{path} absent")
    code = cli.main(["books", "rcv-parse", str(path), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 1  # it worked and found malformed rows
    assert len(out["rows"]) == 2 and len(out["errors"]) == 4


def test_cli_libro_and_reconcile(kit: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                 xsd_dir: Path) -> None:
    book = tmp_path / "book.json"
    book.write_text(json.dumps({"Caratula": caratula("COMPRA")}))
    csv = tmp_path / "detalle.csv"
    csv.write_text("TpoDoc;NroDoc;RUTDoc;FchDoc;MntNeto\n33;7;12345678-5;2024-05-02;1000\n")
    assert cli.main(["books", "libro", "cv", str(book), "--csv", str(csv), "--summary"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["ResumenPeriodo"][0]["TotMntTotal"] == 1190
    out = tmp_path / "libro.xml"
    assert cli.main(["books", "libro", "cv", str(book), "--csv", str(csv), "--cert", str(kit.cert_path),
                     "--password-file", str(kit.password_file), "-o", str(out)]) == 0
    assert xmllint_validate(out, xsd_dir / "LibroCV_v10.xsd").returncode == 0
    # In segments of one entry: two rows, two signed segment files.
    csv.write_text(csv.read_text() + "33;8;12345678-5;2024-05-03;2000\n")
    assert cli.main(["books", "libro", "cv", str(book), "--csv", str(csv), "--segment-size", "1",
                     "--cert", str(kit.cert_path), "--password-file", str(kit.password_file), "-o", str(out)]) == 0
    capsys.readouterr()
    for n, envio in ((1, b"PARCIAL"), (2, b"FINAL")):
        part = tmp_path / f"libro-{n}.xml"
        assert b"<TipoEnvio>" + envio in part.read_bytes()
        assert xmllint_validate(part, xsd_dir / "LibroCV_v10.xsd").returncode == 0

    docs = tmp_path / "docs.json"
    docs.write_text(json.dumps([{"issuer_rut": "12345678-5", "doc_type": 33, "folio": 7, "total": 1190}]))
    rcv = tmp_path / "rcv.csv"
    rcv.write_text("Nro;Tipo Doc;Tipo Compra;RUT Proveedor;Razon Social;Folio;Fecha Docto;Fecha Recepcion;"
                   "Fecha Acuse;Monto Exento;Monto Neto;Monto IVA Recuperable;Monto Total\n"
                   "1;33;Del Giro;12345678-5;X;7;02/05/2024;;;0;1000;190;1191\n")
    assert cli.main(["books", "reconcile", str(docs), str(rcv), "--json"]) == 1
    result = json.loads(capsys.readouterr().out)
    assert [f["kind"] for f in result["findings"]] == ["amount_mismatch"]


# ---- RCV download from the simulator over real HTTP ----------------------------------------

RECEIVER = "77123456-9"  # RUTRecep of the shipped examples


@pytest.fixture()
def rcv_sim(kit: Any) -> Any:
    import simkit

    sim_mod = simkit.load_simulator()
    s = sim_mod.Simulator(port=0, xsd_dir=simkit.xsd_dir(), sii_keys=kit.sii_keys_dir,
                          config={"step_delay_s": 0})
    s.start()
    yield s
    s.stop()


def _sim_admin(sim: Any, path: str, body: dict[str, Any] | None = None) -> Any:
    import urllib.request

    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(sim.url + path, data=data, method="POST" if data is not None else "GET",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def test_rcv_download_sales_and_purchases_by_state(rcv_sim: Any, kit: Any, cafs: dict[int, dte.Caf],
                                                   cert: dte.Certificate, keyring: dte.SiiKeyring,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from conftest import document
    from dte_native import sii

    client = sii.SiiClient(cert, sii.ClientConfig("simulator", base_url=rcv_sim.url, timeout_s=5.0,
                                                  connect_timeout_s=2.0, base_delay_s=0.02, max_delay_s=0.2))
    signed = []
    for folio, doc_type in ((461, 33), (462, 33), (463, 33), (461, 34)):
        d = document(doc_type, folio)
        d["Encabezado"]["IdDoc"]["FchEmis"] = "2025-03-10"
        signed.append(dte.sign(d, cafs[doc_type], cert, keyring=keyring))
    up = client.upload(dte.envelope(signed, cert, resolution_date="2014-08-22", resolution_number=0))
    assert client.wait_final(up.track_id, ISSUER, poll_s=0.1, timeout_s=20).state == "accepted"

    # Sales of the issuer: every accepted document, parsed by the existing RCV parser.
    ventas = books.download_rcv(client, ISSUER, "2025-03", "ventas")
    assert ventas.kind == "ventas" and ventas.state == "REGISTRO"
    assert not ventas.parsed.errors, ventas.parsed.errors
    assert sorted((r.doc_type, r.folio) for r in ventas.rows) == [(33, 461), (33, 462), (33, 463), (34, 461)]
    by_folio = {(r.doc_type, r.folio): r for r in ventas.rows}
    for s in signed:
        row = by_folio[(s.doc_type, s.folio)]
        assert row.total == s.total and row.counterpart_rut == RECEIVER
        assert row.counterpart_name == row.counterpart_name.strip() != ""  # SII's padding trimmed
    summary = {t.doc_type: t for t in ventas.summary}
    assert summary[33].documents == 3 and summary[34].documents == 1
    assert summary[33].total == sum(s.total for s in signed if s.doc_type == 33)
    assert ventas.csv.startswith(b"Nro;Tipo Doc;Tipo Venta;")
    assert ventas.requests == 3  # summary + one export per type

    # Purchases of the receiver: pending until it acts, then registered or claimed.
    pending = books.download_rcv(client, RECEIVER, "2025-03", "compras", state="pending")
    assert pending.state == "PENDIENTE" and len(pending.rows) == 4
    assert {r.issuer_rut for r in pending.rows} == {ISSUER} and all(r.state == "PENDIENTE" for r in pending.rows)
    assert client.claim(ISSUER, 33, 461, "ACD").ok
    assert client.claim(ISSUER, 33, 462, "RCD").ok
    registered = books.download_rcv(client, RECEIVER, "2025-03", "compras")
    claimed = books.download_rcv(client, RECEIVER, "2025-03", "compras", state="RECLAMADO")
    not_included = books.download_rcv(client, RECEIVER, "2025-03", "compras", state="not_included")
    assert [(r.folio, r.state) for r in registered.rows] == [(461, "REGISTRO")]
    assert registered.rows[0].acknowledged_at
    assert [(r.folio, r.state) for r in claimed.rows] == [(462, "RECLAMADO")]
    assert claimed.rows[0].claimed_at
    assert not not_included.rows and not not_included.parsed.errors
    assert len(books.download_rcv(client, RECEIVER, "2025-03", "compras", state="pending").rows) == 2
    # Eight days later the silent ones count as accepted (tacit acceptance).
    _sim_admin(rcv_sim, "/_sim/clock", {"advance_days": 9})
    assert len(books.download_rcv(client, RECEIVER, "2025-03", "compras").rows) == 3
    # Another period: empty, not an error.
    assert books.download_rcv(client, ISSUER, "2025-04", "ventas").rows == []

    # Token revoked at SII: renewed once and the download completes; a 503 is retried.
    _sim_admin(rcv_sim, "/_sim/revoke", {})
    _sim_admin(rcv_sim, "/_sim/config", {"faults": [{"service": "rcv", "kind": "http_error", "status": 503,
                                                     "count": 1}]})
    again = books.download_rcv(client, ISSUER, "2025-03", "ventas", doc_types=[34])
    assert [(r.doc_type, r.folio) for r in again.rows] == [(34, 461)]

    # Bad requests are refused before anything is sent.
    for kwargs in ({"period": "2025-13", "kind": "ventas"}, {"period": "2025-03", "kind": "boletas"},
                   {"period": "2025-03", "kind": "ventas", "state": "PENDIENTE"}):
        with pytest.raises(dte.DteError) as e:
            books.download_rcv(client, ISSUER, **kwargs)  # type: ignore[arg-type]
        assert e.value.code == "rcv.bad_request"

    # The CLI over the same simulator.
    code = cli.main(["books", "rcv-download", "--company", RECEIVER, "--period", "2025-03", "--kind", "compras",
                     "--state", "reclamado", "--env", "simulator", "--url", rcv_sim.url,
                     "--cert", str(kit.cert_path), "--password-file", str(kit.password_file), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert out["state"] == "RECLAMADO" and [r["folio"] for r in out["rows"]] == [462]

    # A signer SII does not let read the company's register: SII's answer, not a crash or a retry loop.
    from dte_native.errors import SiiRejected

    _sim_admin(rcv_sim, "/_sim/config", {"authorized": {RECEIVER: ["22222222-2"]}})  # not our signer
    with pytest.raises(SiiRejected) as denied:
        books.download_rcv(client, RECEIVER, "2025-03", "compras")
    assert denied.value.code == "sii.rcv.2"
