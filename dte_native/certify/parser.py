"""Reads SII's certification sets ("set de pruebas") as SII hands them out: the text sets of
cases (básico, exenta, guías, compra, exportación), the book sets (ventas, compras, guías) and
the boleta set (CSV). Nothing here builds documents: see ``builder``.

Anything the parser does not understand is a :class:`SetError` naming the file, the case and
the line, never a silent skip.
"""
from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Literal, Union

from ..errors import DteError
from .codes import BOOK_DOCUMENT_TYPES, DOCUMENT_TYPES, IND_TRASLADO, TIPO_DESPACHO, cod_ref, plain

SetKind = Literal["documents", "sales_book", "purchase_book", "guide_book", "boletas"]
PathLike = Union[str, Path]


class SetError(DteError, ValueError):
    """A certification set that cannot be read; the message names file, case and line."""

    def __init__(self, message: str, code: str = "certify.set_syntax") -> None:
        super().__init__(message, code)


@dataclass
class Line:
    """One item of a case, as the set states it (amounts are the set's, not computed)."""
    name: str
    source_line: int
    qty: Decimal | None = None
    price: Decimal | None = None
    unit: str = ""
    discount_pct: Decimal | None = None
    surcharge_pct: Decimal | None = None
    exempt: bool = False
    rebate_pct: Decimal | None = None  # boleta set: "Rebajar" (credit note for this share)


@dataclass
class GlobalAdjustment:
    """DESCUENTO/RECARGO GLOBAL; ``of_clause``: a percentage of TOTAL CLAUSULA DE VENTA."""
    move: Literal["D", "R"]
    value: Decimal
    percent: bool
    exempt: bool
    glosa: str
    of_clause: bool = False


@dataclass
class Case:
    set_name: str
    case_id: str            # "414175-1"
    attention: str          # "414175", SII's número de atención of the set
    number: int             # 1
    source_line: int
    doc_type: int = 0
    doc_name: str = ""
    lines: list[Line] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    ref_case: str = ""      # the case whose document this note modifies
    ref_line: int = 0
    ref_reason: str = ""
    cod_ref: int = 0
    adjustments: list[GlobalAdjustment] = field(default_factory=list)
    ind_traslado: int = 0
    tipo_despacho: int = 0
    export: dict[str, str] = field(default_factory=dict)      # KEY -> value (export data)
    export_refs: list[str] = field(default_factory=list)      # REFERENCIA: DUS, AWB...
    line_surcharge_pct: Decimal | None = None                  # "%10 RECARGO EN LA LINEA"
    line_discounts: dict[int, Decimal] = field(default_factory=dict)  # "DESCUENTO LINEA # 1: 5%"
    notes: list[str] = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"{self.set_name}: CASO {self.case_id}"


@dataclass
class PurchaseEntry:
    """One document of the purchase-book set."""
    doc_type: int
    doc_name: str
    folio: int
    observation: str
    exempt: int
    net: int
    treatment: Literal["normal", "uso_comun", "entrega_gratuita", "retencion_total"]
    source_line: int


@dataclass
class BoletaCase:
    number: int
    source_line: int
    lines: list[Line]
    annul: bool = False


@dataclass
class TestSet:
    path: Path
    name: str
    kind: SetKind
    attention: str = ""
    cases: list[Case] = field(default_factory=list)
    purchases: list[PurchaseEntry] = field(default_factory=list)
    proportionality: Decimal | None = None      # FctProp of IVA uso común (0.60)
    guides_invoiced: list[int] = field(default_factory=list)   # case numbers
    guides_annulled: list[int] = field(default_factory=list)
    boletas: list[BoletaCase] = field(default_factory=list)
    instructions: list[str] = field(default_factory=list)

    def case(self, case_id: str) -> Case | None:
        return next((c for c in self.cases if c.case_id == case_id), None)


# --- helpers -----------------------------------------------------------------------------------

_CASE = re.compile(r"^CASO\s+(\d+)\s*-\s*(\d+)\s*$")
_CELLS = re.compile(r"\s*\t\s*|\s{2,}")
_NUMBER = re.compile(r"^-?\d+(?:\.\d+)?$")


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("iso-8859-1")  # SII hands out 001/004 in Latin-1


