"""Reading back what was signed (totals, fields to print) with a parser that refuses DTDs,
entities and network access."""
from __future__ import annotations

from decimal import Decimal
from typing import Any

from lxml import etree  # type: ignore[import-untyped]

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


def parse(xml: bytes) -> Any:
    return etree.fromstring(xml, _PARSER)


def local(el: Any) -> str:
    return str(etree.QName(el).localname)


def find(el: Any, *path: str) -> Any:
    for name in path:
        if el is None:
            return None
        el = next((c for c in el if isinstance(c.tag, str) and local(c) == name), None)
    return el


def findall(el: Any, name: str) -> list[Any]:
    if el is None:
        return []
    return [c for c in el if isinstance(c.tag, str) and local(c) == name]


def text(el: Any, *path: str) -> str:
    node = find(el, *path) if path else el
    return (node.text or "").strip() if node is not None else ""


def document(root: Any) -> Any:
    """The Documento / Exportaciones / Liquidacion element of a DTE."""
    return next((c for c in root if isinstance(c.tag, str)
                 and local(c) in ("Documento", "Exportaciones", "Liquidacion")), None)


def number(value: str) -> int | float:
    d = Decimal(value)
    return int(d) if d == d.to_integral_value() else float(d)


def totals(xml: bytes) -> dict[str, Any]:
    """Encabezado/Totales of a signed DTE as numbers (TpoMoneda as text)."""
    tot = find(document(parse(xml)), "Encabezado", "Totales")
    out: dict[str, Any] = {}
    for c in findall(tot, "") if tot is None else list(tot):
        if not isinstance(c.tag, str) or len(c):
            continue
        value = (c.text or "").strip()
        try:
            out[local(c)] = number(value)
        except ArithmeticError:
            out[local(c)] = value
    return out
