"""Books and registers: IECV (Libro de Compras/Ventas), Libro de Guías, the boleta daily summary
(ConsumoFolios / RVD), SII's RCV CSV export, and the reconciliation of the RCV with our documents.

Book input is a dict with the XSD's own field names, like the document model (see docs/BOOKS.md);
the summaries are always computed from the detail.

>>> from dte_native import books
>>> n = books.normalize_libro_cv({"Caratula": {"RutEmisorLibro": "76543210-3",
...     "PeriodoTributario": "2024-05", "FchResol": "2014-08-22", "NroResol": 80,
...     "TipoOperacion": "VENTA"}, "Detalle": [{"TpoDoc": 33, "NroDoc": 1, "MntNeto": 1000}]})
>>> n["ResumenPeriodo"][0]["TotMntIVA"]
190
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence, Union

from . import _core
from ._api import Certificate, SchemaSet

if TYPE_CHECKING:
    from .sii import SiiClient

PathLike = Union[str, "os.PathLike[str]"]
BookInput = Union[Mapping[str, Any], str]

__all__ = [
    "RowIssue", "CsvEntries", "OtherTax", "Reference", "RcvRow", "RcvParseResult", "LocalDocument",
    "ReconcileFinding", "normalize_libro_cv", "sign_libro_cv", "normalize_libro_guia",
    "sign_libro_guia", "normalize_consumo_folios", "sign_consumo_folios", "entries_from_csv",
    "parse_rcv", "reconcile", "RCV_STATES", "segment_libro_cv", "sign_libro_cv_segments",
    "segment_libro_guia", "sign_libro_guia_segments", "RcvTypeSummary", "RcvDownload", "download_rcv",
]

RCV_STATES = ("REGISTRO", "PENDIENTE", "NO_INCLUIR", "RECLAMADO")


def _text(value: BookInput) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _source_text(source: bytes | str | PathLike) -> str:
    """CSV content from bytes, text, or a path (a str with a newline or ';' is content)."""
    if isinstance(source, bytes):
        data = source
    elif isinstance(source, str) and ("\n" in source or ";" in source):
        return source
    else:
        data = Path(source).read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")  # SII's portal exports are sometimes Latin-1


def _sign_args(tmst: str | None, schemas: SchemaSet | None) -> tuple[str, Any]:
    return (tmst or "", schemas._native if schemas is not None else None)


# ---- books ---------------------------------------------------------------------------------

def normalize_libro_cv(book: BookInput) -> dict[str, Any]:
    """The IECV input with derived amounts filled and ``ResumenPeriodo`` computed."""
    result: dict[str, Any] = json.loads(_core.normalize_libro_cv(_text(book)))
    return result


def sign_libro_cv(book: BookInput, cert: Certificate, *, tmst: str | None = None,
                  schemas: SchemaSet | None = None) -> bytes:
    """Signed ``LibroCompraVenta`` (ISO-8859-1 bytes). With ``schemas`` it must validate against
    LibroCV_v10.xsd, else DocumentError ``libro.schema``."""
    t, s = _sign_args(tmst, schemas)
    data: bytes = _core.sign_libro_cv(_text(book), cert._native, t, s)
    return data


def segment_libro_cv(book: BookInput, max_detail: int) -> list[dict[str, Any]]:
    """Cuts a big IECV into segment inputs of at most ``max_detail`` Detalle entries: TipoEnvio
    PARCIAL with NroSegmento 1, 2, ... and a FINAL last one that also carries the whole period's
    ``ResumenPeriodo``. A book that fits comes back as one TOTAL input."""
    return [json.loads(x) for x in _core.segment_libro_cv(_text(book), max_detail)]


def sign_libro_cv_segments(book: BookInput, cert: Certificate, max_detail: int, *,
                           tmst: str | None = None, schemas: SchemaSet | None = None) -> list[bytes]:
    """Every segment of :func:`segment_libro_cv`, signed (and validated with ``schemas``)."""
    t, s = _sign_args(tmst, schemas)
    return list(_core.sign_libro_cv_segments(_text(book), cert._native, max_detail, t, s))


def segment_libro_guia(book: BookInput, max_detail: int) -> list[dict[str, Any]]:
    """:func:`segment_libro_cv` for the Libro de Guías."""
    return [json.loads(x) for x in _core.segment_libro_guia(_text(book), max_detail)]


def sign_libro_guia_segments(book: BookInput, cert: Certificate, max_detail: int, *,
                             tmst: str | None = None, schemas: SchemaSet | None = None) -> list[bytes]:
    """Every segment of :func:`segment_libro_guia`, signed."""
    t, s = _sign_args(tmst, schemas)
    return list(_core.sign_libro_guia_segments(_text(book), cert._native, max_detail, t, s))


def normalize_libro_guia(book: BookInput) -> dict[str, Any]:
    """The Libro de Guías input with IVA/MntTotal filled and ``ResumenPeriodo`` computed."""
    result: dict[str, Any] = json.loads(_core.normalize_libro_guia(_text(book)))
    return result


def sign_libro_guia(book: BookInput, cert: Certificate, *, tmst: str | None = None,
                    schemas: SchemaSet | None = None) -> bytes:
    """Signed ``LibroGuia`` (ISO-8859-1 bytes)."""
    t, s = _sign_args(tmst, schemas)
    data: bytes = _core.sign_libro_guia(_text(book), cert._native, t, s)
    return data


def normalize_consumo_folios(summary: BookInput) -> dict[str, Any]:
    """The daily boleta summary with ``Resumen`` per type (amounts, folio counts and ranges)."""
    result: dict[str, Any] = json.loads(_core.normalize_consumo_folios(_text(summary)))
    return result


def sign_consumo_folios(summary: BookInput, cert: Certificate, *, tmst: str | None = None,
                        schemas: SchemaSet | None = None) -> bytes:
    """Signed ``ConsumoFolios`` (RCOF/RVD), ISO-8859-1 bytes."""
    t, s = _sign_args(tmst, schemas)
    data: bytes = _core.sign_consumo_folios(_text(summary), cert._native, t, s)
    return data


@dataclass(frozen=True)
class RowIssue:
    """A problem of one CSV row: ``row`` is the line in the file (header = 1)."""
    row: int
    column: str
    message: str

    def __str__(self) -> str:
        where = f"line {self.row}" + (f", column '{self.column}'" if self.column else "")
        return f"{where}: {self.message}"


@dataclass
class CsvEntries:
    """Book detail read from a CSV; ``extra`` holds book-level values (``FctProp``)."""
    detalle: list[dict[str, Any]]
    extra: dict[str, Any]
    issues: list[RowIssue]


def entries_from_csv(source: bytes | str | PathLike, kind: str = "cv") -> CsvEntries:
    """Detail entries from a semicolon CSV with XSD column names (or LibreDTE's purchase layout).

    ``kind`` is ``"cv"`` (IECV) or ``"guia"``. Bad cells are reported per row; those rows are
    left out, the rest are kept."""
    raw = _core.book_entries_from_csv(_source_text(source), kind)
    return CsvEntries(detalle=json.loads(raw["detalle_json"]), extra=json.loads(raw["extra_json"]),
                      issues=[RowIssue(**i) for i in raw["issues"]])


# ---- RCV -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class OtherTax:
    code: str
    amount: int
    rate: float


@dataclass(frozen=True)
class Reference:
    doc_type: int
    folio: int


@dataclass
class RcvRow:
    """One document of the RCV. ``vat`` is Monto IVA (ventas) or Monto IVA Recuperable (compras);
    ``cells`` keeps every non-empty cell by its header, unknown columns included."""
    line: int
    nro: int
    register_kind: str
    state: str
    doc_type: int
    operation: str
    issuer_rut: str
    counterpart_rut: str
    counterpart_name: str
    folio: int
    issue_date: str
    received_at: str
    acknowledged_at: str
    claimed_at: str
    exempt: int
    net: int
    vat: int
    vat_non_recoverable: int
    vat_non_recoverable_code: int
    total: int
    other_taxes: list[OtherTax] = field(default_factory=list)
    references: list[Reference] = field(default_factory=list)
    cells: dict[str, str] = field(default_factory=dict)

    @classmethod
    def _from(cls, d: dict[str, Any]) -> RcvRow:
        d = dict(d)
        d["other_taxes"] = [OtherTax(**t) for t in d["other_taxes"]]
        d["references"] = [Reference(**r) for r in d["references"]]
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RcvParseResult:
    register_kind: str
    state: str
    columns: list[str]
    rows: list[RcvRow]
    errors: list[RowIssue]
    warnings: list[str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_rcv(source: bytes | str | PathLike, state: str | None = None) -> RcvParseResult:
    """Parses an RCV CSV export (a path, bytes or text).

    ``state`` is the compras register (REGISTRO, PENDIENTE, NO_INCLUIR, RECLAMADO); by default it
    is guessed from the columns. Malformed rows come back in ``errors`` (line, column, reason)."""
    raw = _core.rcv_parse_csv(_source_text(source), (state or "").upper())
    return RcvParseResult(register_kind=raw["register_kind"], state=raw["state"],
                          columns=list(raw["columns"]), rows=[RcvRow._from(r) for r in raw["rows"]],
                          errors=[RowIssue(**e) for e in raw["errors"]],
                          warnings=list(raw["warnings"]))


@dataclass
class LocalDocument:
    """One of our documents for the reconciliation; ``None`` amounts are not compared."""
    issuer_rut: str
    doc_type: int
    folio: int
    total: int | None = None
    net: int | None = None
    vat: int | None = None
    exempt: int | None = None
    state: str = ""
    reference: str = ""

    def _native(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("total", "net", "vat", "exempt"):
            if d[k] is None:
                d[k] = -1
        return d


@dataclass(frozen=True)
class ReconcileFinding:
    """``kind``: missing_in_rcv, missing_locally, amount_mismatch, tax_mismatch, state_mismatch,
    duplicate."""
    kind: str
    issuer_rut: str
    doc_type: int
    folio: int
    field: str
    ours: str
    sii: str
    reference: str
    rcv_line: int
    message: str


def reconcile(rows: Iterable[RcvRow], documents: Sequence[LocalDocument | Mapping[str, Any]], *,
              owner_rut: str = "", tolerance: int = 0) -> list[ReconcileFinding]:
    """Compares RCV rows with our documents on (issuer RUT, type, folio).

    ``owner_rut`` is our RUT (the issuer of every sales row)."""
    native_rows = [asdict(r) for r in rows]
    docs = [d._native() if isinstance(d, LocalDocument) else LocalDocument(**dict(d))._native()
            for d in documents]
    return [ReconcileFinding(**f) for f in _core.rcv_reconcile(native_rows, docs, owner_rut, tolerance)]


# ---- RCV download --------------------------------------------------------------------------

RCV_STATE_ALIASES = {"registered": "REGISTRO", "pending": "PENDIENTE", "not_included": "NO_INCLUIR",
                     "claimed": "RECLAMADO"}


@dataclass(frozen=True)
class RcvTypeSummary:
    """One line of SII's period summary (getResumen): documents and amounts of one type."""
    doc_type: int
    documents: int
    exempt: int
    net: int
    vat: int
    total: int


@dataclass
class RcvDownload:
    """A register downloaded from SII: its ``csv`` as SII exports it and ``parsed`` through
    :func:`parse_rcv` (row-level ``parsed.errors`` kept, nothing dropped silently)."""
    period: str
    kind: str
    state: str
    summary: list[RcvTypeSummary]
    csv: bytes
    parsed: RcvParseResult
    requests: int

    @property
    def rows(self) -> list[RcvRow]:
        return self.parsed.rows


def download_rcv(client: SiiClient, company_rut: str, period: str, kind: str, *, state: str = "",
                 doc_types: Sequence[int] = (), base_url: str = "") -> RcvDownload:
    """Downloads one RCV register from SII through the C++ transport (the client's token,
    retries and circuit breaker): ``kind`` ``"compras"`` or ``"ventas"``, ``period`` ``"YYYY-MM"``,
    ``state`` for compras ``REGISTRO`` (default), ``PENDIENTE``, ``NO_INCLUIR``, ``RECLAMADO`` (or
    registered, pending, not_included, claimed). ``base_url`` overrides the portal facade URL
    (the simulator's is used automatically for a simulator client).

    >>> dl = download_rcv(client, "76543210-3", "2025-03", "compras", state="pending")  # doctest: +SKIP
    >>> [(r.doc_type, r.folio, r.total) for r in dl.rows]  # doctest: +SKIP
    """
    st = RCV_STATE_ALIASES.get(state.lower(), state) if state else ""
    raw = _core.rcv_download(client._native, company_rut, period, kind, st, list(doc_types), base_url)
    parsed = raw["parsed"]
    return RcvDownload(
        period=raw["period"], kind=raw["kind"], state=raw["state"],
        summary=[RcvTypeSummary(**t) for t in raw["summary"]], csv=bytes(raw["csv"]),
        parsed=RcvParseResult(register_kind=parsed["register_kind"], state=parsed["state"],
                              columns=list(parsed["columns"]), rows=[RcvRow._from(r) for r in parsed["rows"]],
                              errors=[RowIssue(**e) for e in parsed["errors"]],
                              warnings=list(parsed["warnings"])),
        requests=int(raw["requests"]))
