"""SII simulator: boleta REST, RegistroReclamoDTE, fault injection, admin endpoints, CLI."""
from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from lxml import etree

import simkit
from simkit import BOLETA_UA, COMPANY, SENDER, Line, SiiClient, hdr, recepcion

sim_mod = simkit.load_simulator()
XSD = simkit.xsd_dir()
SII = "{http://www.sii.cl/XMLSchema}"


@pytest.fixture(scope="module")
def material(tmp_path_factory: pytest.TempPathFactory) -> dict:
    keys_dir = tmp_path_factory.mktemp("siikeys")
    sii_key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    (keys_dir / "100.pem").write_bytes(simkit.pem_public(sii_key.public_key()))
    signer = simkit.make_signer()
    caf33 = simkit.make_caf(sii_key, tipo=33, desde=1, hasta=200)
    caf39 = simkit.make_caf(sii_key, tipo=39, desde=1, hasta=200)
    return {"keys_dir": keys_dir, "signer": signer, "caf33": caf33, "caf39": caf39}


def start(material: dict, **cfg) -> "sim_mod.Simulator":
    s = sim_mod.Simulator(port=0, xsd_dir=XSD, sii_keys=material["keys_dir"], config={"step_delay_s": 0, **cfg})
    s.start()
    return s


@pytest.fixture()
def sim(material: dict):
    s = start(material)
    yield s
    s.stop()


def envio33(material: dict, folios: list[int]) -> bytes:
    return simkit.make_envio([simkit.make_dte(material["caf33"], material["signer"], f, [Line("Servicio", 1, 10000)])
                              for f in folios], material["signer"])


# ----------------------------------------------------------------------------- boleta REST

def rest_token(c: SiiClient, signer: simkit.Signer, prefix: str = "/apicert") -> str:
    status, _h, body = c.http.request("GET", prefix + "/recursos/v1/boleta.electronica.semilla",
                                      headers={"Accept": "application/xml"})
    assert status == 200
    seed = etree.fromstring(body).findtext(f"{SII}RESP_BODY/SEMILLA")
    status, _h, body = c.http.request("POST", prefix + "/recursos/v1/boleta.electronica.token",
                                      simkit.signed_seed(seed, signer).encode(), {"Content-Type": "application/xml"})
    resp = etree.fromstring(body)
    assert resp.findtext(f"{SII}RESP_HDR/ESTADO") == "00", body
    return resp.findtext(f"{SII}RESP_BODY/TOKEN")


def rest_envio(c: SiiClient, token: str | None, data: bytes, prefix: str = "/pangal",
               ua: str = BOLETA_UA) -> tuple[int, bytes]:
    boundary = uuid.uuid4().hex
    body = b""
    for name, value in (("rutSender", SENDER.split("-")[0]), ("dvSender", SENDER.split("-")[1]),
                        ("rutCompany", COMPANY.split("-")[0]), ("dvCompany", COMPANY.split("-")[1])):
        body += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
    body += (f'--{boundary}\r\nContent-Disposition: form-data; name="archivo"; filename="boletas.xml"\r\n'
             "Content-Type: text/xml\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}", "User-Agent": ua,
               "Accept": "application/json"}
    if token:
        headers["Cookie"] = f"TOKEN={token}"
    status, _h, resp = c.http.request("POST", prefix + "/recursos/v1/boleta.electronica.envio", body, headers)
    return status, resp