def _cells(text: str) -> list[str]:
    return [c for c in _CELLS.split(text.strip()) if c]


def _number(text: str, where: str, what: str) -> Decimal:
    t = text.strip().replace(" ", "")
    if t.endswith("%"):
        t = t[:-1]
    if t.startswith("%"):
        t = t[1:]
    if not _NUMBER.match(t):
        raise SetError(f"{where}: {what} {text.strip()!r} is not a number")
    try:
        return Decimal(t)
    except InvalidOperation:  # pragma: no cover - the regex already refused it
        raise SetError(f"{where}: {what} {text.strip()!r} is not a number") from None


def _kind_of(lines: list[str]) -> SetKind | None:
    first = next((plain(x) for x in lines if x.strip()), "")
    if _CASE.match(first):
        return "documents"
    if first.startswith("SET LIBRO DE VENTAS"):
        return "sales_book"
    if first.startswith("SET LIBRO DE COMPRAS"):
        return "purchase_book"
    if first.startswith("SET LIBRO DE GUIAS"):
        return "guide_book"
    if first.replace(" ", "").upper().startswith("FOLIO;"):
        return "boletas"
    return None


def parse_set(source: PathLike, text: str | None = None) -> TestSet:
    """Parses one set file. ``text`` (already decoded) may be given instead of reading it.

    >>> s = parse_set("/work/shared/sii/sets/001-basico.txt")  # doctest: +SKIP
    >>> [c.case_id for c in s.cases][:2]  # doctest: +SKIP
    ['414175-1', '414175-2']
    """
    path = Path(source)
    if text is None:
        try:
            text = _decode(path.read_bytes())
        except OSError as e:
            raise SetError(f"{path}: cannot read the set: {e.strerror or e}", "certify.set_unreadable") from None
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    kind = _kind_of(lines)
    name = path.name
    if kind is None:
        raise SetError(f"{name}, line 1: not a certification set this tool knows (expected 'CASO N-M', "
                       f"'SET LIBRO DE VENTAS/COMPRAS/GUIAS' or the boleta CSV header)")
    result = TestSet(path=path, name=name, kind=kind)
    if kind == "documents":
        _parse_cases(result, lines)
    elif kind == "boletas":
        _parse_boletas(result, text)
    else:
        m = re.search(r"NUMERO DE ATENCION:\s*(\d+)", plain(lines[0] if lines[0].strip() else text))
        result.attention = m.group(1) if m else ""
        if kind == "purchase_book":
            _parse_purchases(result, lines)
        elif kind == "guide_book":
            _parse_guide_book(result, lines)
        else:
            result.instructions = [plain(x) for x in lines[1:] if x.strip()]
    return result


# --- sets of cases -----------------------------------------------------------------------------

_COLUMNS = {
    "ITEM": "name", "CANTIDAD": "qty", "PRECIO UNITARIO": "price", "VALOR UNITARIO": "price",
    "DESCUENTO ITEM": "discount", "UNIDAD MEDIDA": "unit", "UNIDAD DE MEDIDA": "unit",
    "VALOR LINEA": "line_value", "RECARGO ITEM": "surcharge",
}

_EXPORT_KEYS = {
    "MONEDA DE LA OPERACION", "FORMA DE PAGO EXPORTACION", "MODALIDAD DE VENTA",
    "CLAUSULA DE VENTA DE EXPORTACION", "TOTAL CLAUSULA DE VENTA", "VIA DE TRANSPORTE",
    "PUERTO DE EMBARQUE", "PUERTO DE DESEMBARQUE", "UNIDAD DE MEDIDA DE TARA", "UNIDAD PESO BRUTO",
    "UNIDAD PESO NETO", "TIPO DE BULTO", "TOTAL BULTOS", "FLETE (**)", "SEGURO (**)", "FLETE", "SEGURO",
    "PAIS RECEPTOR Y PAIS DESTINO", "PAIS RECEPTOR", "PAIS DESTINO", "NACIONALIDAD", "TARA",
    "PESO BRUTO", "PESO NETO",
}

