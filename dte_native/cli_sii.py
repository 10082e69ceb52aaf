"""`dte token|send|status|doc-status|claim|resend-mail|sii-states`: the SII client on the command line.

    dte send envio.xml --env simulator --url http://127.0.0.1:8080 --cert cert.p12 --password-file pw
    dte status 0000000001 --company 76543210-3 --wait --env simulator --url ... --cert ... --password-file ...
    dte resend-mail 0000000001 --company 76543210-3 --env simulator --url ... --cert ... --password-file ...
    dte sii-states --service estup
"""
from __future__ import annotations

import argparse
import os
from dataclasses import asdict
from typing import Any

from . import sii

EXIT_OK, EXIT_FAILED = 0, 1


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--env", choices=["simulator", "certification", "production"],
                   default=os.environ.get("DTE_SII_ENV", "certification"),
                   help="SII environment (default certification; $DTE_SII_ENV)")
    p.add_argument("--url", metavar="BASE", default=os.environ.get("DTE_SII_URL", ""),
                   help="base URL of the simulator, e.g. http://127.0.0.1:8080 ($DTE_SII_URL)")
    p.add_argument("--cert", metavar="P12", required=True, help="signer certificate (PKCS#12)")
    p.add_argument("--password-file", metavar="FILE", help="file holding the PKCS#12 password")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per request (default 60)")
    p.add_argument("--attempts", type=int, default=4, help="tries per request (default 4)")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def _client(args: argparse.Namespace) -> sii.SiiClient:
    from . import cli  # late: cli imports this module

    if args.env == "simulator" and not args.url:
        raise cli.UsageError("--env simulator needs --url BASE (e.g. http://127.0.0.1:8080)")
    cert = cli._load_cert(args.cert, args.password_file)
    return sii.SiiClient(cert, sii.ClientConfig(args.env, base_url=args.url, timeout_s=args.timeout,
                                                max_attempts=args.attempts))


def _out(args: argparse.Namespace, value: Any, text: str) -> None:
    from . import cli

    if args.json:
        cli._print_json(value)
    else:
        print(text)


def cmd_token(args: argparse.Namespace) -> int:
    c = _client(args)
    token = c.token("boleta" if args.boleta else "soap", force_new=True)
    _out(args, {"token": token, "family": "boleta" if args.boleta else "soap", "signer": c.signer_rut}, token)
    return EXIT_OK


def cmd_send(args: argparse.Namespace) -> int:
    from . import cli

    data = cli._read(args.envelope)
    r = _client(args).upload(data, args.company or "", os.path.basename(args.envelope),
                             force_dte_upload=args.dte_upload)
    text = (f"track id {r.track_id}" if r.track_id else "already received by SII (duplicate)")
    _out(args, asdict(r), text)
    return EXIT_OK


def _status_text(st: sii.EnvelopeStatus) -> str:
    lines = [f"{st.track_id}: {st.state} ({st.sii_state} {st.glosa})".rstrip()]
    for c in st.counts:
        lines.append(f"  type {c.doc_type}: informed {c.informed}, accepted {c.accepted}, "
                     f"rejected {c.rejected}, objections {c.objections}")
    for d in st.details:
        lines.append(f"  {d.doc_type} #{d.folio}: {d.state} {d.description or ''}".rstrip())
    return "\n".join(lines)


def cmd_status(args: argparse.Namespace) -> int:
    c = _client(args)
    if args.wait:
        st = c.wait_final(args.trackid, args.company, args.boleta, poll_s=args.poll, timeout_s=args.wait_timeout,
                          kind=args.kind)
    else:
        st = c.envelope_status(args.trackid, args.company, args.boleta, args.kind)
    _out(args, asdict(st), _status_text(st))
    return EXIT_FAILED if st.state == "rejected" else EXIT_OK


def cmd_doc_status(args: argparse.Namespace) -> int:
    from . import cli

    c = _client(args)
    if args.envelope:
        queries = sii.documents_of_envelope(cli._read(args.envelope))
    else:
        missing = [n for n in ("issuer", "receiver", "type", "folio", "date", "amount") if getattr(args, n) is None]
        if missing:
            raise cli.UsageError("give --from ENVELOPE.xml or all of " + ", ".join("--" + m for m in missing))
        queries = [sii.DocumentQuery(args.issuer, args.receiver, args.type, args.folio, args.date, args.amount)]
    out, lines, bad = [], [], False
    for q in queries:
        boleta = args.boleta or q.doc_type in (39, 41)
        st = c.boleta_document_status(q) if boleta else c.document_status(q, advanced=args.advanced)
        bad = bad or st.state != "received"
        out.append({"query": asdict(q), "status": asdict(st)})
        lines.append(f"{q.doc_type} #{q.folio}: {st.state} -> {st.verdict}{'' if st.final else ' (not final)'} "
                     f"({st.sii_state} {st.glosa})")
    _out(args, out, "\n".join(lines))
    return EXIT_FAILED if bad else EXIT_OK


def cmd_resend_mail(args: argparse.Namespace) -> int:
    res = _client(args).resend_mail(args.trackid, args.company)
    _out(args, asdict(res), f"{args.trackid}: {res.description} (ESTADO {res.code} {res.glosa})".rstrip())
    return EXIT_OK if res.ok else EXIT_FAILED