def test_boleta_rest_flow(sim, material: dict) -> None:
    c = SiiClient(sim.url)
    signer = material["signer"]
    token = rest_token(c, signer)
    boletas = [simkit.make_dte(material["caf39"], signer, f, [Line("Cafe", 2, 1190)], receptor="66666666-6")
               for f in (1, 2)]
    data = simkit.make_envio(boletas, signer, boleta=True)
    # envío on the API host is refused like SII does
    status, body = rest_envio(c, token, data, prefix="/apicert")
    assert status == 500 and b"Acceso Denegado" in body
    status, body = rest_envio(c, token, data)
    answer = json.loads(body)
    assert status == 200 and answer["estado"] == "REC", answer
    trackid = answer["trackid"]
    assert len(str(trackid)) == 15
    path = f"/apicert/recursos/v1/boleta.electronica.envio/{COMPANY.split('-')[0]}-{COMPANY.split('-')[1]}-{trackid}"
    status, _h, body = c.http.request("GET", path, headers={"Cookie": f"TOKEN={token}"})
    st = json.loads(body)
    assert status == 200 and st["estado"] == "EPR"
    assert st["estadistica"] == [{"tipo": 39, "informados": 2, "aceptados": 2, "rechazados": 0, "reparos": 0}]
    assert st["detalle_rep_rech"] == []
    # document status
    today = __import__("datetime").date.fromisoformat(simkit.chile_today()).strftime("%d-%m-%Y")
    doc = (f"/boleta/recursos/v1/boleta.electronica/{COMPANY}-39-1/estado?rut_receptor=66666666&dv_receptor=6"
           f"&monto=2380&fechaEmision={today}")
    status, _h, body = c.http.request("GET", doc, headers={"Cookie": f"TOKEN={token}"})
    assert status == 200 and json.loads(body)["codigo"] == "DOK"
    # token spaces are separate; missing token / bad UA
    soap_token = c.token(signer)
    assert c.http.request("GET", path, headers={"Cookie": f"TOKEN={soap_token}"})[0] == 401
    assert c.http.request("GET", path)[0] == 400
    assert rest_envio(c, token, data, ua="Mozilla/5.0 Chrome")[0] == 401
    assert c.http.request("GET", path.replace(str(trackid), "123"), headers={"Cookie": f"TOKEN={token}"})[0] == 404
    # a REST token is not a SOAP token
    assert recepcion(c.upload(token, envio33(material, [1]))[1])["STATUS"] == "5"
    # the boleta certification set goes through DTEUpload with the SOAP token
    cert_set = simkit.make_envio([simkit.make_dte(material["caf39"], signer, 3, [Line("Pan", 1, 1000)],
                                                  receptor="66666666-6")], signer, boleta=True)
    r = recepcion(c.upload(soap_token, cert_set)[1])
    assert r["STATUS"] == "0" and len(r["TRACKID"]) == 10
    assert hdr(c.est_up(soap_token, r["TRACKID"]), "ESTADO") == "EPR"


def test_boleta_rejections_listed(sim, material: dict) -> None:
    c = SiiClient(sim.url)
    signer = material["signer"]
    token = rest_token(c, signer)
    sim.configure(reject_share=1.0)
    data = simkit.make_envio([simkit.make_dte(material["caf39"], signer, 10, [Line("Te", 1, 990)], receptor="66666666-6")],
                             signer, boleta=True)
    trackid = json.loads(rest_envio(c, token, data)[1])["trackid"]
    st = json.loads(c.http.request("GET", f"/recursos/v1/boleta.electronica.envio/{COMPANY}-{trackid}",
                                   headers={"Cookie": f"TOKEN={token}"})[2])
    assert st["estadistica"][0]["rechazados"] == 1
    assert st["detalle_rep_rech"][0]["folio"] == 10 and st["detalle_rep_rech"][0]["estado"] == "RCH"
    assert st["detalle_rep_rech"][0]["error"][0]["codigo"] == "SIM-3-900"


# ----------------------------------------------------------------------------- RegistroReclamoDTE

def ret(root: etree._Element, name: str) -> str:
    return next(e.text for e in root.iter() if isinstance(e.tag, str) and etree.QName(e).localname == name)


def test_claims_rules_and_window(sim, material: dict) -> None:
    c = SiiClient(sim.url)
    token = c.token(material["signer"])
    assert recepcion(c.upload(token, envio33(material, [1, 2]))[1])["STATUS"] == "0"

    def act(folio: int, accion: str) -> str:
        status, root = c.reclamo(token, "ingresarAceptacionReclamoDoc", 33, folio, accion)
        assert status == 200
        return ret(root, "codResp")

    assert act(1, "ACD") == "0"
    assert act(1, "ACD") == "7"
    assert act(1, "RCD") == "11"
    assert act(1, "ERM") == "0"
    assert act(1, "XYZ") == "4"
    assert act(2, "RCD") == "0"
    assert act(2, "ACD") == "12"
    assert act(2, "ERM") == "6"
    assert act(2, "RFT") == "0"
    status, root = c.reclamo(token, "listarEventosHistDoc", 33, 1)
    assert ret(root, "codResp") == "15"
    assert [e.findtext("codEvento") for e in root.iter("listaEventosDoc")] == ["ACD", "ERM"]
    assert ret(c.reclamo(token, "consultarDocDteCedible", 33, 1)[1], "codResp") == "23"
    assert ret(c.reclamo(token, "consultarDocDteCedible", 33, 2)[1], "codResp") == "24"
    fecha = ret(c.reclamo(token, "consultarFechaRecepcionSii", 33, 1)[1], "return")
    assert len(fecha) == 19 and fecha[2] == "-" and fecha[5] == "-"
    status, root = c.reclamo(token, "ingresarAceptacionReclamoDoc", 39, 1, "ACD")
    assert ret(root, "codResp") == "3"
    assert ret(c.reclamo(token, "ingresarAceptacionReclamoDoc", 33, 99, "ACD")[1], "codResp") == "18"
    # day 9 after SII reception: too late
    assert recepcion(c.upload(token, envio33(material, [3]))[1])["STATUS"] == "0"
    sim.advance_clock(8 * 86400 - 60)
    token = c.token(material["signer"])  # a week later the old token has long expired
    status, root = c.reclamo(token, "listarEventosHistDoc", 33, 3)
    assert ret(root, "codResp") == "16"
    sim.advance_clock(86400)
    token = c.token(material["signer"])
    assert ret(c.reclamo(token, "ingresarAceptacionReclamoDoc", 33, 3, "RCD")[1], "codResp") == "8"
    assert ret(c.reclamo(token, "consultarDocDteCedible", 33, 3)[1], "codResp") == "25"
    # bad token: a SOAP fault, not a 200
    status, root = c.reclamo("BAD", "listarEventosHistDoc", 33, 1)
    assert status == 500 and "TOKEN invalido" in ret(root, "faultstring")


