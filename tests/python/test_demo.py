"""The main job (`dte demo`, what `scripts/run` runs) end to end on a small batch."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from dte_native import demo


def test_demo_signs_envelopes_validates_and_verifies_every_type(tmp_path: Path) -> None:
    result = demo.run_demo(count=40, out_dir=tmp_path, progress=False, on_stage=lambda s: None)
    assert result.ok, result
    assert result.signed == 40
    # Every supported type appears at least once in a batch this size.
    assert set(result.by_type) == {33, 34, 39, 41, 43, 46, 52, 56, 61, 110, 111, 112}
    files = sorted(e["file"] for e in result.envelopes)
    assert files == ["EnvioBOLETA-1.xml", "EnvioDTE-1.xml"]
    assert all((tmp_path / f).is_file() for f in files)
    assert len(list((tmp_path / "dte").glob("*.xml"))) == 40


def test_demo_cli_json(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "dte_native.cli", "demo", "--count", "15",
                          "--out", str(tmp_path), "--json"],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["ok"] is True and summary["signed"] == 15
