"""SII states end to end over real HTTP: the C++ client against the in-process simulator for the
states the issue asks for (RLV/RPR, FNA/FAN with folio annulment, books without per-type counts,
SII's book state LOK) and wsDTECorreo.reenvioCorreo in the client, the facade and `dte resend-mail`.
The offline code tables are tested in tests/cpp/test_sii_states.cpp."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest

import dte_native as dte
from dte_native import books, cli, sii, testkit
from dte_native.errors import SiiMalformedAnswer, SiiRejected

from conftest import ISSUER, document
from test_transport import admin, client_for, start_sim, tokens_issued

CUSTOMER = "77777777-7"
# Folios of their own (the kit's CAFs cover 1..500; test_transport uses blocks of 40 from 1).
BASE = 470


@pytest.fixture()
def sim(kit: testkit.TestKit) -> Iterator[Any]:
    s = start_sim(kit)
    yield s
    s.stop()


def marked(doc_type: int, folio: int, marker: str = "") -> dict[str, Any]:
    """The example document; `marker` ("[SIM:RLV]"...) in the first line's NmbItem asks the
    simulator for that verdict."""
    doc = document(doc_type, folio)
    lines = doc["Detalle"] if isinstance(doc["Detalle"], list) else [doc["Detalle"]]
    if marker:
        lines[0]["NmbItem"] = f"{lines[0]['NmbItem'][:60]} {marker}"
    doc["Detalle"] = lines
    return doc


def sign(doc: dict[str, Any], cafs: dict[int, dte.Caf], cert: dte.Certificate,
         keyring: dte.SiiKeyring) -> dte.SignedDte:
    return dte.sign(doc, cafs[int(doc["Encabezado"]["IdDoc"]["TipoDTE"])], cert, keyring=keyring)


def envelope(cert: dte.Certificate, *signed: dte.SignedDte) -> bytes:
    return dte.envelope(list(signed), cert, resolution_date="2014-08-22", resolution_number=0)


def query(doc_type: int, folio: int) -> sii.DocumentQuery:
    return sii.DocumentQuery(ISSUER, CUSTOMER, doc_type, folio, "2024-05-02", 1000)


# ----------------------------------------------------------------------------- books (regression)

def libro(cert: dte.Certificate, nro: int = 1) -> bytes:
    book = {"Caratula": {"RutEmisorLibro": ISSUER, "PeriodoTributario": "2024-05", "FchResol": "2014-08-22",
                         "NroResol": 0, "TipoOperacion": "VENTA", "TipoLibro": "MENSUAL", "TipoEnvio": "TOTAL"},
            "Detalle": [{"TpoDoc": 33, "NroDoc": nro, "FchDoc": "2024-05-02", "RUTDoc": "12345678-5",
                         "MntNeto": 100000}]}
    return books.sign_libro_cv(book, cert)


def test_book_epr_without_counts_is_final_not_malformed(sim: Any, cert: dte.Certificate) -> None:
    """Regression: the client raised sii.no_counts for a book's EPR (books have no per-type counts)."""
    c = client_for(sim, cert)
    xml = libro(cert)
    assert sii.envelope_kind_of(xml) == "book"
    up = c.upload(xml, ISSUER, "libro.xml")
    assert up.track_id and up.family == "dte"
    for kind in ("book", "auto"):
        st = c.envelope_status(up.track_id, ISSUER, kind=kind)
        assert (st.sii_state, st.state, st.final, st.counts) == ("EPR", "accepted", True, [])
    # An EnvioDTE's EPR without counts stays an error: EPR alone is not acceptance.
    with pytest.raises(SiiMalformedAnswer) as err:
        c.envelope_status(up.track_id, ISSUER, kind="documents")
    assert err.value.code == "sii.no_counts"
    # SII's book state LOK.
    sim.configure(book_final_state="LOK")
    up2 = c.upload(libro(cert, 2), ISSUER, "libro2.xml")
    assert up2.track_id
    st = c.wait_final(up2.track_id, ISSUER, poll_s=0.05, timeout_s=10, kind="book")
    assert (st.sii_state, st.state, st.final) == ("LOK", "accepted", True)