# ----------------------------------------------------------------------------- faults

def set_faults(c: SiiClient, faults: list[dict], **extra) -> None:
    status, _h, body = c.http.request("POST", "/_sim/config", json.dumps({"faults": faults, **extra}).encode(),
                                      {"Content-Type": "application/json"})
    assert status == 200, body


def test_fault_http_level(sim, material: dict) -> None:
    c = SiiClient(sim.url)
    set_faults(c, [{"service": "seed", "kind": "http_error", "status": 503, "count": 1}])
    assert c.soap("/DTEWS/CrSeed.jws", "getSeed", [])[0] == 503
    assert c.seed().isdigit()  # count exhausted
    set_faults(c, [{"service": "seed", "kind": "drop", "count": 1}])
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        c.soap("/DTEWS/CrSeed.jws", "getSeed", [])
    set_faults(c, [{"service": "seed", "kind": "timeout", "seconds": 3, "count": 1}])
    with pytest.raises((socket.timeout, TimeoutError)):
        c.http.request("POST", "/DTEWS/CrSeed.jws", simkit.soap_envelope("getSeed", "x", []), timeout=0.5)
    set_faults(c, [{"service": "seed", "kind": "latency", "seconds": 0.2, "count": 1}])
    assert c.seed().isdigit()
    set_faults(c, [{"service": "seed", "kind": "truncated", "count": 1}])
    with pytest.raises(etree.XMLSyntaxError):
        etree.fromstring(c.soap("/DTEWS/CrSeed.jws", "getSeed", [])[1])
    set_faults(c, [{"service": "seed", "kind": "soap_fault", "count": 1}])
    status, body = c.soap("/DTEWS/CrSeed.jws", "getSeed", [])
    assert status == 500 and b"Fault" in body
    kinds = [e["kind"] for e in sim.state()["events"] if e["type"] == "fault"]
    assert kinds == ["http_error", "drop", "timeout", "latency", "truncated", "soap_fault"]


def test_fault_upload_answers(sim, material: dict) -> None:
    c = SiiClient(sim.url)
    token = c.token(material["signer"])
    set_faults(c, [{"service": "upload", "kind": "html", "count": 1}])
    assert c.upload(token, envio33(material, [1]))[1].startswith(b"<html")
    set_faults(c, [{"service": "upload", "kind": "error500", "count": 1}])
    assert c.upload(token, envio33(material, [1]))[1] == b"Error 500"
    set_faults(c, [{"service": "upload", "kind": "duplicate", "count": 1}])
    assert recepcion(c.upload(token, envio33(material, [1]))[1])["STATUS"] == "99"
    set_faults(c, [{"service": "upload", "kind": "token_expired", "count": 1}])
    assert recepcion(c.upload(token, envio33(material, [1]))[1])["STATUS"] == "5"
    # the token stays dead: the client has to renew it
    assert recepcion(c.upload(token, envio33(material, [1]))[1])["STATUS"] == "5"
    token = c.token(material["signer"])
    assert recepcion(c.upload(token, envio33(material, [1]))[1])["STATUS"] == "0"


