"""Property tests of the totals, through the facade's normalize: IVA is the half-up 19% of the
net amount, MntTotal = MntNeto + MntExe + IVA, and the order of the lines does not matter."""
from __future__ import annotations

import copy
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dte_native as dte

from conftest import document

line = st.fixed_dictionaries(
    {"QtyItem": st.integers(1, 10_000), "PrcItem": st.integers(1, 2_000_000)},
    optional={"IndExe": st.just(1)},
)
lines = st.lists(line, min_size=1, max_size=20)


def factura(detail: list[dict[str, Any]]) -> dict[str, Any]:
    doc = document(33)
    for key in ("DscRcgGlobal", "Referencia"):
        doc.pop(key, None)
    doc["Encabezado"].pop("Totales", None)
    doc["Detalle"] = [dict(item, NmbItem=f"Item {i}") for i, item in enumerate(detail)]
    return doc


def totals(doc: dict[str, Any]) -> dict[str, int]:
    result: dict[str, int] = dte.normalize(doc)["Encabezado"]["Totales"]
    return result


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines)
def test_iva_and_total(detail: list[dict[str, Any]]) -> None:
    t = totals(factura(detail))
    neto = sum(d["QtyItem"] * d["PrcItem"] for d in detail if "IndExe" not in d)
    exento = sum(d["QtyItem"] * d["PrcItem"] for d in detail if "IndExe" in d)
    assert t.get("MntNeto", 0) == neto
    assert t.get("MntExe", 0) == exento
    assert t.get("IVA", 0) == (neto * 19 + 50) // 100  # half-up, integer pesos
    assert t["MntTotal"] == t.get("MntNeto", 0) + t.get("MntExe", 0) + t.get("IVA", 0)


@settings(max_examples=40, deadline=None)
@given(lines, st.randoms(use_true_random=False))
def test_totals_ignore_line_order(detail: list[dict[str, Any]], rnd: Any) -> None:
    shuffled = copy.deepcopy(detail)
    rnd.shuffle(shuffled)
    assert totals(factura(detail)) == totals(factura(shuffled))


@settings(max_examples=30, deadline=None)
@given(lines)
def test_normalized_documents_pass_the_total_rules(detail: list[dict[str, Any]]) -> None:
    normalized = dte.normalize(factura(detail))
    errors = [f for f in dte.check_rules(normalized, normalized=True)
              if f.is_error and f.code.startswith("totals.")]
    assert not errors, errors
