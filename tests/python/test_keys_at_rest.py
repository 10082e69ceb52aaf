"""Keys at rest (issue 10): private keys and passwords never show up in CLI output, logs,
exception messages, reprs, signed documents, or (when ODOO_PATH is set) in an Odoo database dump
or its filestore. Secrets are the testkit's, made at test time and searched for by distinctive
pieces (a PEM body line is enough: a leak rarely reproduces a whole PEM byte for byte)."""
from __future__ import annotations

import base64
import getpass
import logging
import os
import re
import shutil
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Iterable

import pytest

import dte_native as dte
from dte_native import testkit

from conftest import ISSUER, document

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "pw-" + uuid.uuid4().hex[:20]  # unguessable, so a hit can only be a leak


def pem_fragments(pem: str) -> list[str]:
    """Distinctive pieces of a PEM: a few full body lines (64 chars of base64)."""
    lines = [l for l in pem.splitlines() if l and not l.startswith("-----")]
    body = [l for l in lines if len(l) >= 40]
    return body[1:6:2] or body[:1]


def caf_private_fragments(caf_xml: bytes) -> list[str]:
    m = re.search(rb"<RSASK>(.*?)</RSASK>", caf_xml, re.S)
    assert m, "testkit CAF without RSASK"
    return pem_fragments(m.group(1).decode("ascii"))


@pytest.fixture(scope="module")
def secrets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.serialization import pkcs12

    out = tmp_path_factory.mktemp("keys")
    kit = testkit.write_kit(out / "kit", rut=ISSUER, types=[33, 39], password=PASSWORD)
    key, _, _ = pkcs12.load_key_and_certificates(kit.cert_path.read_bytes(), PASSWORD.encode())
    assert key is not None
    fragments: dict[str, str] = {"p12 password": PASSWORD}
    for fmt in (serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL):
        pem = key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption()).decode()
        for i, frag in enumerate(pem_fragments(pem)):
            fragments[f"signer key ({fmt.name}) line {i}"] = frag
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fragments["signer key DER as hex"] = der[40:72].hex()
    for i, frag in enumerate(pem_fragments(kit.sii_private_key_path.read_text())):
        fragments[f"test SII key line {i}"] = frag
    for t in (33, 39):
        for i, frag in enumerate(caf_private_fragments(kit.caf_paths[t].read_bytes())):
            fragments[f"CAF {t} RSASK line {i}"] = frag
    return {"kit": kit, "fragments": fragments, "out": out}


def assert_clean(where: str, texts: Iterable[str | bytes], fragments: dict[str, str],
                 allow: Iterable[str] = ()) -> None:
    allowed = set(allow)
    for text in texts:
        if isinstance(text, bytes):
            text = text.decode("latin-1")
        for name, frag in fragments.items():
            if name in allowed:
                continue
            assert frag not in text, f"{name} found in {where}"
            # the same secret with its line breaks removed or base64-escaped in JSON
            assert frag.replace("/", "\\/") not in text, f"{name} (JSON-escaped) found in {where}"


# --- facade -----------------------------------------------------------------------------------


def test_reprs_hide_secrets(secrets: dict) -> None:
    kit = secrets["kit"]
    frags = secrets["fragments"]
    cert = kit.certificate()
    caf = kit.caf(33)
    bundle = testkit.make_certificate("11111111-1", PASSWORD)
    pair = testkit.make_rsa_key(1024)
    objects = [cert, caf, kit.keyring(), kit, bundle, pair, cert.info, caf.info]
    texts = [repr(o) for o in objects] + [str(o) for o in objects]
    assert_clean("repr()/str()", texts, frags)
    for text in texts:
        assert PASSWORD not in text
        assert "PRIVATE KEY" not in text
        assert pair.private_pem not in text and bundle.key_pem not in text
    assert "RSASK" not in caf.caf_xml, "Caf.caf_xml (copied into every TED) carries the private key"


def test_exceptions_never_carry_secrets(secrets: dict) -> None:
    kit = secrets["kit"]
    frags = secrets["fragments"]
    p12 = kit.cert_path.read_bytes()
    messages = []
    for password in (PASSWORD + "x", PASSWORD[:-1], ""):
        with pytest.raises(dte.CertificateError) as info:
            dte.Certificate.from_pkcs12(p12, password)
        messages.append(str(info.value))
        assert password == "" or password not in str(info.value)
    with pytest.raises(dte.DteError) as info:
        dte.Certificate.from_pkcs12(p12[:-40], PASSWORD)
    messages.append(str(info.value))
    caf_xml = kit.caf_paths[33].read_bytes()
    broken = [
        caf_xml.replace(b"-----END RSA PRIVATE KEY-----", b"-----END RSA PRIVATE KY-----"),
        re.sub(rb"(<RSASK>-----BEGIN RSA PRIVATE KEY-----\s*)(\S{10})", rb"\1!!!!!!!!!!", caf_xml),
        caf_xml.replace(b"</AUTORIZACION>", b""),
        caf_xml.replace(b"<TD>33</TD>", b"<TD>x</TD>"),
    ]
    for data in broken:
        assert data != caf_xml
        try:
            caf = dte.Caf.parse(data)
            caf.verify(kit.keyring())
        except dte.DteError as exc:
            messages.append(str(exc))
            messages.append(repr(exc))
    cert = kit.certificate()
    caf = kit.caf(33)
    with pytest.raises(dte.DteError) as info:  # a CAF of another type
        dte.sign(document(39), caf, cert, keyring=kit.keyring())
    messages.append(str(info.value))
    assert messages
    assert_clean("exception messages", messages, frags)
    for m in messages:
        assert PASSWORD not in m


