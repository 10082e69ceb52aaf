#!/usr/bin/env python3
"""Writes the seed corpora of the libFuzzer targets into OUT/<target>/ (outside the repository's
tracked files: scripts/fuzz uses build/fuzz/seeds). Seeds come from two places, read at run time
and never copied into the repository: SII's public samples in /work/shared/sii (DTE_SHARED_DIR),
and material made on the spot with dte_native.testkit (signed DTEs of every type, envelopes,
CAFs, PKCS#12 bundles with the fuzzers' fixed password "fuzz").

    make_seeds.py OUT
"""
from __future__ import annotations

import copy
import hashlib
import html
import json
import os
import sys
import tempfile
from pathlib import Path

SHARED = Path(os.environ.get("DTE_SHARED_DIR", Path(__file__).resolve().parents[2] / "shared" / "sii"))
FUZZ_PASSWORD = "fuzz"  # must match fuzz_pkcs12.cpp
TARGETS = ["fuzz_verify", "fuzz_caf", "fuzz_pkcs12", "fuzz_sii_answers", "fuzz_input", "fuzz_schema",
           "fuzz_mime", "fuzz_csv", "fuzz_rcv_answer"]


def rcv_answer_seeds(csv_files: list[Path]) -> list[str]:
    """Answers of SII's RCV facade: a summary, exports (lines or one text), error codes."""
    ok = {"codRespuesta": 0, "msgeRespuesta": "OK"}
    out = [json.dumps({"respEstado": ok, "data": [
        {"rsmnTipoDocInteger": 33, "rsmnTotDoc": 2, "rsmnMntExe": 0, "rsmnMntNeto": 1000,
         "rsmnMntIVA": 190, "rsmnMntTotal": 1190},
        {"rsmnTipoDocInteger": 61, "rsmnTotDoc": "1", "rsmnMntTotal": -50}]}),
        json.dumps({"respEstado": {"codRespuesta": 3, "msgeRespuesta": "token no es valido"}}),
        json.dumps({"respEstado": {"codRespuesta": 99, "msgeRespuesta": "error"}, "data": None}),
        "<html>mantenimiento</html>"]
    for p in csv_files[:3]:
        text = p.read_text(encoding="utf-8", errors="replace")
        out.append(json.dumps({"respEstado": ok, "data": text.splitlines()}))
        out.append(json.dumps({"respEstado": ok, "data": text}))
    return out


class Corpus:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.counts: dict[str, int] = {t: 0 for t in TARGETS}
        for t in TARGETS:
            (out / t).mkdir(parents=True, exist_ok=True)

    def add(self, target: str, data: bytes) -> None:
        name = hashlib.sha1(data).hexdigest()
        path = self.out / target / name
        if not path.exists():
            path.write_bytes(data)
            self.counts[target] += 1


def shared_files(*patterns: str) -> list[Path]:
    if not SHARED.is_dir():
        return []
    found: list[Path] = []
    for pattern in patterns:
        found.extend(sorted(SHARED.glob(pattern)))
    return [p for p in found if p.is_file()]


# SII answers as they come over the wire: RPC SOAP with the XML escaped inside *Return,
# the DTEUpload multipart answer, the boleta REST JSON, the claims web service.
def rpc(op: str, inner_escaped: str) -> str:
    return ('<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv='
            '"http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body><ns1:' + op + 'Response '
            'xmlns:ns1="http://DefaultNamespace"><ns1:' + op + 'Return>' + inner_escaped +
            '</ns1:' + op + 'Return></ns1:' + op + 'Response></soapenv:Body></soapenv:Envelope>')


def respuesta(hdr: str, body: str = "") -> str:
    return ('<?xml version="1.0" encoding="UTF-8"?><SII:RESPUESTA xmlns:SII="http://www.sii.cl/XMLSchema">'
            "<SII:RESP_HDR>" + hdr + "</SII:RESP_HDR>" +
            ("<SII:RESP_BODY>" + body + "</SII:RESP_BODY>" if body else "") + "</SII:RESPUESTA>")


def claim(op: str, inner: str) -> str:
    return ('<S:Envelope xmlns:S="http://schemas.xmlsoap.org/soap/envelope/"><S:Body><ns2:' + op +
            'Response xmlns:ns2="http://ws.registroreclamodte.diii.sdi.sii.cl"><return>' + inner +
            "</return></ns2:" + op + "Response></S:Body></S:Envelope>")


