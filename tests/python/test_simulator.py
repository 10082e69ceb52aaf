"""SII simulator over real sockets: auth, DTEUpload, QueryEstUp, checks on what it receives."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from lxml import etree

import simkit
from simkit import COMPANY, CUSTOMER, SENDER, Line, SiiClient, hdr, body_values, recepcion

sim_mod = simkit.load_simulator()
XSD = simkit.xsd_dir()


@pytest.fixture(scope="module")
def material(tmp_path_factory: pytest.TempPathFactory) -> dict:
    keys_dir = tmp_path_factory.mktemp("siikeys")
    sii_key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    (keys_dir / "100.pem").write_bytes(simkit.pem_public(sii_key.public_key()))
    return {
        "keys_dir": keys_dir,
        "sii_key": sii_key,
        "signer": simkit.make_signer(),
        "caf33": simkit.make_caf(sii_key, tipo=33, desde=1, hasta=200),
        "caf61": simkit.make_caf(sii_key, tipo=61, desde=1, hasta=50),
        "caf39": simkit.make_caf(sii_key, tipo=39, desde=1, hasta=50),
        "rogue_caf": simkit.make_caf(rsa.generate_private_key(public_exponent=65537, key_size=1024), tipo=33,
                                     desde=500, hasta=600),
    }


@pytest.fixture()
def sim(material: dict):
    s = sim_mod.Simulator(port=0, xsd_dir=XSD, sii_keys=material["keys_dir"], config={"step_delay_s": 0})
    s.start()
    yield s
    s.stop()


@pytest.fixture()
def client(sim) -> SiiClient:
    return SiiClient(sim.url)


def envio(material: dict, folios: list[int], **kw) -> bytes:
    dtes = [simkit.make_dte(material["caf33"], material["signer"], f, [Line("Servicio de prueba", 2, 5000)])
            for f in folios]
    return simkit.make_envio(dtes, material["signer"], **kw)


# ----------------------------------------------------------------------------- auth

def test_seed_is_numeric_and_soap_return_is_escaped_xml(client: SiiClient) -> None:
    status, body = client.soap("/DTEWS/CrSeed.jws", "getSeed", [])
    assert status == 200
    assert b"&lt;SII:RESPUESTA" in body
    seed = client.seed()
    assert seed.isdigit() and len(seed) == 12


def test_token_lifecycle_and_seed_rules(sim, client: SiiClient, material: dict) -> None:
    signer = material["signer"]
    seed = client.seed()
    signed = simkit.signed_seed(seed, signer)
    first = client.token_raw(signed)
    assert hdr(first, "ESTADO") == "00"
    assert first.findtext("{http://www.sii.cl/XMLSchema}RESP_BODY/TOKEN")
    # single use
    assert hdr(client.token_raw(signed), "ESTADO") == "08"
    # unknown seed
    assert hdr(client.token_raw(simkit.signed_seed("000000000001", signer)), "ESTADO") == "08"
    # late seed: the clock moves past the 120 s TTL
    late = simkit.signed_seed(client.seed(), signer)
    sim.advance_clock(121)
    assert hdr(client.token_raw(late), "ESTADO") == "08"


def test_token_signature_errors(client: SiiClient, material: dict) -> None:
    signer = material["signer"]
    assert hdr(client.token_raw(f"<getToken><item><Semilla>{client.seed()}</Semilla></item></getToken>"), "ESTADO") == "04"
    tampered = simkit.signed_seed(client.seed(), signer).replace("<Semilla>", "<Semilla>9")
    assert hdr(client.token_raw(tampered), "ESTADO") == "05"
    # KeyValue of another key than the certificate's -> 21
    other = simkit.make_signer()
    doc = etree.fromstring(simkit.signed_seed(client.seed(), signer))
    ns = {"ds": "http://www.w3.org/2000/09/xmldsig#"}
    doc.find(".//ds:X509Certificate", ns).text = etree.fromstring(
        simkit.signed_seed("1", other)).find(".//ds:X509Certificate", ns).text
    assert hdr(client.token_raw(etree.tostring(doc, encoding="unicode")), "ESTADO") == "21"
    assert hdr(client.token_raw("<getToken><item>"), "ESTADO") == "02"


def test_unregistered_user_gets_minus_07(sim, client: SiiClient, material: dict) -> None:
    sim.configure(registered_users=["1-9"])
    assert hdr(client.token_raw(simkit.signed_seed(client.seed(), material["signer"])), "ESTADO") == "-07"


# ----------------------------------------------------------------------------- upload and status

def test_upload_ok_progresses_to_epr_with_counts(material: dict) -> None:
    with sim_mod.Simulator(port=0, xsd_dir=XSD, sii_keys=material["keys_dir"], config={"step_delay_s": 10}) as s:
        c = SiiClient(s.url)
        token = c.token(material["signer"])
        status, body = c.upload(token, envio(material, [1, 2]))
        r = recepcion(body)
        assert status == 200 and r["STATUS"] == "0", r
        assert len(r["TRACKID"]) == 10 and r["TRACKID"].isdigit()
        assert r["RUTSENDER"] == SENDER and r["RUTCOMPANY"] == COMPANY
        seen = []
        for _ in range(6):
            inner = c.est_up(token, r["TRACKID"])
            seen.append(hdr(inner, "ESTADO"))
            s.advance_clock(10)
        assert seen == ["REC", "SOK", "CRT", "FOK", "PDR", "EPR"]
        inner = c.est_up(token, r["TRACKID"])
        assert body_values(inner, "TIPO_DOCTO") == ["33"]
        assert body_values(inner, "INFORMADOS") == ["2"] and body_values(inner, "ACEPTADOS") == ["2"]
        assert body_values(inner, "RECHAZADOS") == ["0"] and body_values(inner, "REPAROS") == ["0"]
        # track ids increase
        _s, body2 = c.upload(token, envio(material, [3]))
        assert int(recepcion(body2)["TRACKID"]) > int(r["TRACKID"])


@pytest.mark.skipif(XSD is None, reason="SII XSDs not found (set DTE_XSD_DIR or provide ../shared/sii/xsd)")
def test_schema_error_gives_status_7_with_detail(client: SiiClient, material: dict) -> None:
    token = client.token(material["signer"])
    bad = envio(material, [10]).replace(b"<NroResol>0</NroResol>", b"<NroResol>x</NroResol>")
    r = recepcion(client.upload(token, bad)[1])
    assert r["STATUS"] == "7" and "NroResol" in r["errors"]


def test_bad_envelope_signature_gives_8_or_rfr(sim, client: SiiClient, material: dict) -> None:
    token = client.token(material["signer"])
    bad = envio(material, [11]).replace(b"<NroResol>0</NroResol>", b"<NroResol>1</NroResol>")
    assert recepcion(client.upload(token, bad)[1])["STATUS"] == "8"
    sim.configure(upload_checks=["schema"])
    r = recepcion(client.upload(token, bad)[1])
    assert r["STATUS"] == "0"
    assert hdr(client.est_up(token, r["TRACKID"]), "ESTADO") == "RFR"


def test_duplicate_file_gives_99(client: SiiClient, material: dict) -> None:
    token = client.token(material["signer"])
    data = envio(material, [12])
    assert recepcion(client.upload(token, data)[1])["STATUS"] == "0"
    assert recepcion(client.upload(token, data)[1])["STATUS"] == "99"


def test_unauthenticated_and_bad_user_agent(client: SiiClient, material: dict) -> None:
    data = envio(material, [13])
    assert recepcion(client.upload(None, data)[1])["STATUS"] == "5"
    assert recepcion(client.upload("NOSUCHTOKEN", data)[1])["STATUS"] == "5"
    token = client.token(material["signer"])
    status, body = client.upload(token, data, ua="Mozilla/5.0 (X11; Linux x86_64)")
    assert status == 200 and body.lstrip().lower().startswith(b"<html")


def test_authorization_statuses(sim, client: SiiClient, material: dict) -> None:
    token = client.token(material["signer"])
    sim.configure(authorized={"11111111-1": [SENDER]})
    assert recepcion(client.upload(token, envio(material, [14]))[1])["STATUS"] == "6"
    sim.configure(authorized={COMPANY: ["22222222-2"]})
    assert recepcion(client.upload(token, envio(material, [14]))[1])["STATUS"] == "1"
    sim.configure(authorized={COMPANY: [SENDER]})
    assert recepcion(client.upload(token, envio(material, [14]))[1])["STATUS"] == "0"


def test_chunked_and_missing_length_refused(sim, material: dict) -> None:
    import socket
    for head in (b"Transfer-Encoding: chunked\r\n", b""):
        with socket.create_connection(("127.0.0.1", sim.port), timeout=5) as sock:
            sock.sendall(b"POST /cgi_dte/UPL/DTEUpload HTTP/1.1\r\nHost: x\r\n" + head + b"\r\n")
            assert b" 411 " in sock.recv(4096).split(b"\r\n")[0]


def test_caratula_and_document_checks(sim, client: SiiClient, material: dict) -> None:
    token = client.token(material["signer"])
    # RutReceptor must be SII's
    r = recepcion(client.upload(token, envio(material, [20], receptor=CUSTOMER))[1])
    assert r["STATUS"] == "0"
    assert hdr(client.est_up(token, r["TRACKID"]), "ESTADO") == "RCT"
    # SubTotDTE must count the documents
    r = recepcion(client.upload(token, envio(material, [21], subtot={33: 2}))[1])
    assert hdr(client.est_up(token, r["TRACKID"]), "ESTADO") == "RCT"
    # per-document: good, repeated folio, bad totals, CAF not signed by SII
    signer = material["signer"]
    caf = material["caf33"]
    good = simkit.make_dte(caf, signer, 30, [Line("A", 1, 1000)])
    again = simkit.make_dte(caf, signer, 30, [Line("B", 1, 2000)])
    wrong_total = simkit.make_dte(caf, signer, 31, [Line("C", 1, 1000)], tamper_total=1)
    rogue = simkit.make_dte(material["rogue_caf"], signer, 501, [Line("D", 1, 1000)])
    assert recepcion(client.upload(token, simkit.make_envio([good], signer))[1])["STATUS"] == "0"
    # (the same Documento ID twice in one envelope is an XSD error: repeat the folio across envelopes)
    ok = simkit.make_dte(caf, signer, 32, [Line("E", 3, 700)])
    r = recepcion(client.upload(token, simkit.make_envio([ok, again, wrong_total, rogue], signer))[1])
    inner = client.est_up(token, r["TRACKID"])
    assert hdr(inner, "ESTADO") == "EPR"
    assert body_values(inner, "INFORMADOS") == ["4"]
    assert body_values(inner, "ACEPTADOS") == ["1"] and body_values(inner, "RECHAZADOS") == ["3"]
    state = sim.state()
    env = next(e for e in state["envelopes"] if e["trackid"] == r["TRACKID"])
    codes = [[e["code"] for e in d["errors"]] for d in env["docs"]]
    assert codes[0] == []
    assert "DTE-3-101" in codes[1]
    assert "DTE-3-601" in codes[2] and "TED-3-520" in codes[2]  # TED MNT no longer matches either
    assert "CAF-3-511" in codes[3]


def test_dte_signature_checked_standalone(sim, client: SiiClient, material: dict) -> None:
    """A DTE signed with xmlns:xsi in scope (i.e. inside the envelope) fails DTE-3-505."""
    signer = material["signer"]
    dte = simkit.make_dte(material["caf33"], signer, 40, [Line("A", 1, 1000)])
    root = etree.fromstring(dte)
    wrapper = etree.fromstring(f'<X xmlns="{simkit.SII_NS}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"/>')
    wrapper.append(root)
    sig = root.find("{http://www.w3.org/2000/09/xmldsig#}Signature")
    root.remove(sig)
    simkit._sign(wrapper, root, signer, "#F40T33", enveloped=False)
    tainted = etree.tostring(root)
    token = client.token(signer)
    r = recepcion(client.upload(token, simkit.make_envio([tainted], signer))[1])
    env = next(e for e in sim.state()["envelopes"] if e["trackid"] == r["TRACKID"])
    assert [e["code"] for e in env["docs"][0]["errors"]] == ["DTE-3-505"]


def test_query_est_dte(sim, client: SiiClient, material: dict) -> None:
    token = client.token(material["signer"])
    r = recepcion(client.upload(token, envio(material, [50]))[1])
    assert r["STATUS"] == "0"
    today = __import__("datetime").date.fromisoformat(simkit.chile_today())
    fecha = today.strftime("%d%m%Y")

    def query(folio: int, monto: str, receptor: str = CUSTOMER) -> str:
        params = [("RutConsultante", SENDER.split("-")[0]), ("DvConsultante", SENDER.split("-")[1]),
                  ("RutCompania", COMPANY.split("-")[0]), ("DvCompania", COMPANY.split("-")[1]),
                  ("RutReceptor", receptor.split("-")[0]), ("DvReceptor", receptor.split("-")[1]),
                  ("TipoDte", "33"), ("FolioDte", str(folio)), ("FechaEmisionDte", fecha),
                  ("MontoDte", monto), ("Token", token)]
        return hdr(simkit.inner_of(client.soap("/DTEWS/QueryEstDte.jws", "getEstDte", params)[1]), "ESTADO")

    assert query(50, "11900") == "DOK"
    assert query(50, "1") == "DNK"
    assert query(51, "11900") == "FAU"
    # a credit note annulling it
    nc = simkit.make_dte(material["caf61"], material["signer"], 1, [Line("Servicio de prueba", 2, 5000)],
                         refs=[{"tipo": 33, "folio": 50, "codref": 1}])
    r = recepcion(client.upload(token, simkit.make_envio([nc], material["signer"]))[1])
    assert hdr(client.est_up(token, r["TRACKID"]), "ESTADO") == "EPR"
    assert query(50, "11900") == "ANC"
    # a note referencing a document SII does not have -> REF-3-750
    nc2 = simkit.make_dte(material["caf61"], material["signer"], 2, [Line("X", 1, 100)],
                          refs=[{"tipo": 33, "folio": 199, "codref": 1}])
    r = recepcion(client.upload(token, simkit.make_envio([nc2], material["signer"]))[1])
    env = next(e for e in sim.state()["envelopes"] if e["trackid"] == r["TRACKID"])
    assert [e["code"] for e in env["docs"][0]["errors"]] == ["REF-3-750"]


def test_query_tokens_signals(client: SiiClient, sim, material: dict) -> None:
    assert hdr(client.est_up("NOPE", "1"), "ESTADO") == "003"
    token = client.token(material["signer"])
    sim.configure(token_ttl_s=1)
    token2 = client.token(material["signer"])
    sim.advance_clock(5)
    assert hdr(client.est_up(token2, "1"), "ESTADO") == "002"
    # the lifetime is fixed when the token is issued: the older token is still alive
    assert hdr(client.est_up(token, "1"), "ESTADO") == "-11"


def test_state_endpoint_and_state_file(tmp_path: Path, material: dict) -> None:
    state_file = tmp_path / "sii.json"
    with sim_mod.Simulator(port=0, xsd_dir=XSD, sii_keys=material["keys_dir"], state_file=state_file,
                           config={"step_delay_s": 0}) as s:
        c = SiiClient(s.url)
        token = c.token(material["signer"])
        trackid = recepcion(c.upload(token, envio(material, [60]))[1])["TRACKID"]
        status, _h, body = c.http.request("GET", "/_sim/state")
        state = json.loads(body)
        assert status == 200
        assert [e["trackid"] for e in state["envelopes"]] == [trackid]
        assert state["envelopes"][0]["state"] == "EPR"
        assert [(d["folio"], d["estado"]) for d in state["documents"]] == [(60, "DOK")]
        assert any(ev["type"] == "upload" for ev in state["events"])
    with sim_mod.Simulator(port=0, xsd_dir=XSD, sii_keys=material["keys_dir"], state_file=state_file) as s2:
        assert [d["folio"] for d in s2.state()["documents"]] == [60]


@pytest.mark.skipif(not (simkit.SHARED / "samples").is_dir(), reason="../shared/sii samples absent")
def test_checks_agree_with_real_sii_documents() -> None:
    """The TED/CAF/signature checks on real SII documents and SII's own CAF keys."""
    checks = sim_mod.checks
    keys = checks.load_sii_keys(None, {"300": str(simkit.SHARED / "certs/sii-caf-idk300.cer"),
                                       "100": str(simkit.SHARED / "certs/sii-caf-idk100.cer")})
    good = checks.parse((simkit.SHARED / "samples/DTE--76354771-K--33--170--cleaned.xml").read_bytes())
    assert checks.verify_ted(checks.child(good, "Documento", "TED"), keys, True).ok
    assert checks.verify_dte_signature(good).ok
    broken = checks.parse((simkit.SHARED / "samples/broken/DTE--76354771-K--33--170--cleaned-mod-changed-monto.xml").read_bytes())
    assert not checks.verify_ted(checks.child(broken, "Documento", "TED"), keys, True).ok
    assert not checks.verify_dte_signature(broken).ok
    f60 = checks.parse((simkit.SHARED / "samples/F60T33-ejemplo-oficial-SII.xml").read_bytes())
    sig = [e for e in f60 if checks.local(e) == "Signature"][0]
    assert checks.verify_in_place(f60, sig, "#SetDoc").ok


@pytest.mark.skipif(XSD is None, reason="SII XSDs not found (set DTE_XSD_DIR or put them in ../shared/sii/xsd)")
def test_checks_module_compiles_schemas_from_disk_in_a_fresh_interpreter() -> None:
    """Importing the simulator's checks first (as `dte demo` does) must leave lxml able to read
    XSDs from disk: python-xmlsec imported before lxml.etree makes every later file parse fail
    (python-xmlsec issue #96), which showed up as intermittent schema errors in the demo."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from dte_native.simulator import checks\n"
        "from lxml import etree\n"
        "for name in sorted(set(checks.ROOT_SCHEMAS.values())) * 2:\n"
        "    path = sys.argv[1] + '/' + name\n"
        "    etree.XMLSchema(etree.parse(path))\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(XSD)], capture_output=True, text=True,
                         check=False, cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