# ----------------------------------------------------------------------------- RLV / RPR

def test_documents_with_objections_rpr_rlv(sim: Any, cert: dte.Certificate, cafs: dict[int, dte.Caf],
                                           keyring: dte.SiiKeyring) -> None:
    c = client_for(sim, cert)
    rlv = sign(marked(33, BASE, "[SIM:RLV]"), cafs, cert, keyring)
    ok = sign(marked(33, BASE + 1), cafs, cert, keyring)
    up = c.upload(envelope(cert, rlv, ok), ISSUER)
    st = c.envelope_status(up.track_id, ISSUER, kind="documents")
    # Default: EPR with REPAROS; the verdict comes from the counts.
    assert st.sii_state == "EPR" and st.state == "accepted_with_objections" and st.final
    assert (st.counts[0].informed, st.counts[0].accepted, st.counts[0].objections) == (2, 2, 1)
    docs = {d["folio"]: d for d in sim.state()["documents"]}
    assert docs[BASE]["estado"] == "RLV" and docs[BASE + 1]["estado"] == "DOK"

    # SII may close such an envelope as RLV / RPR itself; counts still read.
    sim.configure(objection_envelope_state="auto")
    up = c.upload(envelope(cert, sign(marked(33, BASE + 2, "[SIM:RLV]"), cafs, cert, keyring)), ISSUER)
    st = c.envelope_status(up.track_id, ISSUER, kind="documents")
    assert (st.sii_state, st.state, st.final) == ("RLV", "accepted_with_objections", True)
    assert st.counts[0].objections == 1
    up = c.upload(envelope(cert, sign(marked(33, BASE + 3, "[SIM:RPR]"), cafs, cert, keyring),
                           sign(marked(33, BASE + 4, "[SIM:RLV]"), cafs, cert, keyring)), ISSUER)
    st = c.envelope_status(up.track_id, ISSUER)
    assert (st.sii_state, st.state) == ("RPR", "accepted_with_objections")
    # A rejected document makes it EPR with RECHAZADOS: rejected.
    up = c.upload(envelope(cert, sign(marked(33, BASE + 5, "[SIM:RCH]"), cafs, cert, keyring),
                           sign(marked(33, BASE + 6, "[SIM:RLV]"), cafs, cert, keyring)), ISSUER)
    st = c.envelope_status(up.track_id, ISSUER)
    assert (st.sii_state, st.state) == ("EPR", "rejected")
    # Documents with objections are at SII: DOK.
    d = c.document_status(query(33, BASE + 2))
    assert d.sii_state in ("DOK", "DNK") and d.verdict in ("accepted", "accepted_with_objections") and d.final


def test_boleta_detail_lists_rlv_and_rpr(sim: Any, cert: dte.Certificate, cafs: dict[int, dte.Caf],
                                         keyring: dte.SiiKeyring) -> None:
    c = client_for(sim, cert)
    b1 = sign(marked(39, BASE, "[SIM:RLV]"), cafs, cert, keyring)
    b2 = sign(marked(39, BASE + 1, "[SIM:RPR]"), cafs, cert, keyring)
    b3 = sign(marked(39, BASE + 2), cafs, cert, keyring)
    env = dte.envelope([b1, b2, b3], cert, boleta=True, resolution_date="2014-08-22", resolution_number=0)
    up = c.upload(env, ISSUER)
    assert up.family == "boleta"
    st = c.envelope_status(up.track_id, ISSUER, boleta=True)
    assert st.final and st.state == "accepted_with_objections"
    assert sorted((d.folio, d.state) for d in st.details) == [(BASE, "RLV"), (BASE + 1, "RPR")]
    assert all(d.errors for d in st.details)


# ----------------------------------------------------------------------------- FNA / FAN