# Lines that only remind the issuer of something the builder does anyway.
_REMINDERS = (
    re.compile(r"^LOS PRECIOS UNITARIOS DE LOS ITEMS DEBEN SER LOS MISMOS DE LA FACTURA"),
    re.compile(r"^EL PRECIO UNITARIO DEL ITEM DEBE SER EL MISMO DE LA FACTURA"),
)
_GLOBAL = re.compile(r"^(DESCUENTO|RECARGO) GLOBAL (?:ITEMES|ITEMS|ITEM) (AFECTOS|EXENTOS)\s+(\S+)$")
_LINE_SURCHARGE = re.compile(r"^(?:%\s*(\d+(?:\.\d+)?)|(\d+(?:\.\d+)?)\s*%)\s+RECARGO EN LA LINEA")
_COMMISSION = re.compile(r"^COMISIONES EN EL EXTRANJERO \(RECARGOS GLOBALES\):\s*(\d+(?:\.\d+)?)\s*%"
                         r"\s*DEL TOTAL DE LA CLAUSULA$")
_LINE_DISCOUNT = re.compile(r"^DESCUENTO LINEA\s*#\s*(\d+):\s*(\d+(?:\.\d+)?)\s*%$")


def _parse_cases(result: TestSet, lines: list[str]) -> None:
    case: Case | None = None
    in_items = False
    for n, raw in enumerate(lines, 1):
        text = raw.rstrip()
        up = plain(text)
        if not up or set(up) <= {"=", "-"}:
            in_items = False
            continue
        m = _CASE.match(up)
        if m:
            case = Case(set_name=result.name, case_id=f"{m.group(1)}-{m.group(2)}", attention=m.group(1),
                        number=int(m.group(2)), source_line=n)
            if result.case(case.case_id):
                raise SetError(f"{result.name}, line {n}: CASO {case.case_id} appears twice")
            result.cases.append(case)
            result.attention = result.attention or m.group(1)
            in_items = False
            continue
        if case is None:
            raise SetError(f"{result.name}, line {n}: text before the first CASO: {text.strip()!r}")
        where = f"{case.where}, line {n}"
        if in_items:
            _item_row(case, text, n, where)
            continue
        head, _, rest = text.strip().partition("\t")
        key = plain(head)
        if key == "DOCUMENTO":
            case.doc_name = plain(rest)
            doc_type = DOCUMENT_TYPES.get(case.doc_name)
            if doc_type is None:
                raise SetError(f"{where}: unknown document {rest.strip()!r}; known: "
                               f"{', '.join(sorted(DOCUMENT_TYPES))}")
            case.doc_type = doc_type
        elif key == "REFERENCIA" and rest.strip():
            ref = re.search(r"CORRESPONDIENTE A CASO\s+(\d+\s*-\s*\d+)", plain(rest))
            if not ref:
                raise SetError(f"{where}: reference without 'CORRESPONDIENTE A CASO N-M': {rest.strip()!r}")
            case.ref_case = ref.group(1).replace(" ", "")
            case.ref_line = n
        elif key == "RAZON REFERENCIA":
            case.ref_reason = plain(rest)
            case.cod_ref = cod_ref(rest)
        elif key.startswith("ITEM") and _is_header(text):
            case.columns = [_column(c, where) for c in _cells(text)]
            in_items = True
        else:
            _other_line(case, text, up, where)
    for c in result.cases:
        _check_case(result, c)


def _is_header(text: str) -> bool:
    cells = [plain(c) for c in _cells(text)]
    return bool(cells) and cells[0] == "ITEM" and all(c in _COLUMNS for c in cells)


def _column(cell: str, where: str) -> str:
    name = plain(cell)
    if name not in _COLUMNS:
        raise SetError(f"{where}: unknown column {cell!r}; known: {', '.join(_COLUMNS)}")
    return _COLUMNS[name]


