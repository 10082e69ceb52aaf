"""The `dte` command line: its contract (arguments, outputs, exit codes)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import dte_native as dte
from dte_native import cli, testkit
from dte_native.cli import main

from conftest import ISSUER, document


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def cli_kit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "kit"
    assert main(["testkit", "--out", str(out), "--types", "33,39,61"]) == 0
    return out


def test_testkit_layout(cli_kit: Path) -> None:
    assert (cli_kit / "sii-keys" / "100.pem").is_file()
    for t in (33, 39, 61):
        assert dte.Caf.load(cli_kit / f"caf-{t}.xml").info.doc_type == t
    assert (cli_kit / "cert.p12").is_file() and (cli_kit / "cert.password").is_file()
    assert oct((cli_kit / "cert.password").stat().st_mode & 0o777) == "0o600"
    summary = json.loads((cli_kit / "kit.json").read_text())
    assert summary["issuer_rut"] == ISSUER
    password = (cli_kit / "cert.password").read_text().strip()
    assert password not in (cli_kit / "kit.json").read_text()


def test_example(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "example", "33")
    assert code == 0
    assert json.loads(out)["Encabezado"]["IdDoc"]["TipoDTE"] == 33
    code, _, err = run(capsys, "example", "999")
    assert code == 2 and err.startswith("dte: error: DocumentError example.unknown:")


def _sign(capsys: pytest.CaptureFixture[str], kit: Path, tmp: Path, doc_type: int,
          *extra: str) -> tuple[int, str, str]:
    src = tmp / f"in{doc_type}.json"
    src.write_text(json.dumps(document(doc_type)))
    return run(capsys, "sign", str(src), "--caf", str(kit / f"caf-{doc_type}.xml"),
               "--cert", str(kit / "cert.p12"), "--password-file", str(kit / "cert.password"),
               *extra)


def test_sign_verify_validate(capsys: pytest.CaptureFixture[str], cli_kit: Path,
                              tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out_xml = tmp_path / "T33F1.xml"
    code, out, err = _sign(capsys, cli_kit, tmp_path, 33, "-o", str(out_xml), "--sii-keys",
                           str(cli_kit / "sii-keys"), "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["id"] == "T33F1" and summary["output"] == str(out_xml)
    password = (cli_kit / "cert.password").read_text().strip()
    assert password not in out + err and "PRIVATE KEY" not in out + err

    code, out, err = run(capsys, "verify", str(out_xml), "--sii-keys", str(cli_kit / "sii-keys"))
    assert code == 0, out + err
    assert "result: OK" in out

    code, out, _ = run(capsys, "verify", str(out_xml), "--json", "--sii-keys",
                       str(cli_kit / "sii-keys"))
    assert code == 0 and json.loads(out)["ok"] is True

    code, out, _ = run(capsys, "validate", str(out_xml), "--json")
    if dte.schema_dir() is not None:
        assert code == 0 and json.loads(out)["valid"] is True

    # Without the test key the CAF's SII signature (ted.caf) cannot be trusted: exit 1. With
    # SII's key for IDK 100 shipped, the FRMA fails against it; with no key for IDK 100 at all
    # (a package built without ../shared), the check cannot run and the result says so.
    monkeypatch.delenv("DTE_SII_KEYS", raising=False)
    code, out, _ = run(capsys, "verify", str(out_xml))
    assert code == 1
    result = out.split("result:")[1]
    assert "ted.caf" in result or ("NOT TRUSTED" in result and "IDK 100" in result
                                   and "--sii-keys" in result), out
    monkeypatch.setattr(cli, "_keyring", lambda dirs: dte.SiiKeyring())  # no key for any IDK
    code, out, _ = run(capsys, "verify", str(out_xml), "--json")
    report = json.loads(out)
    assert code == 1 and report["ok"] is False
    assert [u["name"] for u in report["untrusted"]] == ["ted.caf"]
    code, out, _ = run(capsys, "verify", str(out_xml))
    assert code == 1 and "result: NOT TRUSTED" in out and "100.pem" in out


def test_sign_to_stdout_and_env_keys(capsys: pytest.CaptureFixture[str], cli_kit: Path,
                                     tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DTE_SII_KEYS", str(cli_kit / "sii-keys"))
    # capsys captures text; the XML goes to sys.stdout.buffer, so use a real process here.
    src = tmp_path / "in.json"
    src.write_text(json.dumps(document(61)))
    result = subprocess.run(
        [sys.executable, "-m", "dte_native.cli", "sign", str(src), "--caf",
         str(cli_kit / "caf-61.xml"), "--cert", str(cli_kit / "cert.p12"), "--password-file",
         str(cli_kit / "cert.password")],
        capture_output=True, cwd=tmp_path, env=os.environ | {"DTE_SII_KEYS": str(cli_kit / "sii-keys")},
        timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(b'<?xml version="1.0" encoding="ISO-8859-1"?>')
    (tmp_path / "T61.xml").write_bytes(result.stdout)
    code, _, _ = run(capsys, "verify", str(tmp_path / "T61.xml"))
    assert code == 0


def test_sign_errors(capsys: pytest.CaptureFixture[str], cli_kit: Path, tmp_path: Path) -> None:
    # CAF of another type
    src = tmp_path / "in.json"
    src.write_text(json.dumps(document(33)))
    common = ["--cert", str(cli_kit / "cert.p12"), "--password-file", str(cli_kit / "cert.password"),
              "--sii-keys", str(cli_kit / "sii-keys")]
    code, _, err = run(capsys, "sign", str(src), "--caf", str(cli_kit / "caf-61.xml"), *common)
    assert code == 2 and err.startswith("dte: error: CafError caf.wrong_type:"), err
    assert err.count("\n") == 1

    # wrong password
    bad = tmp_path / "bad.password"
    bad.write_text("nope\n")
    code, _, err = run(capsys, "sign", str(src), "--caf", str(cli_kit / "caf-33.xml"), "--cert",
                       str(cli_kit / "cert.p12"), "--password-file", str(bad))
    assert code == 2 and "CertificateError cert.wrong_password" in err and "nope" not in err

    # not JSON, missing file
    (tmp_path / "x.json").write_text("{oops")
    assert run(capsys, "sign", str(tmp_path / "x.json"), "--caf", str(cli_kit / "caf-33.xml"),
               *common)[0] == 2
    assert run(capsys, "sign", str(tmp_path / "missing.json"), "--caf",
               str(cli_kit / "caf-33.xml"), *common)[0] == 2


def test_envelope_cli(capsys: pytest.CaptureFixture[str], cli_kit: Path, tmp_path: Path) -> None:
    keys = ["--sii-keys", str(cli_kit / "sii-keys")]
    files = []
    for t in (33, 61):
        out = tmp_path / f"T{t}.xml"
        assert _sign(capsys, cli_kit, tmp_path, t, "-o", str(out), *keys)[0] == 0
        files.append(str(out))
    env = tmp_path / "envio.xml"
    code, _, err = run(capsys, "envelope", *files, "--cert", str(cli_kit / "cert.p12"),
                       "--password-file", str(cli_kit / "cert.password"), "--resolution-date",
                       "2014-08-22", "--resolution-number", "0", "-o", str(env))
    assert code == 0, err
    code, out, _ = run(capsys, "verify", str(env), *keys)
    assert code == 0, out

    boleta = tmp_path / "B39.xml"
    assert _sign(capsys, cli_kit, tmp_path, 39, "-o", str(boleta), *keys)[0] == 0
    envb = tmp_path / "envio-boleta.xml"
    code, _, err = run(capsys, "envelope", str(boleta), "--boleta", "--cert",
                       str(cli_kit / "cert.p12"), "--password-file", str(cli_kit / "cert.password"),
                       "--receiver", "60803000-K", "-o", str(envb))
    assert code == 0, err
    assert b"<EnvioBOLETA" in envb.read_bytes()
    assert run(capsys, "verify", str(envb), *keys)[0] == 0


def test_verify_exit_codes(capsys: pytest.CaptureFixture[str], cli_kit: Path, tmp_path: Path) -> None:
    keys = ["--sii-keys", str(cli_kit / "sii-keys")]
    good = tmp_path / "T33.xml"
    assert _sign(capsys, cli_kit, tmp_path, 33, "-o", str(good), *keys)[0] == 0
    data = good.read_bytes()
    tampered = tmp_path / "tampered.xml"
    tampered.write_bytes(data.replace(b"<Folio>1</Folio>", b"<Folio>2</Folio>"))
    code, out, _ = run(capsys, "verify", str(tampered), *keys)
    assert code == 1 and "FAILED" in out and "dte.signature" in out

    junk = tmp_path / "junk.xml"
    junk.write_bytes(b"this is not xml")
    assert run(capsys, "verify", str(junk), *keys)[0] == 2
    assert run(capsys, "verify", str(tmp_path / "missing.xml"))[0] == 2
    assert run(capsys, "validate", str(junk))[0] == 2

    if dte.schema_dir() is not None:
        invalid = tmp_path / "invalid.xml"
        invalid.write_bytes(data.replace(b"<Folio>1</Folio>", b"<Folio>x</Folio>"))
        code, out, _ = run(capsys, "validate", str(invalid))
        assert code == 1 and "INVALID" in out


def test_cert_and_caf_inspect(capsys: pytest.CaptureFixture[str], cli_kit: Path) -> None:
    code, out, _ = run(capsys, "cert", "inspect", str(cli_kit / "cert.p12"), "--password-file",
                       str(cli_kit / "cert.password"), "--json")
    info = json.loads(out)
    assert code == 0 and info["signer_rut"] == testkit.DEFAULT_SIGNER_RUT and info["has_private_key"]
    assert "BEGIN" not in out
    code, out, _ = run(capsys, "cert", "inspect", str(cli_kit / "cert.pem"))
    assert code == 0 and "signer_rut: 11111111-1" in out
    code, _, err = run(capsys, "cert", "inspect", str(cli_kit / "cert.p12"))
    assert code == 2 and "--password-file" in err

    code, out, _ = run(capsys, "caf", "inspect", str(cli_kit / "caf-33.xml"), "--sii-keys",
                       str(cli_kit / "sii-keys"), "--json")
    result = json.loads(out)
    assert code == 0 and result["ok"] and result["info"]["doc_type"] == 33
    assert "RSASK" not in out and "PRIVATE" not in out
    code, out, _ = run(capsys, "caf", "inspect", str(cli_kit / "caf-33.xml"))
    assert code == 1  # the test key is not SII's (or, with no key for IDK 100, not checked)
    assert "result: FAILED (caf.sii_signature" in out or "result: NOT TRUSTED" in out


def test_usage_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2
    capsys.readouterr()
    assert run(capsys, "testkit", "--out", str(tmp_path), "--types", "33,999")[0] == 2


def test_console_script_installed(tmp_path: Path) -> None:
    script = shutil.which("dte", path=str(Path(sys.executable).parent))
    if script is None:
        pytest.skip("the dte console script is not installed in this environment")
    result = subprocess.run([script, "example", "39"], capture_output=True, text=True, cwd=tmp_path,
                            timeout=60)
    assert result.returncode == 0 and json.loads(result.stdout)["Encabezado"]["IdDoc"]["TipoDTE"] == 39


def test_password_file_line_endings(capsys: pytest.CaptureFixture[str], cli_kit: Path,
                                    tmp_path: Path) -> None:
    password = (cli_kit / "cert.password").read_text().strip()
    crlf = tmp_path / "crlf.password"
    crlf.write_bytes(password.encode() + b"\r\n")
    code, out, _ = run(capsys, "cert", "inspect", str(cli_kit / "cert.p12"), "--password-file",
                       str(crlf), "--json")
    assert code == 0 and json.loads(out)["has_private_key"]


def test_missing_keys_folder(capsys: pytest.CaptureFixture[str], cli_kit: Path,
                             tmp_path: Path) -> None:
    code, _, err = run(capsys, "caf", "inspect", str(cli_kit / "caf-33.xml"), "--sii-keys",
                       str(tmp_path / "nowhere"))
    assert code == 2 and "not a folder" in err