def test_folio_not_authorized_and_annulled(sim: Any, cert: dte.Certificate, cafs: dict[int, dte.Caf],
                                           keyring: dte.SiiKeyring) -> None:
    c = client_for(sim, cert)
    # No CAF seen yet for this RUT and type: SII cannot tell, FAU (not final).
    d = c.document_status(query(33, 9999))
    assert (d.sii_state, d.state, d.verdict, d.final) == ("FAU", "not_received", "not_received", False)

    used = sign(marked(33, BASE), cafs, cert, keyring)
    assert c.envelope_status(c.upload(envelope(cert, used), ISSUER).track_id, ISSUER).state == "accepted"
    # The simulator now knows the CAF range (1..500) from the TED.
    d = c.document_status(query(33, 9999))
    assert (d.sii_state, d.state, d.verdict, d.final) == ("FNA", "folio_not_authorized", "rejected", True)
    assert c.document_status(query(33, BASE + 1)).sii_state == "FAU"   # in range, not sent

    # Annulment: unused folios become FAN; used ones cannot be annulled.
    out = admin(sim, "/_sim/annul", {"rut": ISSUER, "tipo": 33, "desde": BASE, "hasta": BASE + 5})
    assert out["skipped"] == [BASE]
    d = c.document_status(query(33, BASE + 2))
    assert (d.sii_state, d.state, d.verdict, d.final) == ("FAN", "folio_annulled", "rejected", True)
    # A DTE with an annulled folio is rejected.
    bad = sign(marked(33, BASE + 3), cafs, cert, keyring)
    st = c.envelope_status(c.upload(envelope(cert, bad), ISSUER).track_id, ISSUER)
    assert st.state == "rejected" and st.counts[0].rejected == 1
    errors = [e["code"] for doc in sim.state()["documents"] if doc["folio"] == BASE + 3 for e in doc["errors"]]
    assert "CAF-3-515" in errors
    # Boleta REST document status uses the same codes.
    admin(sim, "/_sim/caf", {"rut": ISSUER, "tipo": 39, "desde": 1, "hasta": 10})
    b = c.boleta_document_status(query(39, 11))
    assert (b.sii_state, b.verdict) == ("FNA", "rejected")
    admin(sim, "/_sim/annul", {"rut": ISSUER, "tipo": 39, "desde": 5, "hasta": 5})
    assert c.boleta_document_status(query(39, 5)).sii_state == "FAN"


def test_annul_refuses_bad_input(sim: Any) -> None:
    import urllib.error

    with pytest.raises(urllib.error.HTTPError) as err:
        admin(sim, "/_sim/annul", {"rut": ISSUER, "tipo": 33, "desde": 5, "hasta": 2})
    assert err.value.code == 400


# ----------------------------------------------------------------------------- wsDTECorreo

def test_resend_mail(kit: testkit.TestKit, cert: dte.Certificate, cafs: dict[int, dte.Caf],
                     keyring: dte.SiiKeyring) -> None:
    s = start_sim(kit, step_delay_s=3600)   # states do not advance until the clock moves
    try:
        c = client_for(s, cert)
        up = c.upload(envelope(cert, sign(marked(33, BASE, "[SIM:RCH]"), cafs, cert, keyring)), ISSUER)
        with pytest.raises(SiiRejected) as err:
            c.resend_mail(up.track_id, ISSUER)
        assert (err.value.code, err.value.sii_code) == ("sii.mail.not_processed", "114")
        s.advance_clock(6 * 3600)
        res = c.resend_mail(up.track_id, ISSUER)
        assert res.ok and res.code == 0 and res.description
        mails = s.state()["mails"]
        assert len(mails) == 1 and mails[0]["trackid"] == up.track_id and mails[0]["to"] == ISSUER
        assert mails[0]["documents"][0]["estado"] == "RCH"
        assert any(e["code"] == "SIM-3-902" for e in mails[0]["documents"][0]["errors"])
        with pytest.raises(SiiRejected) as err:
            c.resend_mail("1234", ISSUER)
        assert (err.value.code, err.value.sii_code) == ("sii.mail.unknown_trackid", "105")
        # The service's own token signal (104): renewed once, then it works.
        before = tokens_issued(s)
        admin(s, "/_sim/config", {"faults": [{"service": "correo", "kind": "token_expired", "count": 1}]})
        assert c.resend_mail(up.track_id, ISSUER).ok
        assert tokens_issued(s) == before + 1
        assert len(s.state()["mails"]) == 2
        # Only for the company's users.
        s.configure(authorized={ISSUER: ["22222222-2"]})
        with pytest.raises(SiiRejected) as err:
            c.resend_mail(up.track_id, ISSUER)
        assert err.value.sii_code == "106"
    finally:
        s.stop()