def _item_row(case: Case, text: str, n: int, where: str) -> None:
    cells = _cells(text)
    if len(cells) > len(case.columns):
        raise SetError(f"{where}: {len(cells)} values for {len(case.columns)} columns "
                       f"({', '.join(case.columns)}): {text.strip()!r}")
    line = Line(name="", source_line=n)
    for column, cell in zip(case.columns, cells):
        if column == "name":
            line.name = cell.strip()
            line.exempt = plain(cell).endswith(" EXENTO")
        elif column == "qty":
            line.qty = _number(cell, where, "CANTIDAD")
        elif column == "price":
            line.price = _number(cell, where, "PRECIO/VALOR UNITARIO")
        elif column == "line_value":
            line.qty, line.price = Decimal(1), _number(cell, where, "VALOR LINEA")
        elif column == "discount":
            line.discount_pct = _number(cell, where, "DESCUENTO ITEM")
        elif column == "surcharge":
            line.surcharge_pct = _number(cell, where, "RECARGO ITEM")
        elif column == "unit":
            line.unit = cell.strip()
    if not line.name:
        raise SetError(f"{where}: item without a name")
    case.lines.append(line)


def _other_line(case: Case, text: str, up: str, where: str) -> None:
    if up.startswith("MOTIVO:"):
        value = plain(up.partition(":")[2])
        if value not in IND_TRASLADO:
            raise SetError(f"{where}: unknown MOTIVO {value!r}; known: {', '.join(IND_TRASLADO)}")
        case.ind_traslado = IND_TRASLADO[value]
        return
    if up.startswith("TRASLADO POR:"):
        value = plain(up.partition(":")[2])
        if value not in TIPO_DESPACHO:
            raise SetError(f"{where}: unknown TRASLADO POR {value!r}; known: {', '.join(TIPO_DESPACHO)}")
        case.tipo_despacho = TIPO_DESPACHO[value]
        return
    m = _GLOBAL.match(up)
    if m:
        value = m.group(3)
        case.adjustments.append(GlobalAdjustment(
            move="D" if m.group(1) == "DESCUENTO" else "R",
            value=_number(value, where, "global discount"), percent=value.endswith("%"),
            exempt=m.group(2) == "EXENTOS", glosa=f"{m.group(1)} GLOBAL ITEMES {m.group(2)}"))
        return
    m = _LINE_SURCHARGE.match(up)
    if m:
        case.line_surcharge_pct = Decimal(m.group(1) or m.group(2))
        return
    m = _COMMISSION.match(up)
    if m:
        case.adjustments.append(GlobalAdjustment("R", Decimal(m.group(1)), True, True,
                                                 "COMISIONES EN EL EXTRANJERO", of_clause=True))
        return
    m = _LINE_DISCOUNT.match(up)
    if m:
        case.line_discounts[int(m.group(1))] = Decimal(m.group(2))
        return
    if any(r.match(up) for r in _REMINDERS):
        case.notes.append(up)
        return
    key, colon, value = up.partition(":")
    key = key.strip()
    if colon and key == "REFERENCIA":
        case.export_refs.append(value.strip())
        return
    if colon and key in _EXPORT_KEYS:
        if key in case.export:
            raise SetError(f"{where}: {key} given twice")
        case.export[key] = value.strip()
        return
    raise SetError(f"{where}: cannot read {text.strip()!r}")


def _check_case(result: TestSet, case: Case) -> None:
    where = f"{case.where} (line {case.source_line})"
    if not case.doc_type:
        raise SetError(f"{where}: no DOCUMENTO line")
    is_note = case.doc_type in (56, 61, 111, 112)
    if is_note:
        if not case.ref_case:
            raise SetError(f"{where}: a note needs 'REFERENCIA ... CORRESPONDIENTE A CASO N-M'")
        target = result.case(case.ref_case)
        ref_where = f"{case.where}, line {case.ref_line}"
        if target is None:
            raise SetError(f"{ref_where}: references CASO {case.ref_case}, which is not in the set")
        if result.cases.index(target) > result.cases.index(case):
            raise SetError(f"{ref_where}: references CASO {case.ref_case}, which comes later in the set")
        if not case.ref_reason:
            raise SetError(f"{where}: a note needs 'RAZON REFERENCIA'")
        for line in case.lines:
            if not any(plain(t.name) == plain(line.name) for t in target.lines) and line.price is None:
                raise SetError(f"{case.where}, line {line.source_line}: item {line.name!r} is not in "
                               f"CASO {case.ref_case} and has no price")
    elif not case.lines:
        raise SetError(f"{where}: no items")
    if case.doc_type == 52 and not case.ind_traslado:
        raise SetError(f"{where}: a guía needs 'MOTIVO:' (IndTraslado)")
    for line in case.lines:
        if not is_note and line.price is None and case.doc_type != 52:
            raise SetError(f"{case.where}, line {line.source_line}: item {line.name!r} has no price")