def sii_answer_seeds() -> list[tuple[int, str]]:
    counts = ("<TIPO_DOCTO>33</TIPO_DOCTO><INFORMADOS>3</INFORMADOS><ACEPTADOS>2</ACEPTADOS>"
              "<RECHAZADOS>1</RECHAZADOS><REPAROS>0</REPAROS>")
    seed = respuesta("<ESTADO>00</ESTADO>", "<SEMILLA>000012345678</SEMILLA>")
    token = respuesta("<ESTADO>00</ESTADO><GLOSA>Token Creado</GLOSA>", "<TOKEN>ABCDEF123</TOKEN>")
    est = respuesta("<TRACKID>123</TRACKID><ESTADO>EPR</ESTADO><GLOSA>Envio Procesado</GLOSA>", counts)
    fault = ('<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>'
             "<soapenv:Fault><faultcode>s</faultcode><faultstring>Error de Autenticacion</faultstring>"
             "</soapenv:Fault></soapenv:Body></soapenv:Envelope>")
    upload = ('<?xml version="1.0"?>\n<RECEPCIONDTE><RUTSENDER>11111111-1</RUTSENDER><RUTCOMPANY>'
              "76543210-3</RUTCOMPANY><FILE>envio.xml</FILE><TIMESTAMP>2025-01-15 10:00:00</TIMESTAMP>"
              "<STATUS>0</STATUS><TRACKID>0000000042</TRACKID></RECEPCIONDTE>")
    upload7 = ('<RECEPCIONDTE><STATUS>7</STATUS><DETAIL><ERROR>LSX-00213 bad</ERROR></DETAIL>'
               "</RECEPCIONDTE>")
    boleta = json.dumps({"trackid": 123, "estado": "EPR", "estadistica": [
        {"tipo": 39, "informados": 2, "aceptados": 1, "rechazados": 1, "reparos": 0}],
        "detalle_rep_rech": [{"tipo": 39, "folio": 7, "estado": "RCH", "descripcion": "x",
                              "error": [{"codigo": "DTE-3-101", "descripcion": "folio repetido"}]}]})
    ev = ("<listaEventosDoc><codEvento>ACD</codEvento><descEvento>Acepta</descEvento>"
          "<rutResponsable>11111111</rutResponsable><dvResponsable>1</dvResponsable>"
          "<fechaEvento>01-01-2026 10:00:00</fechaEvento></listaEventosDoc>")
    return [
        (0, rpc("getSeed", html.escape(seed, quote=False))), (0, fault),
        (1, rpc("getToken", html.escape(token, quote=False))), (1, fault),
        (2, seed), (2, est),
        (3, rpc("getEstUp", html.escape(est, quote=False))),
        (4, upload), (4, upload7),
        (5, boleta), (5, '{"estado": "EPR", "estadistica": [], "detalle_rep_rech": null}'),
        (6, claim("ingresarAceptacionReclamoDoc", "<codResp>8</codResp><descResp>Pasados</descResp>")),
        (7, claim("listarEventosHistDoc", "<codResp>15</codResp>" + ev + ev)),
        (7, claim("consultarFechaRecepcionSii", "01-02-2026 10:11:12")),
    ]


def mime_seeds(name: str, xml: bytes) -> list[bytes]:
    """E-mails as a receiving mailbox gets them: the XML attached in base64, quoted-printable,
    inline, nested in multipart/mixed + alternative, with a Latin-1 subject."""
    from email.message import EmailMessage
    from email.mime.application import MIMEApplication
    from email.mime.multipart import MIMEMultipart
    from email.mime.text import MIMEText
    out: list[bytes] = []
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = "dte@emisor.cl", "recepcion@receptor.cl", "Envío DTE"
    m.set_content("Adjunto DTE")
    m.add_attachment(xml, maintype="application", subtype="xml", filename=name)
    out.append(m.as_bytes())
    mixed = MIMEMultipart("mixed")
    alt = MIMEMultipart("alternative")
    alt.attach(MIMEText("texto", "plain", "iso-8859-1"))
    alt.attach(MIMEText("<p>html</p>", "html", "utf-8"))
    mixed.attach(alt)
    part = MIMEApplication(xml, "xml")  # base64
    part.add_header("Content-Disposition", "attachment", filename=name)
    mixed.attach(part)
    text = MIMEText(xml.decode("latin-1"), "xml", "iso-8859-1")  # quoted-printable
    mixed.attach(text)
    out.append(mixed.as_bytes())
    raw8 = (b"From: a@b.cl\r\nTo: c@d.cl\r\nSubject: =?ISO-8859-1?Q?Env=EDo?=\r\nMIME-Version: 1.0\r\n"
            b'Content-Type: multipart/mixed; boundary="XX"\r\n\r\n--XX\r\n'
            b"Content-Type: text/plain\r\n\r\nhola\r\n--XX\r\n"
            b'Content-Type: application/octet-stream; name="' + name.encode() + b'"\r\n'
            b"Content-Transfer-Encoding: 8bit\r\n\r\n" + xml + b"\r\n--XX--\r\n")
    out.append(raw8)
    return out