def test_cli_resend_mail_and_states(sim: Any, kit: testkit.TestKit, cert: dte.Certificate,
                                    cafs: dict[int, dte.Caf], keyring: dte.SiiKeyring, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    common = ["--env", "simulator", "--url", sim.url, "--cert", str(kit.cert_path),
              "--password-file", str(kit.password_file), "--timeout", "10"]
    path = tmp_path / "envio.xml"
    path.write_bytes(envelope(cert, sign(marked(33, BASE), cafs, cert, keyring)))
    assert cli.main(["send", str(path), *common, "--json"]) == 0
    track = json.loads(capsys.readouterr().out)["track_id"]
    assert cli.main(["resend-mail", track, "--company", ISSUER, *common, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] and out["code"] == 0
    assert cli.main(["resend-mail", track, "--company", ISSUER, *common]) == 0
    assert track in capsys.readouterr().out
    # An SII refusal is reported plainly, with a failing exit code.
    assert cli.main(["resend-mail", "99", "--company", ISSUER, *common]) != 0
    assert "105" in capsys.readouterr().err

    # Document states are reported plainly: FNA (outside the CAF range the simulator saw).
    assert cli.main(["doc-status", "--issuer", ISSUER, "--receiver", CUSTOMER, "--type", "33", "--folio", "9999",
                     "--date", "2024-05-02", "--amount", "1000", *common]) == 1
    assert "folio_not_authorized -> rejected (FNA" in capsys.readouterr().out

    book = tmp_path / "libro.xml"
    book.write_bytes(libro(cert))
    assert cli.main(["send", str(book), "--company", ISSUER, *common, "--json"]) == 0
    btrack = json.loads(capsys.readouterr().out)["track_id"]
    assert cli.main(["status", btrack, "--company", ISSUER, "--kind", "book", *common, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["state"] == "accepted"

    assert cli.main(["sii-states", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    codes = {(r["service"], r["code"]): r for r in rows}
    for code in ("REC", "SOK", "CRT", "FOK", "PDR", "PRD", "EPR", "RPR", "RLV", "RCH", "RCT", "RFR", "RSC",
                 "RCS", "RCO", "VOF", "RPT"):
        assert ("estup", code) in codes, code
    for code in ("DOK", "DNK", "FAU", "FNA", "FAN", "EMP", "TMD", "TMC", "MMD", "MMC", "AND", "ANC"):
        assert ("estdte", code) in codes, code
    for code in ("LOK", "LRH"):
        assert codes[("estup_book", code)]["final"]
    assert codes[("estdte", "FAU")]["final"] is False and codes[("estdte", "FNA")]["verdict"] == "rejected"
    assert cli.main(["sii-states", "--service", "correo"]) == 0
    assert "114" in capsys.readouterr().out


def test_state_table_matches_facade_constants() -> None:
    table = sii.state_table()
    assert {r.verdict for r in table} <= set(sii.VERDICTS) | {"token", "error", "ok"}
    assert {r.source for r in table} <= {"OFFICIAL", "IMPL", "COMMUNITY", "UNCERTAIN"}