# --- book sets ---------------------------------------------------------------------------------

_TREATMENTS: dict[str, Literal["normal", "uso_comun", "entrega_gratuita", "retencion_total"]] = {
    "FACTURA DEL GIRO CON DERECHO A CREDITO": "normal",
    "FACTURA CON IVA USO COMUN": "uso_comun",
    "ENTREGA GRATUITA DEL PROVEEDOR": "entrega_gratuita",
    "COMPRA CON RETENCION TOTAL DEL IVA": "retencion_total",
}


def _treatment(observation: str) -> Literal["normal", "uso_comun", "entrega_gratuita", "retencion_total"] | None:
    if observation in _TREATMENTS:
        return _TREATMENTS[observation]
    if observation.startswith(("NOTA DE CREDITO POR DESCUENTO", "NOTA DE DEBITO POR")):
        return "normal"
    return None


def _parse_purchases(result: TestSet, lines: list[str]) -> None:
    # Entries sit between the second and third ===== rules, three lines each:
    # "TYPE <tabs> FOLIO", the observation, "EXEMPT <tab> NET" (either may be blank).
    rules = [i for i, x in enumerate(lines) if x.strip().startswith("=====")]
    if len(rules) < 3:
        raise SetError(f"{result.name}: expected the table of documents between '=====' rules")
    start, end = rules[1] + 1, rules[2]
    block: list[tuple[int, str]] = []
    for i in range(start, end + 1):
        raw = lines[i] if i < end else ""
        if raw.strip():
            block.append((i + 1, raw))
            continue
        if block:
            result.purchases.append(_purchase_entry(result.name, block))
            block = []
    tail = " ".join(plain(x) for x in lines[end + 1:] if x.strip())
    m = re.search(r"FACTOR DE PROPORCIONALIDAD DEL IVA ES DE\s*(\d+(?:\.\d+)?)", tail)
    if m:
        result.proportionality = Decimal(m.group(1))
    if any(p.treatment == "uso_comun" for p in result.purchases) and result.proportionality is None:
        raise SetError(f"{result.name}: an IVA USO COMUN entry needs the FACTOR DE PROPORCIONALIDAD")


def _purchase_entry(name: str, block: list[tuple[int, str]]) -> PurchaseEntry:
    n = block[0][0]
    where = f"{name}, line {n}"
    if len(block) != 3:
        raise SetError(f"{where}: an entry has 3 lines (type and folio, observation, amounts); got {len(block)}")
    m = re.match(r"^(.*?)\s+(\d+)$", plain(block[0][1]))
    if not m:
        raise SetError(f"{where}: expected 'DOCUMENT TYPE   FOLIO', got {block[0][1].strip()!r}")
    doc_name = m.group(1)
    doc_type = BOOK_DOCUMENT_TYPES.get(doc_name)
    if doc_type is None:
        raise SetError(f"{where}: unknown document type {doc_name!r}; known: {', '.join(BOOK_DOCUMENT_TYPES)}")
    observation = plain(block[1][1])
    treatment = _treatment(observation)
    if treatment is None:
        raise SetError(f"{name}, line {block[1][0]}: unknown observation {observation!r}")
    amount_line = block[2][1]
    cells = amount_line.split("\t")
    values = [c.strip() for c in cells]
    filled = [v for v in values if v]
    where_amounts = f"{name}, line {block[2][0]}"
    if not filled or len(filled) > 2:
        raise SetError(f"{where_amounts}: expected 'MONTO EXENTO <tab> MONTO AFECTO', got {amount_line.strip()!r}")
    if len(filled) == 2:
        exempt, net = filled
    elif values[0]:
        exempt, net = filled[0], "0"
    else:
        exempt, net = "0", filled[0]
    return PurchaseEntry(doc_type=doc_type, doc_name=doc_name, folio=int(m.group(2)), observation=observation,
                         exempt=int(_number(exempt, where_amounts, "MONTO EXENTO")),
                         net=int(_number(net, where_amounts, "MONTO AFECTO")), treatment=treatment,
                         source_line=n)


