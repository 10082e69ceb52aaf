"""The `dte` command line: a thin layer over the dte_native facade.

Exit codes: 0 success (every check passed), 1 a check or validation failed, 2 unusable input or
usage error. Errors are one line on stderr: ``dte: error: CafError caf.wrong_rut: ...``.
Key material and passwords are never printed.

    $ dte testkit --out kit --types 33
    $ dte example 33 > f33.json
    $ dte sign f33.json --caf kit/caf-33.xml --cert kit/cert.p12 \\
          --password-file kit/cert.password --sii-keys kit/sii-keys -o T33F1.xml
    $ dte verify T33F1.xml --sii-keys kit/sii-keys
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Sequence

from . import _api as api
from . import _core
from ._types import Check, SignedDte
from . import testkit
from . import demo
from . import cli_sii
from . import cli_books
from . import cli_reception
from . import cli_worker
from . import cli_ops
from . import cli_certify
from .errors import DteError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_UNUSABLE = 2


class UsageError(Exception):
    """Bad command-line input (a missing file, a password file that cannot be read...)."""


# --- helpers ---------------------------------------------------------------------------------


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror or e}") from None


def _password(path: str | None) -> str:
    if path is None:
        raise UsageError("--password-file is required to open a PKCS#12 file")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read password file {path}: {getattr(e, 'strerror', None) or e}") from None
    # Only the final line break is dropped: passwords may legitimately contain spaces.
    if text.endswith("\n"):
        text = text[:-1]
    return text[:-1] if text.endswith("\r") else text


def _load_cert(path: str, password_file: str | None) -> api.Certificate:
    return api.Certificate.from_pkcs12(_read(path), _password(password_file))


def _keyring(dirs: Sequence[str] | None) -> api.SiiKeyring:
    for d in dirs or []:
        if not Path(d).is_dir():
            raise UsageError(f"--sii-keys {d}: not a folder")
    return api.SiiKeyring.default(dirs or [])


def _write_out(data: bytes, out: str | None) -> None:
    if out is None or out == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    try:
        Path(out).write_bytes(data)
    except OSError as e:
        raise UsageError(f"cannot write {out}: {e.strerror or e}") from None


def _print_json(value: Any) -> None:
    print(json.dumps(value, ensure_ascii=False, indent=2))


def _mark(status: str) -> str:
    return {"pass": "ok  ", "fail": "FAIL", "skip": "skip"}.get(status, status)


# The checks that tie a CAF to SII. Skipped because no trusted key covers the CAF's IDK, they
# leave the folio range unauthenticated: the command line counts that as not passed (exit 1),
# as reception does, and says how to give the key.
_SII_TRUST_CHECKS = ("ted.caf", "caf.sii_signature")


def _untrusted(checks: Sequence[Check]) -> list[Check]:
    return [c for c in checks
            if c.name in _SII_TRUST_CHECKS and c.status == "skip" and "no SII key" in c.reason]


def _untrusted_note(untrusted: Sequence[Check]) -> str:
    idks = sorted({c.reason.split("IDK ", 1)[1].split()[0] for c in untrusted if "IDK " in c.reason})
    keys = ", ".join(f"{i}.pem" for i in idks) or "its key"
    return (f"the CAF is not checked against SII: no trusted key for IDK {', '.join(idks) or '?'}"
            f" (give --sii-keys DIR or DTE_SII_KEYS with {keys})")


# --- commands --------------------------------------------------------------------------------


def cmd_example(args: argparse.Namespace) -> int:
    _print_json(api.example(args.type))
    return EXIT_OK


def _pick_caf(cafs: list[api.Caf], document: dict[str, Any]) -> api.Caf:
    if len(cafs) == 1:
        return cafs[0]
    id_doc = document.get("Encabezado", {}).get("IdDoc", {})
    doc_type, folio = id_doc.get("TipoDTE"), id_doc.get("Folio")
    for caf in cafs:
        info = caf.info
        if str(info.doc_type) == str(doc_type) and str(folio).isdigit() and info.covers(int(folio)):
            return caf
    raise UsageError(f"none of the CAFs given covers type {doc_type} folio {folio}")


def cmd_sign(args: argparse.Namespace) -> int:
    raw = _read(args.input)
    try:
        document = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UsageError(f"{args.input}: not JSON: {e}") from None
    if not isinstance(document, dict):
        raise UsageError(f"{args.input}: the input must be a JSON object")
    cafs = [api.Caf.parse(_read(p)) for p in args.caf]
    cert = _load_cert(args.cert, args.password_file)
    signed = api.sign(document, _pick_caf(cafs, document), cert, keyring=_keyring(args.sii_keys),
                      timestamp=args.timestamp, today=args.today)
    if args.json:
        if args.output:
            _write_out(signed.xml, args.output)
        summary = _signed_summary(signed)
        summary["output"] = args.output
        if not args.output:
            summary["xml"] = signed.xml.decode("iso-8859-1")
        _print_json(summary)
    else:
        _write_out(signed.xml, args.output)
        if args.output:
            print(f"{signed.id}: type {signed.doc_type} folio {signed.folio} total {signed.total}"
                  f" -> {args.output}", file=sys.stderr)
    for w in signed.warnings:
        print(f"dte: warning: {w.code} ({w.field}): {w.message}", file=sys.stderr)
    return EXIT_OK


def _signed_summary(signed: SignedDte) -> dict[str, Any]:
    d = asdict(signed)
    d.pop("xml")
    return d


def cmd_envelope(args: argparse.Namespace) -> int:
    dtes = [_read(p) for p in args.dtes]
    cert = _load_cert(args.cert, args.password_file)
    if (args.resolution_date is None) != (args.resolution_number is None):
        raise UsageError("--resolution-date and --resolution-number go together")
    data = api.envelope(
        dtes, cert, boleta=True if args.boleta else None,
        resolution_date=args.resolution_date, resolution_number=args.resolution_number or 0,
        receiver=args.receiver, issuer=args.issuer, sender=args.sender, timestamp=args.timestamp,
    )
    _write_out(data, args.output)
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    data = _read(args.file)
    report = api.verify(data, keyring=_keyring(args.sii_keys), check_schema=not args.no_schema,
                        check_cert_validity=not args.no_cert_validity)
    unusable = any(c.name == "xml" and c.failed for c in report.checks)
    untrusted = _untrusted(report.checks)
    ok = report.ok and not untrusted
    if args.json:
        out = report.to_dict()
        out["ok"] = ok
        out["untrusted"] = [{"name": c.name, "subject": c.subject, "reason": c.reason}
                            for c in untrusted]
        out["file"] = args.file
        _print_json(out)
    else:
        kind = report.kind or "?"
        print(f"{args.file}: {kind}, {len(report.documents)} document(s)")
        for c in report.checks:
            reason = f": {c.reason}" if c.reason else ""
            print(f"  {_mark(c.status)} {c.name} [{c.subject}]{reason}")
        if ok:
            print("result: OK")
        elif report.ok:
            print(f"result: NOT TRUSTED ({_untrusted_note(untrusted)})")
        else:
            names = ", ".join(f"{c.name} [{c.subject}]" for c in report.failures)
            note = f"; {_untrusted_note(untrusted)}" if untrusted else ""
            print(f"result: FAILED ({len(report.failures)} check(s) failed: {names}{note})")
    if unusable:
        return EXIT_UNUSABLE
    return EXIT_OK if ok else EXIT_FAILED


def cmd_validate(args: argparse.Namespace) -> int:
    data = _read(args.file)
    result = api.validate(data)
    if args.json:
        out = asdict(result)
        out["file"] = args.file
        _print_json(out)
    else:
        state = "valid" if result.valid else "INVALID"
        print(f"{args.file}: {state} ({result.schema})")
        for e in result.errors:
            print(f"  line {e.line}: {e.path}: {e.message}")
    return EXIT_OK if result.valid else EXIT_FAILED


def cmd_cert_inspect(args: argparse.Namespace) -> int:
    data = _read(args.cert)
    if args.password_file is not None:
        cert = api.Certificate.from_pkcs12(data, _password(args.password_file))
    else:
        try:
            cert = api.Certificate.public_only(data)
        except DteError:
            if Path(args.cert).suffix.lower() in (".p12", ".pfx"):
                raise UsageError("a PKCS#12 file needs --password-file") from None
            raise
    info = asdict(cert.info)
    info["has_private_key"] = cert.has_private_key
    info["valid_now"] = cert.valid_at()
    if args.json:
        _print_json(info)
    else:
        for key, value in info.items():
            print(f"{key}: {value}")
    return EXIT_OK


def cmd_caf_inspect(args: argparse.Namespace) -> int:
    caf = api.Caf.parse(_read(args.caf))
    checks = caf.check(_keyring(args.sii_keys))
    failed = [c for c in checks if c.failed]
    untrusted = _untrusted(checks)
    ok = not failed and not untrusted
    if args.json:
        _print_json({"info": asdict(caf.info), "checks": [asdict(c) for c in checks],
                     "ok": ok, "untrusted": [c.name for c in untrusted]})
    else:
        for key, value in asdict(caf.info).items():
            print(f"{key}: {value}")
        for c in checks:
            reason = f": {c.reason}" if c.reason else ""
            print(f"  {_mark(c.status)} {c.name}{reason}")
        if ok:
            print("result: OK")
        elif not failed:
            print(f"result: NOT TRUSTED ({_untrusted_note(untrusted)})")
        else:
            note = f"; {_untrusted_note(untrusted)}" if untrusted else ""
            print(f"result: FAILED ({', '.join(c.name for c in failed)}{note})")
    return EXIT_OK if ok else EXIT_FAILED


def _parse_types(text: str) -> list[int]:
    try:
        types = [int(t) for t in text.replace(" ", "").split(",") if t]
    except ValueError:
        raise UsageError(f"--types {text!r}: expected numbers separated by commas") from None
    unknown = [t for t in types if t not in api.supported_types()]
    if unknown or not types:
        raise UsageError(f"--types: unsupported type(s) {unknown}; supported: "
                         f"{list(api.supported_types())}")
    return types


def cmd_testkit(args: argparse.Namespace) -> int:
    types = _parse_types(args.types) if args.types else None
    kit = testkit.write_kit(args.out, rut=args.rut, types=types, signer_rut=args.signer_rut,
                            folio_from=args.folio_from, folio_to=args.folio_to)
    print(f"test kit for {kit.issuer_rut} in {kit.root} (NOT accepted by the real SII):")
    print(f"  trusted SII key: {kit.sii_keys_dir}  (use --sii-keys or DTE_SII_KEYS)")
    print(f"  certificate:     {kit.cert_path} (signer {kit.signer_rut}), password in "
          f"{kit.password_file}")
    for doc_type, path in kit.caf_paths.items():
        print(f"  CAF type {doc_type}: {path}")
    return EXIT_OK


# --- parser ----------------------------------------------------------------------------------


def _add_keys(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sii-keys", metavar="DIR", action="append",
                   help="folder of trusted CAF-signing keys named by IDK (100.pem); repeatable; "
                        "$DTE_SII_KEYS is always added")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dte", description="Chilean electronic invoicing (SII DTE): sign, verify, validate.",
        epilog="Exit codes: 0 ok, 1 a check failed, 2 unusable input.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_core.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("example", help="print the example input JSON of a document type")
    p.add_argument("type", metavar="TYPE", help="document type, e.g. 33")
    p.set_defaults(func=cmd_example)

    p = sub.add_parser("sign", help="stamp and sign one DTE from its input JSON")
    p.add_argument("input", metavar="INPUT.json")
    p.add_argument("--caf", metavar="CAF.xml", action="append", required=True,
                   help="CAF file (repeatable: the one covering the document is used)")
    p.add_argument("--cert", metavar="CERT.p12", required=True)
    p.add_argument("--password-file", metavar="F", required=True)
    p.add_argument("-o", "--output", metavar="OUT.xml", help="output file (default: stdout)")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.add_argument("--timestamp", metavar="YYYY-MM-DDTHH:MM:SS", help="TSTED/TmstFirma (default now)")
    p.add_argument("--today", metavar="YYYY-MM-DD", help="date for date rules (default today)")
    _add_keys(p)
    p.set_defaults(func=cmd_sign)

    p = sub.add_parser("envelope", help="wrap signed DTEs in a signed EnvioDTE/EnvioBOLETA")
    p.add_argument("dtes", metavar="DTE.xml", nargs="+")
    p.add_argument("--cert", metavar="CERT.p12", required=True)
    p.add_argument("--password-file", metavar="F", required=True)
    p.add_argument("--boleta", action="store_true", help="EnvioBOLETA (default: from the types)")
    p.add_argument("--resolution-date", metavar="D", help="FchResol (default today, number 0)")
    p.add_argument("--resolution-number", metavar="N", type=int, help="NroResol")
    p.add_argument("--receiver", metavar="RUT", default=api.SII_RUT,
                   help=f"RutReceptor (default SII, {api.SII_RUT})")
    p.add_argument("--issuer", metavar="RUT", help="RutEmisor (default: the DTEs')")
    p.add_argument("--sender", metavar="RUT", help="RutEnvia (default: the certificate's)")
    p.add_argument("--timestamp", metavar="YYYY-MM-DDTHH:MM:SS", help="TmstFirmaEnv")
    p.add_argument("-o", "--output", metavar="OUT.xml", help="output file (default: stdout)")
    p.set_defaults(func=cmd_envelope)

    p = sub.add_parser("verify", help="verify signatures, TED, CAF and schema of a document")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--json", action="store_true")
    p.add_argument("--no-schema", action="store_true", help="skip the schema check")
    p.add_argument("--no-cert-validity", action="store_true",
                   help="do not require the signer certificate valid at signing time")
    _add_keys(p)
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("validate", help="validate a document against SII's XSDs")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("cert", help="certificate tools")
    cert_sub = p.add_subparsers(dest="cert_command", metavar="ACTION")
    cert_sub.required = True
    q = cert_sub.add_parser("inspect", help="show a certificate (PKCS#12 with --password-file, or PEM/DER)")
    q.add_argument("cert", metavar="CERT")
    q.add_argument("--password-file", metavar="F")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_cert_inspect)

    p = sub.add_parser("caf", help="CAF tools")
    caf_sub = p.add_subparsers(dest="caf_command", metavar="ACTION")
    caf_sub.required = True
    q = caf_sub.add_parser("inspect", help="show a CAF and check its SII signature and keys")
    q.add_argument("caf", metavar="CAF.xml")
    q.add_argument("--json", action="store_true")
    _add_keys(q)
    q.set_defaults(func=cmd_caf_inspect)

    p = sub.add_parser("testkit", help="generate test SII key, CAFs and certificate (demo only)")
    p.add_argument("--out", metavar="DIR", required=True)
    p.add_argument("--rut", metavar="RUT", default=testkit.DEFAULT_ISSUER_RUT,
                   help="issuer RUT of the CAFs (default: the examples' issuer)")
    p.add_argument("--signer-rut", metavar="RUT", default="11111111-1")
    p.add_argument("--types", metavar="33,39,...", help="document types (default: all supported)")
    p.add_argument("--folio-from", type=int, default=1)
    p.add_argument("--folio-to", type=int, default=100)
    p.set_defaults(func=cmd_testkit)

    p = sub.add_parser("demo", help="the main job: test material, sign a batch of every type, "
                       "envelopes, schema validation and verification, summary")
    demo.build_parser(p)
    p.set_defaults(func=demo.main)

    # Listed for --help only: main() hands every argument after "simulator" to the simulator's
    # own parser, so that its options (and its --help) are its own.
    sub.add_parser("simulator", help="run the local SII simulator (see dte simulator --help)")
    cli_sii.register(sub)
    cli_books.register(sub)
    cli_reception.register(sub)
    cli_worker.register(sub)
    cli_ops.register(sub)
    cli_certify.register(sub)
    return parser


def run_simulator(argv: list[str]) -> int:
    # Imported by name: the simulator is an independently written part with its own parser.
    simulator = importlib.import_module("dte_native.simulator")
    run: Callable[[list[str]], int] = getattr(simulator, "main")
    return run(argv)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["simulator"]:
        return run_simulator(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
        return code
    except DteError as e:
        print(f"dte: error: {type(e).__name__} {e.code}: {e.message}", file=sys.stderr)
        return EXIT_UNUSABLE
    except UsageError as e:
        print(f"dte: error: {e}", file=sys.stderr)
        return EXIT_UNUSABLE
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