def test_fault_token_expiry_per_service(sim, material: dict) -> None:
    c = SiiClient(sim.url)
    signer = material["signer"]
    token = c.token(signer)
    trackid = recepcion(c.upload(token, envio33(material, [5]))[1])["TRACKID"]
    set_faults(c, [{"service": "estup", "kind": "token_expired", "count": 1}])
    assert hdr(c.est_up(token, trackid), "ESTADO") == "001"
    token = c.token(signer)
    set_faults(c, [{"service": "estup", "kind": "token_expired", "signal": "002", "count": 1}])
    assert hdr(c.est_up(token, trackid), "ESTADO") == "002"
    token = c.token(signer)
    set_faults(c, [{"service": "reclamo", "kind": "token_expired", "count": 1}])
    status, root = c.reclamo(token, "listarEventosHistDoc", 33, 5)
    assert status == 500 and "TOKEN invalido" in ret(root, "faultstring")
    rtoken = rest_token(c, signer)
    set_faults(c, [{"service": "boleta_*", "kind": "token_expired", "count": 1}])
    path = f"/recursos/v1/boleta.electronica.envio/{COMPANY}-1"
    assert c.http.request("GET", path, headers={"Cookie": f"TOKEN={rtoken}"})[0] == 401


def test_fault_latin1_glosa_and_early_query(sim, material: dict) -> None:
    c = SiiClient(sim.url)
    token = c.token(material["signer"])
    trackid = recepcion(c.upload(token, envio33(material, [6]))[1])["TRACKID"]
    set_faults(c, [{"service": "estup", "kind": "latin1_glosa", "count": 1}], early_query_s=30)
    status, body = c.soap("/DTEWS/QueryEstUp.jws", "getEstUp", [("RutCompania", COMPANY.split("-")[0]),
                          ("DvCompania", COMPANY.split("-")[1]), ("TrackId", trackid), ("Token", token)])
    with pytest.raises(UnicodeDecodeError):
        body.decode("utf-8")
    assert "Recepción".encode("iso-8859-1") in body
    inner = c.est_up(token, trackid)
    assert hdr(inner, "ESTADO") == "-11" and hdr(inner, "ERR_CODE") == "2"


def test_reject_and_reparo_shares_are_reproducible(material: dict) -> None:
    outcomes = []
    for _ in range(2):
        s = start(material, reject_share=0.4, reparo_share=0.3, seed=99)
        try:
            c = SiiClient(s.url)
            token = c.token(material["signer"])
            r = recepcion(c.upload(token, envio33(material, list(range(1, 11))))[1])
            inner = c.est_up(token, r["TRACKID"])
            outcomes.append((r["TRACKID"], [d["estado"] for d in s.state()["documents"]],
                             [e.text for e in inner.iter("RECHAZADOS", "REPAROS")]))
        finally:
            s.stop()
    assert outcomes[0] == outcomes[1]
    states = outcomes[0][1]
    assert "RCH" in states and "RPR" in states and "DOK" in states


def test_admin_config_rejects_unknown_keys(sim) -> None:
    c = SiiClient(sim.url)
    status, _h, body = c.http.request("POST", "/_sim/config", b'{"faultz": []}')
    assert status == 400 and b"faultz" in body
    status, _h, body = c.http.request("POST", "/_sim/config", b'{"faults": [{"kind": "nope"}]}')
    assert status == 400
    status, _h, body = c.http.request("POST", "/_sim/clock", b'{"advance_days": 2}')
    assert status == 200 and json.loads(body)["clock_offset_s"] == 2 * 86400


def test_main_prints_url_and_serves(tmp_path: Path, material: dict) -> None:
    cfg = tmp_path / "sim.json"
    cfg.write_text(json.dumps({"step_delay_s": 0, "faults": [{"service": "seed", "kind": "error500", "count": 1}]}))
    code = ("import sys; sys.path.insert(0, %r); import simkit; "
            "sys.exit(simkit.load_simulator().main(sys.argv[1:]))" % str(Path(simkit.__file__).parent))
    args = [sys.executable, "-c", code, "--port", "0", "--config", str(cfg), "--sii-keys", str(material["keys_dir"])]
    if XSD:
        args += ["--xsd-dir", str(XSD)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        line = proc.stdout.readline()
        assert line.startswith("SII simulator listening on http://127.0.0.1:"), line + proc.stderr.read()
        url = line.split()[-1]
        c = SiiClient(url)
        assert c.soap("/DTEWS/CrSeed.jws", "getSeed", [])[1] == b"Error 500"
        assert c.seed().isdigit()
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
