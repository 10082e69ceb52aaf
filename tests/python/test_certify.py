"""`dte certify`: SII's certification sets (../shared/sii/sets) parsed, built, signed, checked,
sent to the local simulator; totals checked against the sets' own numbers computed here
independently of the builder; broken copies of the sets give errors naming file, case and line."""
from __future__ import annotations

import copy
import io
import json
import shutil
import subprocess
from contextlib import redirect_stderr, redirect_stdout
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest

import dte_native as dte
from dte_native import certify, cli, testkit
from dte_native.certify import xmlread
from dte_native.certify.parser import Case
from dte_native.certify.parser import TestSet as SetOfCases

from conftest import SHARED

SETS = SHARED / "sets"
ISSUER = testkit.DEFAULT_ISSUER_RUT
SUPPLIER_RUT = "96670340-7"  # issuer of the EnvioDTE "SII" sends for the exchange step

pytestmark = pytest.mark.skipif(not SETS.is_dir(), reason=f"{SETS} is absent")


def set_files() -> list[Path]:
    return sorted(p for p in SETS.glob("0*") if p.is_file())


def hr(x: Decimal, places: int = 0) -> Decimal:
    return x.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


# --- independent arithmetic on the sets' raw numbers (not the builder) ---------------------------


def line_amount(qty: Decimal | None, price: Decimal | None, disc: Decimal | None, surcharge: Decimal | None,
                places: int) -> Decimal:
    if price is None:
        return Decimal(0)
    gross = hr((qty if qty is not None else Decimal(1)) * price, places)
    out = gross
    if disc:
        out -= hr(gross * disc / 100, places)
    if surcharge:
        out += hr(gross * surcharge / 100, places)
    return out


def raw_lines(case: Case, cases: dict[str, Case]) -> list[tuple[Decimal, bool]]:
    """(amount, exempt) of each line of a case, notes resolved against the case they modify."""
    places = 2 if case.doc_type in (110, 111, 112) else 0
    if case.doc_type not in (56, 61, 111, 112):
        out = []
        for i, ln in enumerate(case.lines, 1):
            disc = case.line_discounts.get(i, ln.discount_pct)
            sur = case.line_surcharge_pct if case.line_surcharge_pct is not None else ln.surcharge_pct
            out.append((line_amount(ln.qty, ln.price, disc, sur, places), ln.exempt))
        return out
    target = cases[case.ref_case]
    if not case.lines:
        return [] if case.cod_ref == 2 else raw_lines(target, cases)
    out = []
    for ln in case.lines:
        src = next(t for t in target.lines if t.name.strip() == ln.name.strip()) if target.lines else None
        if src is None:  # the target is itself a note: find the original line through it
            src = next(t for t in cases[target.ref_case].lines if t.name.strip() == ln.name.strip())
        qty = ln.qty if ln.qty is not None else src.qty
        if ln.price is not None:
            out.append((line_amount(qty, ln.price, None, None, places), src.exempt))
        else:
            out.append((line_amount(qty, src.price, src.discount_pct, src.surcharge_pct, places), src.exempt))
    return out


def root_of(case: Case, cases: dict[str, Case]) -> Case:
    while case.ref_case:
        case = cases[case.ref_case]
    return case


def expected_totals(case: Case, cases: dict[str, Case]) -> dict[str, Decimal]:
    lines = raw_lines(case, cases)
    root = root_of(case, cases)
    adjustments = root.adjustments if (not case.ref_case or (case.cod_ref == 1 and not case.lines)) else []
    if root.doc_type in (110, 111, 112):
        total = sum((a for a, _ in lines), Decimal(0))
        for adj in adjustments:
            if adj.of_clause:
                total += hr(Decimal(root.export["TOTAL CLAUSULA DE VENTA"]) * adj.value / 100, 2)
        return {"MntExe": total, "MntTotal": total}
    if root.doc_type == 34:
        total = sum((a for a, _ in lines), Decimal(0))
        return {"MntExe": total, "MntTotal": total}
    affected = sum((a for a, e in lines if not e), Decimal(0))
    exempt = sum((a for a, e in lines if e), Decimal(0))
    for adj in adjustments:
        share = hr(affected * adj.value / 100) if adj.percent else adj.value
        affected += -share if adj.move == "D" else share
    iva = hr(affected * Decimal("0.19"))
    total = affected + exempt + iva
    if root.doc_type == 46:
        total -= iva  # retención total del IVA (CodImpAdic 15): the buyer withholds it
    out = {"MntNeto": affected, "IVA": iva, "MntTotal": total}
    if exempt:
        out["MntExe"] = exempt
    return out


