"""Bugs found after the modules landed; each test failed before its fix."""
from __future__ import annotations

import re
from typing import Any

import dte_native as dte

from conftest import document


def test_export_ted_mnt_keeps_decimals(cafs: dict[int, dte.Caf], cert: dte.Certificate,
                                       keyring: dte.SiiKeyring) -> None:
    # An export's MntTotal is in a foreign currency with decimals; its TED MNT is
    # SiiDte:ValorType and must carry the same value (SII: TED-3-520 when rounded).
    doc: dict[str, Any] = document(110, folio=7)
    lines = doc["Detalle"] if isinstance(doc["Detalle"], list) else [doc["Detalle"]]
    lines[0]["QtyItem"], lines[0]["PrcItem"] = 3, 41.37
    doc["Detalle"] = lines[:1]
    signed = dte.sign(doc, cafs[110], cert, keyring=keyring)
    xml = signed.xml.decode("latin-1")
    mnt_total = re.search(r"<MntTotal>([^<]+)</MntTotal>", xml)
    mnt = re.search(r"<MNT>([^<]+)</MNT>", xml)
    assert mnt_total and mnt
    assert "." in mnt_total.group(1)
    assert mnt.group(1) == mnt_total.group(1)
    assert dte.verify(signed.xml, keyring=keyring).ok
