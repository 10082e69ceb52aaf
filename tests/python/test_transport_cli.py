"""`dte token|send|status|doc-status|claim` against the in-process simulator."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest

import dte_native as dte
from dte_native import cli, testkit

from conftest import ISSUER, document
from test_transport import start_sim


@pytest.fixture()
def sim(kit: testkit.TestKit) -> Iterator[Any]:
    s = start_sim(kit)
    yield s
    s.stop()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    code = cli.main(list(argv))
    out = capsys.readouterr().out
    return code, json.loads(out) if "--json" in argv and out.strip() else out


def test_cli_send_status_claim(sim: Any, kit: testkit.TestKit, cafs: dict[int, dte.Caf], cert: dte.Certificate,
                               keyring: dte.SiiKeyring, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    common = ["--env", "simulator", "--url", sim.url, "--cert", str(kit.cert_path),
              "--password-file", str(kit.password_file), "--timeout", "10"]
    code, out = run(capsys, "token", *common, "--json")
    assert code == 0 and out["token"] and out["signer"] == "11111111-1"

    signed = dte.sign(document(33, 450), cafs[33], cert, keyring=keyring)
    env_path = tmp_path / "envio.xml"
    env_path.write_bytes(dte.envelope([signed], cert, resolution_date="2014-08-22"))
    code, out = run(capsys, "send", str(env_path), *common, "--json")
    assert code == 0 and out["track_id"] and not out["duplicate"]
    track = out["track_id"]

    code, out = run(capsys, "status", track, "--company", ISSUER, *common, "--json")
    assert code == 0 and out["state"] == "accepted" and out["counts"][0]["informed"] == 1
    code, text = run(capsys, "status", track, "--company", ISSUER, *common)
    assert "accepted (EPR" in text

    code, out = run(capsys, "doc-status", "--from", str(env_path), *common, "--json")
    assert code == 0 and out[0]["status"]["sii_state"] == "DOK"

    code, out = run(capsys, "claim", "ACD", "--issuer", ISSUER, "--type", "33", "--folio", "450", *common, "--json")
    assert code == 0 and out["code"] == 0
    code, out = run(capsys, "claim", "events", "--issuer", ISSUER, "--type", "33", "--folio", "450", *common,
                    "--json")
    assert [e["code"] for e in out["events"]] == ["ACD"]

    # SII errors are reported, not raised.
    code = cli.main(["status", "1", "--company", ISSUER, *common])
    assert code == 2
    assert "SiiRejected" in capsys.readouterr().err


def test_cli_simulator_needs_url(kit: testkit.TestKit, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["token", "--env", "simulator", "--url", "", "--cert", str(kit.cert_path),
                     "--password-file", str(kit.password_file)])
    assert code == 2 and "--url" in capsys.readouterr().err
