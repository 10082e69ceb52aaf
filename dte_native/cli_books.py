"""`dte books ...`: build and sign books (IECV, guías, RVD), parse an RCV export, reconcile it."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from . import _api as api
from . import books

EXIT_OK = 0
EXIT_FINDINGS = 1   # the command worked and found problems (row errors, reconciliation findings)
EXIT_UNUSABLE = 2


def _read_json(path: str) -> Any:
    text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    return json.loads(text)


def _cert(args: Any) -> api.Certificate:
    password = ""
    if args.password_file:
        password = Path(args.password_file).read_text(encoding="utf-8").rstrip("\r\n")
    return api.Certificate.from_pkcs12(Path(args.cert).read_bytes(), password)


def _write(data: bytes, out: str | None) -> None:
    if out in (None, "-"):
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        Path(out).write_bytes(data)


def cmd_libro(args: Any) -> int:
    book = _read_json(args.input)
    if args.csv:
        entries = books.entries_from_csv(args.csv, "guia" if args.kind == "guia" else "cv")
        for issue in entries.issues:
            print(f"dte books: {args.csv}: {issue}", file=sys.stderr)
        book.setdefault("Detalle", [])
        book["Detalle"] = list(book["Detalle"]) + entries.detalle
        for key, value in entries.extra.items():
            book.setdefault(key, value)
    if args.segment_size:
        return _libro_segments(args, book)
    normalize = {"cv": books.normalize_libro_cv, "guia": books.normalize_libro_guia,
                 "rvd": books.normalize_consumo_folios}[args.kind]
    if args.summary:
        print(json.dumps(normalize(book), ensure_ascii=False, indent=2))
        return EXIT_OK
    if not args.cert:
        print("dte books: error: --cert is required to sign (or use --summary)", file=sys.stderr)
        return EXIT_UNUSABLE
    sign = {"cv": books.sign_libro_cv, "guia": books.sign_libro_guia,
            "rvd": books.sign_consumo_folios}[args.kind]
    schemas = None if args.no_validate or api.schema_dir() is None else api.schemas()
    _write(sign(book, _cert(args), schemas=schemas), args.out)
    return EXIT_OK


def _libro_segments(args: Any, book: Any) -> int:
    """PARCIAL/FINAL segments of at most --segment-size entries, written as OUT-1.xml, OUT-2.xml..."""
    if args.kind == "rvd":
        print("dte books: error: --segment-size is for cv and guia books", file=sys.stderr)
        return EXIT_UNUSABLE
    segment = books.segment_libro_cv if args.kind == "cv" else books.segment_libro_guia
    normalize = books.normalize_libro_cv if args.kind == "cv" else books.normalize_libro_guia
    if args.summary:
        print(json.dumps([normalize(seg) for seg in segment(book, args.segment_size)], ensure_ascii=False, indent=2))
        return EXIT_OK
    if not args.cert or args.out in (None, "-"):
        print("dte books: error: signing segments needs --cert and -o FILE.xml (written as FILE-1.xml, ...)",
              file=sys.stderr)
        return EXIT_UNUSABLE
    sign = books.sign_libro_cv_segments if args.kind == "cv" else books.sign_libro_guia_segments
    schemas = None if args.no_validate or api.schema_dir() is None else api.schemas()
    out = Path(args.out)
    for n, xml in enumerate(sign(book, _cert(args), args.segment_size, schemas=schemas), start=1):
        path = out.with_name(f"{out.stem}-{n}{out.suffix or '.xml'}")
        path.write_bytes(xml)
        print(path)
    return EXIT_OK


def cmd_rcv_parse(args: Any) -> int:
    result = books.parse_rcv(args.file, state=args.state)
    if args.json:
        print(json.dumps(result.to_dict(), ensure_ascii=False, indent=2))
    else:
        print(f"{args.file}: RCV {result.register_kind} {result.state}, {len(result.rows)} document(s)")
        for r in result.rows:
            print(f"  line {r.line:>4}  {r.doc_type:>3} {r.folio:>10}  {r.counterpart_rut:>12}  "
                  f"{r.counterpart_name[:30]:<30} total {r.total}")
        for w in result.warnings:
            print(f"warning: {w}")
        for e in result.errors:
            print(f"error: {e}")
    return EXIT_FINDINGS if result.errors else EXIT_OK


def cmd_reconcile(args: Any) -> int:
    rows: list[books.RcvRow] = []
    errors: list[str] = []
    for path in args.rcv:
        parsed = books.parse_rcv(path, state=args.state)
        rows += parsed.rows
        errors += [f"{path}: {e}" for e in parsed.errors]
    docs_raw = _read_json(args.documents)
    docs = [books.LocalDocument(**d) for d in docs_raw]
    findings = books.reconcile(rows, docs, owner_rut=args.owner or "", tolerance=args.tolerance)
    if args.json:
        print(json.dumps({"findings": [f.__dict__ for f in findings], "rcv_errors": errors},
                         ensure_ascii=False, indent=2))
    else:
        for e in errors:
            print(f"rcv error: {e}")
        for f in findings:
            print(f"{f.kind:<16} {f.issuer_rut:>12} {f.doc_type:>3} {f.folio:>10}  {f.message}")
        print(f"{len(findings)} finding(s)")
    return EXIT_FINDINGS if findings or errors else EXIT_OK


def cmd_rcv_download(args: Any) -> int:
    from . import cli_sii  # the SII client options and construction, shared with `dte send`

    client = cli_sii._client(args)
    dl = books.download_rcv(client, args.company, args.period, args.kind, state=args.state or "",
                            doc_types=args.type or ())
    if args.out:
        Path(args.out).write_bytes(dl.csv)
    if args.json:
        print(json.dumps({"period": dl.period, "kind": dl.kind, "state": dl.state,
                          "summary": [t.__dict__ for t in dl.summary], "requests": dl.requests,
                          **dl.parsed.to_dict()}, ensure_ascii=False, indent=2))
    else:
        print(f"RCV {dl.kind} {dl.state} {dl.period} of {args.company}: {len(dl.rows)} document(s)"
              + (f", saved to {args.out}" if args.out else ""))
        for t in dl.summary:
            print(f"  type {t.doc_type:>3}: {t.documents:>5} document(s)  net {t.net:>12}  "
                  f"IVA {t.vat:>10}  total {t.total:>12}")
        for r in dl.rows:
            print(f"  line {r.line:>4}  {r.doc_type:>3} {r.folio:>10}  {r.counterpart_rut:>12}  "
                  f"{r.counterpart_name[:30]:<30} total {r.total}")
        for w in dl.parsed.warnings:
            print(f"warning: {w}")
        for e in dl.parsed.errors:
            print(f"error: {e}")
    return EXIT_FINDINGS if dl.parsed.errors else EXIT_OK


def register(subparsers: Any) -> None:
    """Adds `dte books` to the `dte` parser's subparsers."""
    p = subparsers.add_parser("books", help="books (IECV, guías, RVD) and the RCV: build, parse, reconcile")
    sub = p.add_subparsers(dest="books_command", metavar="ACTION")
    sub.required = True

    q = sub.add_parser("libro", help="build and sign a book from JSON (and a CSV of its detail)")
    q.add_argument("kind", choices=["cv", "guia", "rvd"],
                   help="cv: Libro de Compras/Ventas (IECV); guia: Libro de Guías; rvd: ConsumoFolios")
    q.add_argument("input", metavar="BOOK.json", help="Caratula and Detalle (or Documentos) with XSD names; - = stdin")
    q.add_argument("--csv", metavar="FILE.csv", help="append detail rows from a semicolon CSV")
    q.add_argument("--summary", action="store_true", help="print the normalised book with its totals, do not sign")
    q.add_argument("--cert", metavar="FILE.p12", help="signer certificate")
    q.add_argument("--password-file", metavar="FILE", help="file holding the certificate password")
    q.add_argument("--no-validate", action="store_true", help="skip XSD validation of the signed book")
    q.add_argument("--segment-size", type=int, metavar="N",
                   help="send in PARCIAL/FINAL segments of at most N detail entries (cv, guia)")
    q.add_argument("-o", "--out", metavar="FILE.xml", help="output file (default stdout)")
    q.set_defaults(func=cmd_libro)

    q = sub.add_parser("rcv-parse", help="parse an RCV CSV export from SII's portal")
    q.add_argument("file", metavar="FILE.csv")
    q.add_argument("--state", choices=[s.lower() for s in books.RCV_STATES] + list(books.RCV_STATES),
                   help="compras register of the file (default: guessed from its columns)")
    q.add_argument("--json", action="store_true", help="machine-readable output")
    q.set_defaults(func=cmd_rcv_parse)

    from . import cli_sii

    q = sub.add_parser("rcv-download", help="download an RCV register from SII (or the simulator)",
                       description="Downloads the Registro de Compras y Ventas of one period through the "
                                   "SII client (token, retries, circuit breaker) and parses it.")
    q.add_argument("--company", metavar="RUT", required=True, help="company whose register is read")
    q.add_argument("--period", metavar="YYYY-MM", required=True, help="tax period")
    q.add_argument("--kind", choices=["compras", "ventas"], required=True, help="purchases or sales register")
    q.add_argument("--state", choices=[s.lower() for s in books.RCV_STATES] + list(books.RCV_STATES)
                   + list(books.RCV_STATE_ALIASES),
                   help="compras register state (default registro)")
    q.add_argument("--type", type=int, action="append", metavar="TIPO",
                   help="only this document type (repeatable; default every type in SII's summary)")
    q.add_argument("-o", "--out", metavar="FILE.csv", help="also save the CSV as SII exports it")
    cli_sii._common(q)
    q.set_defaults(func=cmd_rcv_download)

    q = sub.add_parser("reconcile", help="compare RCV exports with our documents")
    q.add_argument("documents", metavar="DOCS.json",
                   help="list of {issuer_rut, doc_type, folio, total, net, vat, exempt, state, reference}")
    q.add_argument("rcv", metavar="RCV.csv", nargs="+")
    q.add_argument("--owner", metavar="RUT", help="our RUT (issuer of the sales register's documents)")
    q.add_argument("--state", help="compras register of the files (default: guessed)")
    q.add_argument("--tolerance", type=int, default=0, help="pesos of difference accepted as equal")
    q.add_argument("--json", action="store_true", help="machine-readable output")
    q.set_defaults(func=cmd_reconcile)