def main() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "build/fuzz/seeds")
    corpus = Corpus(out)

    for p in shared_files("samples/*.xml", "samples/broken/*.xml", "samples/derived/*.xml",
                          "samples/templates/*.xml"):
        data = p.read_bytes()
        corpus.add("fuzz_verify", data)
        corpus.add("fuzz_schema", data)
        corpus.add("fuzz_sii_answers", bytes([8]) + data)
    for p in shared_files("caf/*"):
        corpus.add("fuzz_caf", p.read_bytes())
    for p in shared_files("certs/*.der", "certs/*.pem", "certs/*.cer"):
        corpus.add("fuzz_pkcs12", p.read_bytes())  # exercises public_only() and the p12 refusal
    for p in shared_files("sets/libredte-json-examples/*.json"):
        corpus.add("fuzz_input", p.read_bytes())
    for p in shared_files("books/rcv/*.csv"):
        corpus.add("fuzz_csv", bytes([0]) + p.read_bytes())
    for p in shared_files("books/libredte/*.csv"):
        corpus.add("fuzz_csv", bytes([3 if "guia" in p.name else 2]) + p.read_bytes())
    for p in shared_files("samples/DTE--*--cleaned.xml", "samples/libredte-*.xml")[:4]:
        for message in mime_seeds(p.name, p.read_bytes()):
            corpus.add("fuzz_mime", message)
    for answer in rcv_answer_seeds(shared_files("books/rcv/*.csv")):
        corpus.add("fuzz_rcv_answer", bytes([0]) + answer.encode("utf-8"))
    for selector, text in sii_answer_seeds():
        corpus.add("fuzz_sii_answers", bytes([selector]) + text.encode("utf-8"))

    try:
        import dte_native as dte
        from dte_native import testkit
    except ImportError as exc:  # the C++ fuzzers still have the shared seeds
        print(f"make_seeds: dte_native not importable ({exc}); testkit seeds skipped", file=sys.stderr)
    else:
        for t in dte.example_types():
            corpus.add("fuzz_input", json.dumps(dte.example(t)).encode("utf-8"))
        with tempfile.TemporaryDirectory() as tmp:
            issuer = testkit.DEFAULT_ISSUER_RUT
            types = list(dte.supported_types())
            kit = testkit.write_kit(tmp, rut=issuer, types=types, password=FUZZ_PASSWORD)
            cert = kit.certificate()
            ring = kit.keyring()
            signed = []
            for t in types:
                corpus.add("fuzz_caf", kit.caf_paths[t].read_bytes())
                doc = copy.deepcopy(dte.example(t))
                doc["Encabezado"]["IdDoc"]["Folio"] = 1
                doc["Encabezado"]["Emisor"]["RUTEmisor"] = issuer
                s = dte.sign(doc, kit.caf(t), cert, keyring=ring)
                signed.append(s)
                corpus.add("fuzz_verify", s.xml)
                corpus.add("fuzz_schema", s.xml)
            boletas = [s for s in signed if s.doc_type in (39, 41)]
            others = [s for s in signed if s.doc_type not in (39, 41)]
            for group in (others, boletas):
                if group:
                    env = dte.envelope(group, cert)
                    corpus.add("fuzz_verify", env)
                    corpus.add("fuzz_schema", env)
                    corpus.add("fuzz_sii_answers", bytes([8]) + env)
            corpus.add("fuzz_pkcs12", kit.cert_path.read_bytes())
            legacy = testkit.make_certificate(kit.signer_rut, FUZZ_PASSWORD, legacy_pkcs12=True)
            corpus.add("fuzz_pkcs12", legacy.p12)
            corpus.add("fuzz_pkcs12", legacy.cert_pem.encode("ascii"))

    totals = {t: sum(1 for _ in (out / t).iterdir()) for t in TARGETS}
    print("make_seeds:", ", ".join(f"{t}={n}" for t, n in totals.items()), "->", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
