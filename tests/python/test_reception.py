"""Reception end to end with real components: a Dovecot IMAP server started here on loopback
(temporary config, passwd-file user, maildir in tmp), an aiosmtpd SMTP sink receiving the
answers, and the SII simulator for acceptance and claims."""
from __future__ import annotations

import email.policy
import io
import json
import zipfile
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Iterator

import pytest

import dte_native as dte
from dte_native import cli, reception, sii, testkit
import simkit
from conftest import ISSUER, document

COMPANY = "77123456-9"  # RUTRecep of the shipped examples: "our" company
Dovecot = testkit.DovecotServer


@pytest.fixture()
def dovecot() -> Iterator[Dovecot]:
    try:
        server = testkit.DovecotServer()
    except (FileNotFoundError, RuntimeError) as e:
        pytest.skip(str(e))
    try:
        yield server
    finally:
        server.stop()


class Sink:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.content)))
        return "250 OK"


@pytest.fixture()
def smtp_sink() -> Iterator[tuple[Sink, int]]:
    controller_mod = pytest.importorskip("aiosmtpd.controller", reason="aiosmtpd not installed (requirements-dev.txt)")
    sink = Sink()
    port = testkit.free_port()
    ctl = controller_mod.Controller(sink, hostname="127.0.0.1", port=port)
    ctl.start()
    yield sink, port
    ctl.stop()


# ----------------------------------------------------------------------------- material


class Supplier:
    """The supplier side: the session kit is the issuer, our company the receiver."""

    def __init__(self, cafs: dict[int, dte.Caf], cert: dte.Certificate, keyring: dte.SiiKeyring) -> None:
        self.cafs, self.cert, self.keyring, self.folio = cafs, cert, keyring, 400

    def dte(self, caf: dte.Caf | None = None) -> dte.SignedDte:
        self.folio += 1
        return dte.sign(document(33, self.folio), caf or self.cafs[33], self.cert, keyring=self.keyring,
                        verify_caf=caf is None)

    def envelope(self, *signed: dte.SignedDte, receiver: str = COMPANY) -> bytes:
        return dte.envelope(list(signed), self.cert, receiver=receiver, resolution_date="2014-08-22")


def mail(attachments: list[tuple[str, bytes]], *, qp: bool = False, subject: str = "Envío de DTE") -> bytes:
    """Built with Python's email package (not our GMime builder): nested multipart, base64 or QP."""
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = "Proveedor <dte@proveedor.cl>"
    msg["Reply-To"] = "intercambio@proveedor.cl"
    msg["To"] = "recepcion@empresa.cl"
    msg["Subject"] = subject
    msg.set_content("Adjuntamos DTE.\nSaludos, Compañía")
    msg.add_alternative("<p>Adjuntamos DTE</p>", subtype="html")
    for name, data in attachments:
        msg.add_attachment(data, maintype="application", subtype="xml", filename=name,
                           cte="quoted-printable" if qp else "base64")
    return msg.as_bytes()


@pytest.fixture()
def supplier(cafs: dict[int, dte.Caf], cert: dte.Certificate, keyring: dte.SiiKeyring) -> Supplier:
    return Supplier(cafs, cert, keyring)


# ----------------------------------------------------------------------------- tests