def _parse_guide_book(result: TestSet, lines: list[str]) -> None:
    for n, raw in enumerate(lines, 1):
        up = plain(raw)
        m = re.match(r"^- EL CASO (\d+) CORRESPONDE A UNA GUIA (.*)$", up)
        if m:
            what = m.group(2)
            if "FACTUR" in what:
                result.guides_invoiced.append(int(m.group(1)))
            elif "ANULADA" in what:
                result.guides_annulled.append(int(m.group(1)))
            else:
                raise SetError(f"{result.name}, line {n}: cannot read {raw.strip()!r}")
        elif up.startswith("- "):
            raise SetError(f"{result.name}, line {n}: cannot read {raw.strip()!r}")
        elif up:
            result.instructions.append(up)


# --- boleta set ----------------------------------------------------------------------------------

_BOLETA_COLUMNS = ["FOLIO", "INDEXE", "NMBITEM", "QTYITEM", "UNMDITEM", "PRCITEM", "ANULAR", "REBAJAR"]


def _parse_boletas(result: TestSet, text: str) -> None:
    rows = list(csv.reader(io.StringIO(text), delimiter=";"))
    header = [h.strip().upper() for h in rows[0]]
    missing = [c for c in _BOLETA_COLUMNS if c not in header]
    if missing:
        raise SetError(f"{result.name}, line 1: missing column(s) {', '.join(missing)}")
    col = {name: header.index(name) for name in _BOLETA_COLUMNS}
    current: BoletaCase | None = None
    for n, row in enumerate(rows[1:], 2):
        if not any(c.strip() for c in row):
            continue
        if len(row) < len(header):
            raise SetError(f"{result.name}, line {n}: {len(row)} cells for {len(header)} columns")

        def cell(name: str, r: list[str] = row) -> str:
            return r[col[name]].strip()

        where = f"{result.name}, line {n}"
        folio = cell("FOLIO")
        if folio:
            if not folio.isdigit():
                raise SetError(f"{where}: Folio (case number) {folio!r} is not a number")
            current = BoletaCase(number=int(folio), source_line=n, lines=[])
            if any(b.number == current.number for b in result.boletas):
                raise SetError(f"{where}: case {folio} appears twice")
            result.boletas.append(current)
        elif current is None:
            raise SetError(f"{where}: an item before the first case (empty Folio)")
        where = f"{result.name}: CASO-{current.number}, line {n}"
        if not cell("NMBITEM"):
            raise SetError(f"{where}: item without NmbItem")
        if cell("INDEXE") not in ("", "1"):
            raise SetError(f"{where}: IndExe {cell('INDEXE')!r} (expected empty or 1)")
        if cell("ANULAR") not in ("", "0", "1"):
            raise SetError(f"{where}: Anular {cell('ANULAR')!r} (expected empty or 1)")
        line = Line(name=cell("NMBITEM"), source_line=n, qty=_number(cell("QTYITEM"), where, "QtyItem"),
                    price=_number(cell("PRCITEM"), where, "PrcItem"), unit=cell("UNMDITEM"),
                    exempt=cell("INDEXE") == "1",
                    rebate_pct=_number(cell("REBAJAR"), where, "Rebajar") if cell("REBAJAR") else None)
        if line.rebate_pct is not None and not 0 < line.rebate_pct <= 100:
            raise SetError(f"{where}: Rebajar {line.rebate_pct} is not a percentage")
        current.lines.append(line)
        current.annul = current.annul or cell("ANULAR") == "1"