def test_signed_documents_and_logs_carry_no_private_key(secrets: dict,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    kit = secrets["kit"]
    caplog.set_level(logging.DEBUG)
    cert = kit.certificate()
    signed = dte.sign(document(33), kit.caf(33), cert, keyring=kit.keyring())
    env = dte.envelope([signed], cert)
    report = dte.verify(env, keyring=kit.keyring())
    assert report.ok
    assert_clean("signed DTE / envelope / TED", [signed.xml, env, signed.ted_xml, repr(signed),
                                                  repr(report)], secrets["fragments"])
    assert b"RSASK" not in signed.xml
    assert_clean("Python logging", [caplog.text], secrets["fragments"])


# --- CLI --------------------------------------------------------------------------------------


def run_cli(*args: str, cwd: Path) -> tuple[int, str]:
    env = dict(os.environ, PYTHONWARNINGS="default", DTE_LOG_LEVEL="DEBUG")
    result = subprocess.run([sys.executable, "-m", "dte_native.cli", *args], capture_output=True,
                            text=True, cwd=cwd, env=env, timeout=300)
    return result.returncode, result.stdout + result.stderr


def test_cli_never_prints_secrets(secrets: dict, tmp_path: Path) -> None:
    kit = secrets["kit"]
    frags = secrets["fragments"]
    pw = str(kit.password_file)
    wrong = tmp_path / "wrong.password"
    wrong.write_text(PASSWORD + "-wrong\n")
    src = tmp_path / "t33.json"
    import json
    src.write_text(json.dumps(document(33)), encoding="utf-8")
    keys = ["--sii-keys", str(kit.sii_keys_dir)]
    caf = str(kit.caf_paths[33])
    out_xml = tmp_path / "t33.xml"
    runs = [
        run_cli("sign", str(src), "--caf", caf, "--cert", str(kit.cert_path),
                "--password-file", pw, "-o", str(out_xml), *keys, cwd=tmp_path),
        run_cli("sign", str(src), "--caf", caf, "--cert", str(kit.cert_path),
                "--password-file", pw, "--json", *keys, cwd=tmp_path),
        run_cli("sign", str(src), "--caf", caf, "--cert", str(kit.cert_path),
                "--password-file", str(wrong), *keys, cwd=tmp_path),
        run_cli("sign", str(src), "--caf", str(kit.caf_paths[39]), "--cert",
                str(kit.cert_path), "--password-file", pw, *keys, cwd=tmp_path),
        run_cli("cert", "inspect", str(kit.cert_path), "--password-file", pw, cwd=tmp_path),
        run_cli("cert", "inspect", str(kit.cert_path), "--password-file", pw, "--json", cwd=tmp_path),
        run_cli("cert", "inspect", str(kit.cert_path), "--password-file", str(wrong), cwd=tmp_path),
        run_cli("caf", "inspect", caf, *keys, cwd=tmp_path),
        run_cli("caf", "inspect", caf, "--json", *keys, cwd=tmp_path),
        run_cli("cert", "inspect", str(kit.sii_private_key_path), cwd=tmp_path),
    ]
    assert runs[0][0] == 0, runs[0][1]
    runs.append(run_cli("envelope", str(out_xml), "--cert", str(kit.cert_path),
                        "--password-file", pw, "-o", str(tmp_path / "env.xml"), cwd=tmp_path))
    runs.append(run_cli("verify", str(tmp_path / "env.xml"), "--json", *keys, cwd=tmp_path))
    assert runs[2][0] != 0 and runs[6][0] != 0  # wrong passwords are refused...
    for code, text in runs:
        assert PASSWORD not in text  # ... without echoing either password
    assert_clean("CLI output", [t for _, t in runs], frags)
    assert_clean("CLI outputs written", [out_xml.read_bytes(), (tmp_path / "env.xml").read_bytes()],
                 frags)


def test_testkit_cli_keeps_secrets_in_private_files(tmp_path: Path) -> None:
    code, text = run_cli("testkit", "--out", str(tmp_path / "kit"), "--types", "33", cwd=tmp_path)
    assert code == 0, text
    kit_dir = tmp_path / "kit"
    password = (kit_dir / "cert.password").read_text().strip()
    assert password not in text
    for frag in pem_fragments((kit_dir / "sii-private-key.pem").read_text()):
        assert frag not in text
    assert "PRIVATE KEY" not in text
    for name in ("cert.password", "sii-private-key.pem", "cert.p12"):
        mode = (kit_dir / name).stat().st_mode & 0o777
        assert mode == 0o600, f"{name} is {oct(mode)}"
    assert password not in (kit_dir / "kit.json").read_text()


# --- Odoo database ----------------------------------------------------------------------------


ODOO_SEED = textwrap.dedent("""
    import base64
    company = env.company
    company.vat = {issuer!r}
    env['ir.config_parameter'].sudo().set_param('l10n_cl_dte.trusted_sii_key_dirs', {keys!r})
    env['l10n_cl_dte.certificate'].create({{
        'p12_file': base64.b64encode(open({p12!r}, 'rb').read()),
        'p12_filename': 'cert.p12', 'p12_password': {password!r}, 'company_id': company.id}})
    env['l10n_cl_dte.caf'].create({{
        'caf_file': base64.b64encode(open({caf!r}, 'rb').read()), 'caf_filename': 'caf.xml',
        'company_id': company.id}})
    env.cr.commit()
    print('SEEDED-OK')
""")


def test_odoo_database_holds_no_secret_in_clear(secrets: dict, tmp_path: Path) -> None:
    odoo_path = os.environ.get("ODOO_PATH")
    if not odoo_path:
        pytest.skip("ODOO_PATH not set: the Odoo database leak check did not run "
                    "(set ODOO_PATH to an Odoo 19 tree, and run scripts/test-odoo once for its template)")
    if not shutil.which("pg_dump") or not shutil.which("psql"):
        pytest.skip("pg_dump/psql not installed: the Odoo database leak check did not run")
    kit = secrets["kit"]
    host = os.environ.get("ODOO_DB_HOST", "127.0.0.1")
    port = os.environ.get("ODOO_DB_PORT", "5432")
    user = os.environ.get("ODOO_DB_USER") or getpass.getuser()  # as scripts/test-odoo: id -un
    data_dir = Path(os.environ.get("ODOO_DATA_DIR", ROOT / "build" / "odoo-data"))
    template = os.environ.get("ODOO_TEMPLATE_DB", "dte_odoo_template")
    db = f"dte_keys_at_rest_{os.getpid()}"
    common = [f"--addons-path={odoo_path}/addons,{odoo_path}/odoo/addons,{ROOT}", "-D", str(data_dir),
              "--db_host", host, "--db_port", port, "--db_user", user]
    env = dict(os.environ, DTE_KEY_FILE=os.environ.get("DTE_KEY_FILE", str(data_dir / "l10n_cl_dte.key")))

    def odoo(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, f"{odoo_path}/odoo-bin", *args], input=stdin,
                              capture_output=True, text=True, cwd="/", env=env, timeout=1800)

    exists = subprocess.run(["psql", "-h", host, "-p", port, "-U", user, "-d", "postgres", "-Atqc",
                             f"SELECT 1 FROM pg_database WHERE datname = '{template}'"],
                            capture_output=True, text=True)
    if exists.stdout.strip() != "1":
        pytest.skip(f"Odoo template database {template} missing: run scripts/test-odoo once first")
    dup = odoo("db", *common, "duplicate", "-f", template, db)
    assert dup.returncode == 0, dup.stderr[-2000:]
    try:
        inst = odoo(*common, "-d", db, "-i", "l10n_cl_dte", "--stop-after-init")
        assert inst.returncode == 0, inst.stderr[-3000:]
        seed = ODOO_SEED.format(issuer=ISSUER, keys=str(kit.sii_keys_dir), p12=str(kit.cert_path),
                                password=PASSWORD, caf=str(kit.caf_paths[33]))
        shell = odoo("shell", *common, "-d", db, "--no-http", stdin=seed)
        assert "SEEDED-OK" in shell.stdout, (shell.stdout[-2000:], shell.stderr[-3000:])
        dump = subprocess.run(["pg_dump", "-h", host, "-p", port, "-U", user, "--data-only", db],
                              capture_output=True, timeout=600)
        assert dump.returncode == 0, dump.stderr[-2000:]
        texts: list[str | bytes] = [dump.stdout]
        filestore = data_dir / "filestore" / db
        if filestore.is_dir():
            texts += [p.read_bytes() for p in filestore.rglob("*") if p.is_file()]
        frags = dict(secrets["fragments"])
        p12_b64 = base64.b64encode(kit.cert_path.read_bytes()).decode()
        frags["p12 file as base64"] = p12_b64[100:160]
        frags["CAF file as base64"] = base64.b64encode(kit.caf_paths[33].read_bytes()).decode()[200:260]
        assert_clean(f"Odoo database {db} (pg_dump + filestore)", texts, frags)
        dumped = dump.stdout.decode("latin-1")
        assert "PRIVATE KEY-----" not in dumped and "<RSASK>" not in dumped
        assert_clean("Odoo server output", [inst.stdout, inst.stderr, shell.stdout, shell.stderr],
                     secrets["fragments"])
    finally:
        odoo("db", *common, "drop", db)