# --- material and one full run ---------------------------------------------------------------------


def company_json(path: Path) -> Path:
    emisor = copy.deepcopy(dte.example(33)["Encabezado"]["Emisor"])
    emisor["RUTEmisor"] = ISSUER
    path.write_text(json.dumps({"Emisor": emisor, "FchResol": "2014-08-22", "NroResol": 0,
                                "UnidadSII": "SANTIAGO ORIENTE"}, ensure_ascii=False), encoding="utf-8")
    return path


def exchange_envelope(kit: testkit.TestKit, out: Path) -> Path:
    """An EnvioDTE from a supplier to our company, as SII sends for the exchange step."""
    sii_private = kit.sii_private_key_path.read_text(encoding="ascii")
    caf = dte.Caf.parse(testkit.make_caf(SUPPLIER_RUT, 33, sii_private, folio_from=1, folio_to=10))
    doc = copy.deepcopy(dte.example(33))
    doc["Encabezado"]["Emisor"]["RUTEmisor"] = SUPPLIER_RUT
    doc["Encabezado"]["Receptor"]["RUTRecep"] = ISSUER
    signed = dte.sign(doc, caf, kit.certificate(), keyring=kit.keyring())
    env = dte.envelope([signed], kit.certificate(), receiver=ISSUER)
    out.write_bytes(env)
    return out


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = cli.main(argv)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def material(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("certify")
    kit = testkit.write_kit(root / "kit", rut=ISSUER, folio_from=1, folio_to=200)
    return {"root": root, "kit": kit, "company": company_json(root / "company.json"),
            "exchange": exchange_envelope(kit, root / "envio-de-sii.xml")}


def base_args(m: dict[str, Any]) -> list[str]:
    kit = m["kit"]
    args = ["--company", str(m["company"]), "--cert", str(kit.cert_path),
            "--password-file", str(kit.password_file), "--sii-keys", str(kit.sii_keys_dir)]
    for path in kit.caf_paths.values():
        args += ["--caf", str(path)]
    return args


@pytest.fixture(scope="module")
def full_run(material: dict[str, Any]) -> dict[str, Any]:
    """Every shared set, the simulation and the exchange in one `dte certify`, sent to the
    in-process simulator."""
    if dte.schema_dir() is None:
        pytest.skip("SII XSDs not available")
    out = material["root"] / "out"
    code, stdout, stderr = run_cli(["certify", *map(str, set_files()), *base_args(material), "--out", str(out),
                                    "--simulation", "--exchange", str(material["exchange"]), "--json"])
    report = json.loads(stdout)
    return {"code": code, "report": report, "out": out, "stderr": stderr,
            "state": json.loads((out / "state.json").read_text(encoding="utf-8"))}


# --- the parser --------------------------------------------------------------------------------------


def test_every_shared_set_parses() -> None:
    kinds = {p.name: certify.parse_set(p).kind for p in set_files()}
    assert kinds["001-basico.txt"] == "documents"
    assert kinds["002-ventas.txt"] == "sales_book"
    assert kinds["003-compras.txt"] == "purchase_book"
    assert kinds["006-libro_guias.txt"] == "guide_book"
    assert kinds["007-boletas.csv"] == "boletas"


def test_basic_set_cases_as_written() -> None:
    s = certify.parse_set(SETS / "001-basico.txt")
    assert [c.case_id for c in s.cases] == [f"414175-{n}" for n in range(1, 9)]
    assert [c.doc_type for c in s.cases] == [33, 33, 33, 33, 61, 61, 61, 56]
    c2 = s.cases[1]
    assert c2.lines[0].name == "Pañuelo AFECTO"  # ISO-8859-1 file
    assert (c2.lines[0].qty, c2.lines[0].price, c2.lines[0].discount_pct) == (235, 1926, 4)
    assert s.cases[2].lines[2].exempt and s.cases[2].lines[2].price == 34705
    adj = s.cases[3].adjustments[0]
    assert (adj.move, adj.value, adj.percent, adj.exempt) == ("D", 6, True, False)
    assert (s.cases[4].ref_case, s.cases[4].cod_ref) == ("414175-1", 2)   # corrige giro
    assert (s.cases[5].ref_case, s.cases[5].cod_ref) == ("414175-2", 3)   # devolución
    assert (s.cases[6].cod_ref, s.cases[7].cod_ref, s.cases[7].ref_case) == (1, 1, "414175-5")


def test_other_sets_as_written() -> None:
    guias = certify.parse_set(SETS / "005-guia_despacho.txt")
    assert [(c.ind_traslado, c.tipo_despacho) for c in guias.cases] == [(5, 0), (1, 2), (1, 1)]
    compras = certify.parse_set(SETS / "003-compras.txt")
    assert [(p.doc_type, p.folio, p.exempt, p.net, p.treatment) for p in compras.purchases][:3] == [
        (30, 234, 0, 53253, "normal"), (33, 32, 10633, 11473, "normal"), (30, 781, 0, 30171, "uso_comun")]
    assert compras.proportionality == Decimal("0.60")
    libro = certify.parse_set(SETS / "006-libro_guias.txt")
    assert (libro.guides_invoiced, libro.guides_annulled) == ([2], [3])
    boletas = certify.parse_set(SETS / "007-boletas.csv")
    assert len(boletas.boletas) == 10 and [b.number for b in boletas.boletas if b.annul] == [1, 3, 5]
    assert boletas.boletas[9].lines[0].qty == Decimal("3.8") and boletas.boletas[9].lines[0].rebate_pct == 40
    exp2 = certify.parse_set(SETS / "010-set_exportacion_2.txt")
    assert exp2.cases[0].line_surcharge_pct == 10 and exp2.cases[1].line_discounts == {1: 5}
    assert exp2.cases[1].export["TOTAL CLAUSULA DE VENTA"] == "4702.98"


# --- totals --------------------------------------------------------------------------------------------


HAND_CHECKED = {
    # 123 x 923 + 53 x 1473 = 191598; IVA 36403.62 -> 36404
    "414175-1": {"MntNeto": 191598, "IVA": 36404, "MntTotal": 228002},
    # 235 x 1926 = 452610 - 4% (18104) + 161 x 990 = 159390 - 5% (7969.5 -> 7970) = 585926
    "414175-2": {"MntNeto": 585926, "IVA": 111326, "MntTotal": 697252},
    # (81 x 1672 + 35 x 1405) = 184607 - 6% (11076) = 173531; exempt 2 x 6767
    "414175-4": {"MntNeto": 173531, "MntExe": 13534, "IVA": 32971, "MntTotal": 220036},
    "414178-1": {"MntExe": 83892, "MntTotal": 83892},          # 12 h x 6991
    "493307-1": {"MntExe": 48256, "MntTotal": 48256},          # 377 KN x 128 EUR
    "493308-1": {"MntExe": 85.8, "MntTotal": 85.8},            # 78 + 10 % surcharge
    # 884 x 178 - 5% + 228 x 119 + 11 % of the clause total 4702.98
    "493308-2": {"MntExe": 177133.73, "MntTotal": 177133.73},
}


def test_every_case_totals_match_the_set(full_run: dict[str, Any]) -> None:
    issued = full_run["state"]["issued"]
    checked = 0
    for path in set_files():
        s: SetOfCases = certify.parse_set(path)
        cases = {c.case_id: c for c in s.cases}
        for case in s.cases:
            got = issued[case.case_id]["totals"]
            want = expected_totals(case, cases)
            for key, value in want.items():
                assert Decimal(str(got.get(key, 0))) == value, (case.case_id, key, got, want)
            assert issued[case.case_id]["doc_type"] == case.doc_type
            checked += 1
    assert checked == 28
    for case_id, want in HAND_CHECKED.items():
        got = issued[case_id]["totals"]
        assert {k: got.get(k) for k in want} == want, case_id


def test_boleta_totals_and_notes(full_run: dict[str, Any]) -> None:
    issued = full_run["state"]["issued"]
    s = certify.parse_set(SETS / "007-boletas.csv")
    for b in s.boletas:
        gross = sum((hr(ln.qty * ln.price) for ln in b.lines if not ln.exempt), Decimal(0))
        exempt = sum((hr(ln.qty * ln.price) for ln in b.lines if ln.exempt), Decimal(0))
        got = issued[f"007-boletas.csv#{b.number}"]["totals"]
        assert (got["MntTotal"], got.get("MntExe", 0)) == (gross + exempt, exempt)
        assert got["MntNeto"] == hr(gross / Decimal("1.19")) and got["IVA"] == gross - got["MntNeto"]
        note = issued.get(f"007-boletas.csv#{b.number}-NC")
        if b.annul:  # the note takes the whole boleta back (net prices: within a peso)
            assert abs(note["totals"]["MntTotal"] - got["MntTotal"]) <= 1
        elif any(ln.rebate_pct for ln in b.lines):
            share = sum((hr(ln.qty * ln.price) * ln.rebate_pct / 100 for ln in b.lines if ln.rebate_pct), Decimal(0))
            assert abs(Decimal(note["totals"]["MntTotal"]) - share) <= 1
        else:
            assert note is None
    # 10 boletas + 5 notes in the RVD
    rvd = json.loads((full_run["out"] / "libros" / "rvd.json").read_text(encoding="utf-8"))
    assert len(rvd["Documentos"]) == 15


def test_books_follow_the_sets(full_run: dict[str, Any]) -> None:
    libros = full_run["out"] / "libros"
    compras = dte.books.normalize_libro_cv(json.loads((libros / "libro-compras.json").read_text("utf-8")))
    by_folio = {d["NroDoc"]: d for d in compras["Detalle"]}
    assert by_folio[234]["MntIVA"] == 10118                       # 53253 x 19 %
    assert by_folio[32]["MntExe"] == 10633 and by_folio[32]["MntNeto"] == 11473
    assert by_folio[781]["IVAUsoComun"] == 5732 and compras["FctProp"] == 60
    assert by_folio[67]["IVANoRec"][0]["CodIVANoRec"] == 4
    assert by_folio[9]["OtrosImp"][0] == {"CodImp": 15, "TasaImp": 19, "MntImp": 2020}
    ventas = json.loads((libros / "libro-ventas.json").read_text("utf-8"))
    assert sorted((d["TpoDoc"], d["NroDoc"]) for d in ventas["Detalle"]) == sorted(
        (v["doc_type"], v["folio"]) for k, v in full_run["state"]["issued"].items() if k.startswith("414175-"))
    guias = json.loads((libros / "libro-guias.json").read_text("utf-8"))
    by_case = {d["Folio"]: d for d in guias["Detalle"]}
    issued = full_run["state"]["issued"]
    assert by_case[issued["428551-3"]["folio"]]["Anulado"] == 2
    assert by_case[issued["428551-2"]["folio"]]["TpoDocRef"] == 33
    assert by_case[issued["428551-1"]["folio"]]["TpoOper"] == 5


# --- references, signatures, schema, sending -----------------------------------------------------------


def test_references_name_the_set_case_and_the_modified_document(full_run: dict[str, Any]) -> None:
    issued = full_run["state"]["issued"]
    for case_id, item in issued.items():
        if "#" in case_id:
            continue
        refs = item["document"]["Referencia"]
        assert refs[0]["TpoDocRef"] == "SET" and refs[0]["RazonRef"] == f"CASO {case_id}"
    nc = issued["414175-6"]["document"]["Referencia"][1]
    target = issued["414175-2"]
    assert (nc["TpoDocRef"], nc["FolioRef"], nc["CodRef"]) == ("33", str(target["folio"]), 3)
    nd = issued["414175-8"]["document"]["Referencia"][1]
    assert (nd["TpoDocRef"], nd["FolioRef"], nd["CodRef"]) == ("61", str(issued["414175-5"]["folio"]), 1)
    boleta = issued["007-boletas.csv#4"]["document"]["Referencia"][0]
    assert boleta == {"NroLinRef": 1, "CodRef": "SET", "RazonRef": "CASO-4"}


def test_every_document_signs_validates_and_verifies(full_run: dict[str, Any], material: dict[str, Any]) -> None:
    keyring = material["kit"].keyring()
    files = sorted((full_run["out"] / "dte").glob("*.xml"))
    assert len(files) == len(full_run["state"]["issued"])
    for f in files:
        data = f.read_bytes()
        report = dte.verify(data, keyring=keyring)
        assert report.ok, (f.name, [(c.name, c.reason) for c in report.failures])
    for up in full_run["report"]["uploads"]:
        assert up["schema_valid"] and up["verified"], (up["name"], up["problems"])
        data = (full_run["out"] / up["file"]).read_bytes()
        assert dte.validate(data).valid
        assert dte.verify(data, keyring=keyring).ok


def test_end_to_end_every_envelope_accepted_by_the_simulator(full_run: dict[str, Any]) -> None:
    report = full_run["report"]
    assert full_run["code"] == 0, (full_run["stderr"], [(u["name"], u["state"], u["glosa"], u["rejections"])
                                                       for u in report["uploads"]])
    assert report["ok"] and report["sent"]
    kinds = sorted(u["kind"] for u in report["uploads"])
    assert kinds.count("EnvioDTE") == 8 and kinds.count("LibroCV") == 2
    assert {"EnvioBOLETA", "LibroGuia", "ConsumoFolios"} <= set(kinds)
    for u in report["uploads"]:
        assert u["track_id"] and u["state"] == "accepted" and u["rejected"] == 0, u


def test_exchange_answers(full_run: dict[str, Any]) -> None:
    answers = full_run["report"]["answers"]
    assert [Path(a).name.split("-")[-1] for a in answers] == ["RecepcionDTE.xml", "ResultadoDTE.xml",
                                                              "EnvioRecibos.xml"]
    for a in answers:
        data = (full_run["out"] / a).read_bytes()
        assert dte.validate(data).valid, a
        assert dte.verify(data).ok, a


def test_printed_samples(full_run: dict[str, Any]) -> None:
    out = full_run["out"]
    samples = full_run["report"]["samples"]
    issued = full_run["state"]["issued"]
    assert len([s for s in samples if "cedible" not in s]) == len(issued)
    f33 = issued["414175-1"]["folio"]
    pdf = out / "muestras" / f"T33F{f33}-cedible.pdf"
    assert pdf.read_bytes().startswith(b"%PDF")
    if shutil.which("pdftotext"):
        text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
        assert "FACTURA ELECTRONICA" in text and f"Nº {f33}" in text and "CEDIBLE" in text
        assert "S.I.I. - SANTIAGO ORIENTE" in text and "Timbre Electronico SII" in text
        guia = issued["428551-2"]["folio"]
        text = subprocess.run(["pdftotext", str(out / "muestras" / f"T52F{guia}-cedible.pdf"), "-"],
                              capture_output=True, text=True, check=True).stdout
        assert "CEDIBLE CON SU FACTURA" in text


def test_printed_sample_barcode_is_the_ted(full_run: dict[str, Any], tmp_path: Path) -> None:
    zxingcpp = pytest.importorskip("zxingcpp")
    image_mod = pytest.importorskip("PIL.Image")
    if not shutil.which("pdftoppm"):
        pytest.skip("pdftoppm not installed")
    issued = full_run["state"]["issued"]["414175-1"]
    pdf = full_run["out"] / "muestras" / f"T33F{issued['folio']}.pdf"
    subprocess.run(["pdftoppm", "-r", "300", "-png", "-singlefile", str(pdf), str(tmp_path / "page")], check=True)
    found = zxingcpp.read_barcodes(image_mod.open(tmp_path / "page.png"))
    assert found, "no barcode found on the page"
    xml = (full_run["out"] / issued["file"]).read_bytes()
    ted = xmlread.find(xmlread.document(xmlread.parse(xml)), "TED")
    from lxml import etree
    payload = dte.ted_payload(etree.tostring(ted, encoding="unicode")).decode("iso-8859-1")
    assert found[0].text == payload


def test_a_second_run_uses_new_folios(material: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["certify", str(SETS / "008-factura_compra.txt"), *base_args(material), "--out", str(out),
            "--no-send", "--no-samples", "--json"]
    first = json.loads(run_cli(args)[1])
    second = json.loads(run_cli(args)[1])
    folios = [(d["type"], d["folio"]) for d in first["documents"] + second["documents"]]
    assert len(set(folios)) == len(folios) == 6
    assert first["ok"] and second["ok"] and not second["sent"]


# --- errors -------------------------------------------------------------------------------------------


def broken_copy(tmp_path: Path, name: str, old: bytes, new: bytes) -> Path:
    data = (SETS / name).read_bytes()
    assert old in data
    path = tmp_path / name
    path.write_bytes(data.replace(old, new, 1))
    return path


@pytest.mark.parametrize("name, old, new, message", [
    ("001-basico.txt", b"DOCUMENTO\tFACTURA ELECTRONICA\r\n\r\nITEM\t\t\tCANTIDAD\tPRECIO UNITARIO\r\nCaj",
     b"DOCUMENTO\tFACTURA ELECTRONICX\r\n\r\nITEM\t\t\tCANTIDAD\tPRECIO UNITARIO\r\nCaj",
     "001-basico.txt: CASO 414175-1, line 4: unknown document 'FACTURA ELECTRONICX'"),
    ("001-basico.txt", b"235\t\t   1926", b"235\t\t   19x6",
     "001-basico.txt: CASO 414175-2, line 16: PRECIO/VALOR UNITARIO '19x6' is not a number"),
    ("001-basico.txt", b"CORRESPONDIENTE A CASO  414175-1", b"CORRESPONDIENTE A CASO  414175-9",
     "001-basico.txt: CASO 414175-5, line 45: references CASO 414175-9, which is not in the set"),
    ("005-guia_despacho.txt", b"MOTIVO:\t\tVENTA", b"MOTIVO:\t\tREGALO",
     "005-guia_despacho.txt: CASO 428551-2, line 15: unknown MOTIVO 'REGALO'"),
    ("003-compras.txt", b"ENTREGA GRATUITA DEL PROVEEDOR", b"ENTREGA RARA DEL PROVEEDOR",
     "003-compras.txt, line 25: unknown observation 'ENTREGA RARA DEL PROVEEDOR'"),
    ("007-boletas.csv", b"3.8;Kg", b"3,8;Kg", "007-boletas.csv: CASO-10, line 21: QtyItem '3,8' is not a number"),
    ("009-set_exportacion_1.txt", b"CLAUSULA DE VENTA DE EXPORTACION:", b"CLAUSULA RARA DE EXPORTACION:",
     "009-set_exportacion_1.txt: CASO 493307-1, line 13: cannot read 'CLAUSULA RARA DE EXPORTACION:"),
])
def test_broken_sets_name_file_case_and_line(tmp_path: Path, name: str, old: bytes, new: bytes,
                                             message: str) -> None:
    path = broken_copy(tmp_path, name, old, new)
    with pytest.raises(certify.SetError) as info:
        certify.parse_set(path)
    assert message in str(info.value)
    assert info.value.code.startswith("certify.")


def test_cli_refuses_a_broken_set_before_spending_folios(material: dict[str, Any], tmp_path: Path) -> None:
    path = broken_copy(tmp_path, "001-basico.txt", b"4%", b"4x%")
    out = tmp_path / "out"
    code, stdout, stderr = run_cli(["certify", str(SETS / "008-factura_compra.txt"), str(path),
                                    *base_args(material), "--out", str(out), "--no-send"])
    assert code == 2
    assert "SetError certify.set_syntax: 001-basico.txt: CASO 414175-2, line 16" in stderr
    assert not (out / "state.json").exists()  # parsed before anything was signed: no folio spent


def test_not_a_set(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hola\n", encoding="utf-8")
    with pytest.raises(certify.SetError, match=r"notes.txt, line 1: not a certification set"):
        certify.parse_set(path)


def test_note_before_its_invoice_is_refused(tmp_path: Path) -> None:
    text = ("CASO 1-1\nDOCUMENTO\tNOTA DE CREDITO ELECTRONICA\nREFERENCIA\tFACTURA ELECTRONICA CORRESPONDIENTE "
            "A CASO 1-2\nRAZON REFERENCIA\tANULA FACTURA\n\nCASO 1-2\nDOCUMENTO\tFACTURA ELECTRONICA\n\n"
            "ITEM\tCANTIDAD\tPRECIO UNITARIO\nA\t1\t10\n")
    with pytest.raises(certify.SetError, match=r"x.txt: CASO 1-1, line 3: references CASO 1-2, which comes later"):
        certify.parse_set(tmp_path / "x.txt", text=text)


def test_company_file_errors(material: dict[str, Any], tmp_path: Path) -> None:
    bad = tmp_path / "company.json"
    bad.write_text(json.dumps({"Emisor": {"RUTEmisor": ISSUER}, "Resolucion": 1}), encoding="utf-8")
    with pytest.raises(certify.SetError, match=r"unknown key\(s\) \['Resolucion'\]"):
        certify.load_company(bad)
    bad.write_text("[]", encoding="utf-8")
    with pytest.raises(certify.SetError, match="must be a JSON object"):
        certify.load_company(bad)


def test_missing_exchange_file_is_refused_before_signing(material: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "out"
    code, _, stderr = run_cli(["certify", str(SETS / "008-factura_compra.txt"), *base_args(material),
                               "--out", str(out), "--no-send", "--exchange", str(tmp_path / "nope.xml")])
    assert code == 2 and "certify.exchange: --exchange" in stderr and "nope.xml: no such file" in stderr
    assert not (out / "state.json").exists()
