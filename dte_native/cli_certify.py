"""`dte certify`: SII's certification sets end to end (docs/CERTIFY.md).

    dte certify 001-basico.txt 002-ventas.txt --company company.json --caf caf33.xml --caf caf61.xml \\
        --caf caf56.xml --cert firma.p12 --password-file pw --out certificacion
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from . import _api, certify

EXIT_OK, EXIT_FAILED, EXIT_UNUSABLE = 0, 1, 2


def cmd_certify(args: argparse.Namespace) -> int:
    from . import cli  # late: cli imports this module

    if not args.sets and not args.simulation and not args.exchange:
        raise cli.UsageError("give at least one SET_FILE, --simulation or --exchange")
    company = certify.load_company(args.company)
    cafs = [_api.Caf.parse(cli._read(p)) for p in args.caf]
    cert = cli._load_cert(args.cert, args.password_file)
    for d in args.sii_keys or []:
        if not Path(d).is_dir():
            raise cli.UsageError(f"--sii-keys {d}: not a folder")
    options = certify.Options(
        out_dir=Path(args.out), env=args.env, url=args.url or "", send=not args.no_send,
        sii_keys=list(args.sii_keys or []), date=args.date or "", simulation=args.simulation,
        exchange=[Path(p) for p in args.exchange or []], printed=not args.no_samples,
        timeout_s=args.timeout)
    say = (lambda s: None) if args.json else (lambda s: print(s, file=sys.stderr, flush=True))
    result = certify.run(args.sets, company, cafs, cert, options, say=say)
    if args.json:
        print(json.dumps(result.to_dict(), ensure_ascii=False, indent=2))
    else:
        _print(result)
    return EXIT_OK if result.ok else EXIT_FAILED


def _print(result: certify.Result) -> None:
    print(f"{len(result.documents)} document(s), {len(result.uploads)} file(s) to send, "
          f"{len(result.samples)} printed sample(s), {len(result.answers)} exchange answer(s) in {result.out_dir}")
    for u in result.uploads:
        checked = "schema valid, verified" if u.checked else "CHECKS FAILED"
        line = f"  {u.name:<28} {u.kind:<13} {u.documents:>3} doc(s)  {checked}"
        if result.sent:
            counts = f", {u.accepted} accepted, {u.rejected} rejected" if u.kind in ("EnvioDTE", "EnvioBOLETA") else ""
            line += f"  track id {u.track_id or '-'}: {u.state} {u.sii_state}{counts}".rstrip()
        print(line)
        for p in u.problems + u.rejections:
            print(f"      {p}")
    for e in result.errors:
        print(f"  error: {e}")
    if result.ok:
        print("OK: every file " + ("was accepted." if result.sent else "is schema-valid and verified (not sent)."))
        if result.sent and result.url.startswith("http://127.0.0.1"):
            print("(the local simulator, not SII: run again with --env certification to certify)")
    else:
        print("FAILED")


def register(subparsers: Any) -> None:
    """Adds `dte certify` to the `dte` parser's subparsers."""
    p = subparsers.add_parser(
        "certify", help="run SII's certification sets end to end (documents, books, samples, sending)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sets", metavar="SET_FILE", nargs="*",
                   help="set files as SII gives them (CASO text sets, libro sets, boleta CSV), in order")
    p.add_argument("--company", metavar="company.json", required=True,
                   help="issuer (Emisor), counterparts, resolution: see docs/CERTIFY.md")
    p.add_argument("--caf", metavar="CAF.xml", action="append", required=True,
                   help="certification CAF (repeatable; one or more per document type)")
    p.add_argument("--cert", metavar="CERT.p12", required=True, help="signer certificate")
    p.add_argument("--password-file", metavar="F", required=True)
    p.add_argument("--env", choices=["simulator", "certification"], default="simulator",
                   help="where to send (default: the local simulator, started in-process without --url)")
    p.add_argument("--url", metavar="BASE", default="", help="base URL of a running simulator")
    p.add_argument("--out", metavar="DIR", default="dte-certify",
                   help="output folder; keeps state.json (folios, issued cases) across runs")
    p.add_argument("--no-send", action="store_true", help="produce and check everything, send nothing")
    p.add_argument("--simulation", action="store_true", help="also make the simulation batch")
    p.add_argument("--exchange", metavar="ENVIO.xml", action="append",
                   help="EnvioDTE received from SII for the exchange step: write the three answers")
    p.add_argument("--no-samples", action="store_true", help="skip the printed samples (PDF)")
    p.add_argument("--date", metavar="YYYY-MM-DD", help="FchEmis of every document (default today)")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for each track id")
    p.add_argument("--sii-keys", metavar="DIR", action="append",
                   help="folder of trusted CAF-signing keys named by IDK (test CAFs)")
    p.add_argument("--json", action="store_true", help="machine-readable report")
    p.set_defaults(func=cmd_certify)
