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

    docs = tmp_path / "docs.json"
    docs.write_text(json.dumps([{"issuer_rut": "12345678-5", "doc_type": 33, "folio": 7, "total": 1190}]))
    rcv = tmp_path / "rcv.csv"
    rcv.write_text("Nro;Tipo Doc;Tipo Compra;RUT Proveedor;Razon Social;Folio;Fecha Docto;Fecha Recepcion;"
                   "Fecha Acuse;Monto Exento;Monto Neto;Monto IVA Recuperable;Monto Total\n"
                   "1;33;Del Giro;12345678-5;X;7;02/05/2024;;;0;1000;190;1191\n")
    assert cli.main(["books", "reconcile", str(docs), str(rcv), "--json"]) == 1
    result = json.loads(capsys.readouterr().out)
    assert [f["kind"] for f in result["findings"]] == ["amount_mismatch"]