def test_process_message_verifies_and_quarantines(supplier: Supplier, keyring: dte.SiiKeyring,
                                                  xsd_dir: Path) -> None:
    good = supplier.envelope(supplier.dte(), supplier.dte())
    out = reception.process_message(mail([("ENVIO_DTE.xml", good)], qp=True), company_rut=COMPANY,
                                    keyring=keyring)
    assert not out.quarantined, out.reason
    assert out.reply_to == "intercambio@proveedor.cl"
    assert [i.status for i in out.items] == ["verified"]
    env = out.items[0].envelope
    assert env is not None and env.ok and env.state == 0 and len(env.documents) == 2
    names = {c.name for c in env.checks}
    assert {"schema", "envelope.signature", "dte.signature", "ted.frmt", "ted.caf", "receiver.rut",
            "duplicate"} <= names

    # Already received: a duplicate, answered as repeated.
    again = reception.process_message(mail([("ENVIO_DTE.xml", good)]), company_rut=COMPANY,
                                      keyring=keyring, known=[d.key for d in out.documents])
    assert again.quarantined and again.items[0].envelope and again.items[0].envelope.state == 90

    rogue_sii = testkit.make_rsa_key()
    rogue_caf = dte.Caf.parse(testkit.make_caf(ISSUER, 33, rogue_sii.private_pem, folio_from=900, folio_to=910))
    saved, supplier.folio = supplier.folio, 899
    untrusted = supplier.envelope(supplier.dte(rogue_caf))
    supplier.folio = saved
    tampered = good.replace(b"<MntTotal>", b"<MntTotal>1", 1)
    cases = {
        "wrong receiver": (supplier.envelope(supplier.dte(), receiver="96790240-3"), "RUT receptor"),
        "tampered": (tampered, ""),
        "untrusted CAF": (untrusted, "ted.caf: FRMA does not verify"),
        "xxe": (b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>', "unreadable"),
        "billion laughs": (b'<!DOCTYPE l [<!ENTITY a "aa"><!ENTITY b "&a;&a;&a;">]><l>&b;</l>', "unreadable"),
        "not xml": (b"%PDF-1.4 not xml at all", "mime.not_xml"),
    }
    for label, (payload, expected) in cases.items():
        res = reception.process_message(mail([(f"{label}.xml", payload)]), company_rut=COMPANY, keyring=keyring)
        assert res.quarantined, label
        assert res.reason, label
        assert expected in res.reason, (label, res.reason)
    broken = reception.process_message(b"\x00\x01garbage\r\n\r\n--", company_rut=COMPANY, keyring=keyring)
    assert broken.quarantined and broken.reason
    big = reception.process_message(mail([("big.xml", b"<a>" + b"x" * 5000 + b"</a>")]),
                                    company_rut=COMPANY, keyring=keyring, max_attachment_bytes=1000)
    assert big.quarantined and "mime.oversized" in big.reason


def zip_bytes(files: list[tuple[str, bytes]], *, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as z:
        for name, data in files:
            z.writestr(name, data)
    return buf.getvalue()


def zip_mail(data: bytes, name: str = "dte.zip") -> bytes:
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = "Proveedor <dte@proveedor.cl>"
    msg["To"] = "recepcion@empresa.cl"
    msg["Subject"] = "DTE comprimido"
    msg.set_content("Adjuntamos DTE en zip.")
    msg.add_attachment(data, maintype="application", subtype="zip", filename=name)
    return msg.as_bytes()


def test_zip_attachments_verified_or_quarantined_with_reason(supplier: Supplier, keyring: dte.SiiKeyring,
                                                             xsd_dir: Path) -> None:
    good = supplier.envelope(supplier.dte())
    # An EnvioDTE inside a zip (with a PDF and a path that tries to climb out) is found and verified.
    ok = reception.process_message(zip_mail(zip_bytes([("../../x/ENVIO_DTE.xml", good), ("f.pdf", b"%PDF-1.4")])),
                                   company_rut=COMPANY, keyring=keyring)
    assert not ok.quarantined, ok.reason
    assert [(i.filename, i.status) for i in ok.items] == [("ENVIO_DTE.xml", "verified")]
    # One nested zip is opened too.
    nested = reception.process_message(zip_mail(zip_bytes([("in.zip", zip_bytes([("e.xml", good)]))])),
                                       company_rut=COMPANY, keyring=keyring, known=[])
    assert [i.status for i in nested.items] == ["verified"], nested.reason

    # Encrypted: the "encrypted" flag set on a stored entry (what any password-protected zip has).
    plain = bytearray(zip_bytes([("ENVIO_DTE.xml", good)], compression=zipfile.ZIP_STORED))
    plain[6] |= 1  # local header general purpose flags
    cd = plain.rfind(b"PK\x01\x02")
    plain[cd + 8] |= 1  # central directory flags
    bomb = zip_bytes([("bomb.xml", b"<a>" + b" " * (20 * 1024 * 1024) + b"</a>")])
    deep = zip_bytes([("a.zip", zip_bytes([("b.zip", zip_bytes([("c.xml", good)]))]))])
    cases = {
        "encrypted": (bytes(plain), "mime.zip_encrypted"),
        "bomb": (bomb, "mime.zip_bomb"),
        "corrupt": (good[:10] + b"PK\x03\x04" + b"\x00" * 40, "mime.zip_corrupt"),
        "truncated": (zip_bytes([("ENVIO_DTE.xml", good)])[:-30], "mime.zip_corrupt"),
        "too deep": (deep, "mime.zip_nested"),
        "not xml inside": (zip_bytes([("ENVIO_DTE.xml", b"%PDF not xml")]), "mime.not_xml"),
    }
    for label, (payload, code) in cases.items():
        res = reception.process_message(zip_mail(payload), company_rut=COMPANY, keyring=keyring)
        assert res.quarantined, label
        assert code in res.reason, (label, res.reason)
        assert not any(i.status == "verified" for i in res.items), label
    assert len(bomb) < 100_000  # what arrived was small: the ratio gave it away


def test_inbox_from_dovecot_answers_by_smtp_and_claims_at_sii(
        dovecot: Dovecot, smtp_sink: tuple[Sink, int], supplier: Supplier, keyring: dte.SiiKeyring,
        cert: dte.Certificate, kit: testkit.TestKit, tmp_path: Path, xsd_dir: Path) -> None:
    a, b = supplier.dte(), supplier.dte()
    good = supplier.envelope(a, b)
    dovecot.deliver(mail([("ENVIO_DTE_1.xml", good)]))
    dovecot.deliver(mail([("x.xml", supplier.envelope(supplier.dte(), receiver="96790240-3"))]))
    dovecot.deliver(b"From: spam@x.cl\r\nSubject: hola\r\n\r\nsin adjuntos\r\n")

    store = tmp_path / "store"
    entries = reception.run_inbox(dovecot.url, "recepcion", "secreto", store, company_rut=COMPANY, keyring=keyring)
    assert [e.outcome.quarantined for e in entries] == [False, True, True]
    assert entries[0].path.parent.name == "accepted" and b"ENVIO_DTE_1.xml" in entries[0].path.read_bytes()
    assert (store / "quarantine" / f"{entries[1].path.stem}.json").exists()
    state = json.loads((store / "state.json").read_text())
    assert state["last_uid"] == entries[-1].uid and len(state["known"]) == 2
    # Nothing is processed twice; a new mail is the only thing the next run sees.
    assert reception.run_inbox(dovecot.url, "recepcion", "secreto", store, company_rut=COMPANY, keyring=keyring) == []
    dovecot.deliver(mail([("dup.xml", good)]))
    again = reception.run_inbox(dovecot.url, "recepcion", "secreto", store, company_rut=COMPANY, keyring=keyring)
    assert len(again) == 1 and again[0].outcome.quarantined  # the same DTEs: repeated
    assert reception.fetch_inbox(dovecot.url, "recepcion", "secreto", since_uid=0).uid_validity == state["uid_validity"]

    # Answers: reception, acceptance and receipt, each signed and schema-valid, mailed to the supplier.
    env = entries[0].outcome.items[0].envelope
    assert env is not None
    answers = [reception.respond(env, cert, "receive", company_rut=COMPANY, file_name="ENVIO_DTE_1.xml"),
               reception.respond(env, cert, "accept", company_rut=COMPANY),
               reception.respond(env, cert, "receipt", company_rut=COMPANY, recinto="Bodega Central")]
    for name, xml in answers:
        assert dte.validate(xml).valid, (name, dte.validate(xml))
        assert dte.verify(xml, keyring=keyring).ok, name
    recibos = answers[2][1]
    assert recibos.count(b"</Signature>") == 3  # two receipts and the set
    assert reception.RECIBO_DECLARACION.encode() in recibos
    sink, port = smtp_sink
    reception.send_answer("127.0.0.1", port, "dte@empresa.cl", entries[0].outcome.reply_to,
                          "Respuesta DTE", answers)
    assert len(sink.messages) == 1
    sender, rcpts, raw = sink.messages[0]
    assert rcpts == ["intercambio@proveedor.cl"]
    back = reception.process_message(raw, company_rut=ISSUER, keyring=keyring)
    assert [i.kind for i in back.items] == ["RespuestaDTE", "RespuestaDTE", "EnvioRecibos"]
    assert all(i.status == "answer" for i in back.items), [(i.status, i.reason) for i in back.items]

    # Acceptance / claim at SII (the simulator), after the supplier uploaded the DTEs.
    sim = simkit.load_simulator().Simulator(port=0, xsd_dir=simkit.xsd_dir(), sii_keys=kit.sii_keys_dir,
                                            config={"step_delay_s": 0})
    sim.start()
    try:
        client = sii.SiiClient(cert, sii.ClientConfig("simulator", base_url=sim.url, timeout_s=5.0,
                                                      max_attempts=2))
        client.upload(dte.envelope([a, b], cert, resolution_date="2014-08-22"))  # to SII
        docs = env.documents
        assert reception.claim_at_sii(client, docs[0], "ACD").code == 0
        assert reception.claim_at_sii(client, docs[1], "RCD").code == 0
    finally:
        sim.stop()


def test_cli_inbox_and_respond(dovecot: Dovecot, supplier: Supplier, kit: testkit.TestKit, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str], xsd_dir: Path) -> None:
    good = supplier.envelope(supplier.dte())
    dovecot.deliver(mail([("ENVIO_DTE.xml", good)]))
    dovecot.deliver(mail([("bad.xml", b"<!DOCTYPE a [<!ENTITY x 'y'>]><a>&x;</a>")]))
    pw = tmp_path / "imap.pw"
    pw.write_text("secreto\n")
    base = ["inbox", "--imap", dovecot.url, "--user", "recepcion", "--password-file", str(pw),
            "--company-rut", COMPANY, "--sii-keys", str(kit.sii_keys_dir)]
    assert cli.main(base + ["--json"]) == 1  # one quarantined
    rows = json.loads(capsys.readouterr().out)
    assert [r["quarantined"] for r in rows] == [False, True]
    assert rows[0]["items"][0]["status"] == "verified"
    assert cli.main(base + ["--store", str(tmp_path / "store")]) == 1
    table = capsys.readouterr().out
    assert "verified" in table and "unreadable" in table and "2 message(s), 1 quarantined" in table

    stored = sorted((tmp_path / "store" / "accepted").glob("*.eml"))[0]
    out = tmp_path / "ResultadoDTE.xml"
    assert cli.main(["respond", str(stored), "--action", "reject", "--reason", "Precio no corresponde",
                     "--code", "-1", "--company-rut", COMPANY, "--cert", str(kit.cert_path),
                     "--password-file", str(kit.password_file), "--sii-keys", str(kit.sii_keys_dir),
                     "-o", str(out)]) == 0
    xml = out.read_bytes()
    assert b"<EstadoDTE>2</EstadoDTE>" in xml and b"<CodRchDsc>-1</CodRchDsc>" in xml
    assert dte.validate(xml).valid