def cmd_sii_states(args: argparse.Namespace) -> int:
    rows = [r for r in sii.state_table() if not args.service or r.service == args.service]
    lines = [f"{r.service:<16} {r.code:<24} {'final' if r.final else 'open ':<5} {r.verdict:<24} "
             f"{r.meaning} [{r.source}]" for r in rows]
    _out(args, [asdict(r) for r in rows], "\n".join(lines))
    return EXIT_OK


def cmd_claim(args: argparse.Namespace) -> int:
    c = _client(args)
    action = args.action.upper()
    if action == "EVENTS":
        ev = c.claim_events(args.issuer, args.type, args.folio)
        text = "\n".join([f"{ev.code}: {ev.description}"] +
                         [f"  {e.date} {e.code} {e.description} ({e.responsible_rut})" for e in ev.events])
        _out(args, asdict(ev), text)
        return EXIT_OK
    if action == "RECEIVED":
        date = c.reception_date(args.issuer, args.type, args.folio)
        _out(args, {"reception_date": date}, date)
        return EXIT_OK
    if action == "CEDIBLE":
        res = c.transferable(args.issuer, args.type, args.folio)
    else:
        res = c.claim(args.issuer, args.type, args.folio, action)
    _out(args, asdict(res), f"{res.code}: {res.description}")
    return EXIT_OK if res.ok or action == "CEDIBLE" else EXIT_FAILED


def register(subparsers: Any) -> None:
    """Adds the SII commands to the `dte` parser's subparsers."""
    p = subparsers.add_parser("token", help="get a fresh SII token (checks certificate and access)")
    _common(p)
    p.add_argument("--boleta", action="store_true", help="the boleta REST token instead of the SOAP one")
    p.set_defaults(func=cmd_token)

    p = subparsers.add_parser("send", help="upload a signed EnvioDTE/EnvioBOLETA to SII")
    p.add_argument("envelope", metavar="ENVELOPE.xml")
    _common(p)
    p.add_argument("--company", metavar="RUT", help="issuing company (default: the carátula's RutEmisor)")
    p.add_argument("--dte-upload", action="store_true",
                   help="send an EnvioBOLETA through DTEUpload (boleta certification set)")
    p.set_defaults(func=cmd_send)

    p = subparsers.add_parser("status", help="state of an upload (track id)")
    p.add_argument("trackid", metavar="TRACKID")
    _common(p)
    p.add_argument("--company", metavar="RUT", required=True, help="issuing company RUT")
    p.add_argument("--boleta", action="store_true", help="a boleta REST track id")
    p.add_argument("--wait", action="store_true", help="poll until the state is final")
    p.add_argument("--poll", type=float, default=5.0, help="seconds between polls with --wait")
    p.add_argument("--wait-timeout", type=float, default=600.0, help="give up waiting after this many seconds")
    p.add_argument("--kind", choices=["auto", "documents", "book"], default="auto",
                   help="how to read an EPR without per-type counts: book (LibroCV/LibroGuia/RVD: final "
                        "as it stands), documents (EnvioDTE: an error), auto (default: accepted)")
    p.set_defaults(func=cmd_status)

    p = subparsers.add_parser("resend-mail",
                              help="ask SII to e-mail an upload's result again (wsDTECorreo.reenvioCorreo)")
    p.add_argument("trackid", metavar="TRACKID")
    _common(p)
    p.add_argument("--company", metavar="RUT", required=True, help="issuing company RUT")
    p.set_defaults(func=cmd_resend_mail)

    p = subparsers.add_parser("sii-states", help="every SII state/code the client maps, final or not, and its verdict")
    p.add_argument("--service", choices=["upload", "estup", "estup_book", "estdte", "boleta_envelope", "correo"],
                   help="only this service's codes")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_sii_states)

    p = subparsers.add_parser("doc-status", help="state of documents at SII (QueryEstDte)")
    _common(p)
    p.add_argument("--from", dest="envelope", metavar="ENVELOPE.xml", help="every DTE of this envelope")
    p.add_argument("--issuer", metavar="RUT")
    p.add_argument("--receiver", metavar="RUT")
    p.add_argument("--type", type=int)
    p.add_argument("--folio", type=int)
    p.add_argument("--date", metavar="YYYY-MM-DD")
    p.add_argument("--amount", type=int, help="MntTotal")
    p.add_argument("--advanced", action="store_true", help="QueryEstDteAv (needs the signature; use --from)")
    p.add_argument("--boleta", action="store_true", help="boleta REST document status")
    p.set_defaults(func=cmd_doc_status)

    p = subparsers.add_parser("claim", help="accept/claim a received DTE, or list its events")
    p.add_argument("action", metavar="ACTION",
                   help="ACD accept, RCD claim content, ERM receipt of goods, RFP/RFT lack of goods; "
                        "or events, cedible, received")
    _common(p)
    p.add_argument("--issuer", metavar="RUT", required=True, help="issuer RUT of the DTE")
    p.add_argument("--type", type=int, required=True)
    p.add_argument("--folio", type=int, required=True)
    p.set_defaults(func=cmd_claim)
