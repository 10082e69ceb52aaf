"""`dte inbox` and `dte respond`: reception of suppliers' DTEs from the command line.

    $ dte inbox --imap imaps://mail.example.cl/INBOX --user dte --password-file pw \\
          --company-rut 77123456-9 --store inbox/
    $ dte respond inbox/accepted/17-3.eml --action accept --company-rut 77123456-9 \\
          --cert firma.p12 --password-file cert.pw -o ResultadoDTE.xml
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from . import reception


def _cli() -> Any:
    from . import cli  # late: cli imports this module

    return cli


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def cmd_inbox(args: argparse.Namespace) -> int:
    cli = _cli()
    password = cli._password(args.password_file)
    keyring = cli._keyring(args.sii_keys)
    if args.store:
        entries = reception.run_inbox(args.imap, args.user, password, args.store,
                                      company_rut=args.company_rut, keyring=keyring,
                                      verify_tls=not args.insecure, limit=args.limit)
        results = [(e.uid, e.outcome) for e in entries]
    else:
        batch = reception.fetch_inbox(args.imap, args.user, password, args.since_uid,
                                      verify_tls=not args.insecure, limit=args.limit)
        results = [(m.uid, reception.process_message(m.raw, company_rut=args.company_rut, keyring=keyring))
                   for m in batch.messages]
    if args.json:
        cli._print_json([{"uid": uid} | o.summary() for uid, o in results])
    else:
        rows = [["UID", "FROM", "FILE", "KIND", "STATUS", "DOCUMENTS", "REASON"]]
        for uid, o in results:
            if not o.items:
                rows.append([str(uid), o.sender, "-", "-", "quarantined", "-", o.reason])
            for i in o.items:
                docs = ",".join(f"T{d.doc_type}F{d.folio}" for d in (i.envelope.documents if i.envelope else []))
                rows.append([str(uid), o.sender, i.filename or i.part_path, i.kind, i.status, docs or "-",
                             i.reason[:120]])
        print(_table(rows))
        print(f"{len(results)} message(s), {sum(o.quarantined for _, o in results)} quarantined")
    return 1 if any(o.quarantined for _, o in results) else 0  # cli.EXIT_FAILED / EXIT_OK


def cmd_respond(args: argparse.Namespace) -> int:
    cli = _cli()
    data = cli._read(args.input)
    keyring = cli._keyring(args.sii_keys)
    if reception.classify(data) == "EnvioDTE":
        envelopes = [(reception.verify_received(data, company_rut=args.company_rut, keyring=keyring),
                      Path(args.input).name)]
        reply_to = args.to or ""
    else:  # a stored mail
        outcome = reception.process_message(data, company_rut=args.company_rut, keyring=keyring)
        envelopes = [(i.envelope, i.filename or "envio.xml") for i in outcome.items if i.envelope]
        reply_to = args.to or outcome.reply_to
    if not envelopes:
        raise cli.UsageError(f"{args.input}: no EnvioDTE to answer")
    cert = cli._load_cert(args.cert, args.password_file)
    contact = {"name": args.contact_name or "", "email": args.contact_email or ""}
    answers = []
    for n, (env, name) in enumerate(envelopes):
        if args.action in ("accept", "receipt") and not env.ok:
            raise cli.UsageError(f"{name}: verification failed ({env.glosa}); only 'receive' or "
                                 "'reject' can answer it")
        answers.append(reception.respond(env, cert, args.action, company_rut=args.company_rut,
                                         file_name=name, reason=args.reason or "", code=args.code,
                                         recinto=args.recinto or "", id_respuesta=args.id + n,
                                         cod_envio=args.id + n, contact=contact))
    if args.output:
        for i, (fname, xml) in enumerate(answers):
            out = args.output if len(answers) == 1 else str(Path(args.output).with_suffix(f".{i + 1}.xml"))
            cli._write_out(xml, out)
    elif not args.smtp:
        cli._write_out(answers[0][1], None)
    if args.smtp:
        if not reply_to or not args.sender:
            raise cli.UsageError("--smtp needs --from and a recipient (--to, or the mail's Reply-To/From)")
        host, _, port = args.smtp.rpartition(":")
        reception.send_answer(host or args.smtp, int(port or 25), args.sender, reply_to,
                              f"Respuesta DTE ({args.action})", answers, starttls=args.starttls)
        print(f"sent {len(answers)} answer(s) to {reply_to}", file=sys.stderr)
    return 0  # cli.EXIT_OK


def register(sub: Any) -> None:
    p = sub.add_parser("inbox", help="fetch the exchange mailbox (IMAP), verify what arrived, print a table")
    p.add_argument("--imap", metavar="URL", required=True, help="imaps://host[:port]/FOLDER (imap:// for tests)")
    p.add_argument("--user", required=True)
    p.add_argument("--password-file", metavar="FILE", required=True)
    p.add_argument("--company-rut", required=True, help="our RUT: documents must be addressed to it")
    p.add_argument("--sii-keys", action="append", metavar="DIR", help="extra SII CAF keys folder")
    p.add_argument("--store", metavar="DIR",
                   help="keep mails and progress here (accepted/, quarantine/, state.json)")
    p.add_argument("--since-uid", type=int, default=0, help="without --store: fetch UIDs above this")
    p.add_argument("--limit", type=int, help="at most this many messages")
    p.add_argument("--insecure", action="store_true", help="do not verify the server's TLS certificate")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_inbox)

    p = sub.add_parser("respond", help="answer a received EnvioDTE (or a stored mail): RespuestaDTE / EnvioRecibos")
    p.add_argument("input", help="the received EnvioDTE XML or the stored .eml")
    p.add_argument("--action", choices=["receive", "accept", "reject", "receipt"], required=True)
    p.add_argument("--company-rut", required=True)
    p.add_argument("--cert", metavar="P12", required=True)
    p.add_argument("--password-file", metavar="FILE")
    p.add_argument("--sii-keys", action="append", metavar="DIR")
    p.add_argument("--reason", help="EstadoDTEGlosa (required to reject)")
    p.add_argument("--code", type=int, default=0, help="CodRchDsc, negative")
    p.add_argument("--recinto", help="where goods/services were received (receipt)")
    p.add_argument("--id", type=int, default=1, help="IdRespuesta / CodEnvio (default 1)")
    p.add_argument("--contact-name")
    p.add_argument("--contact-email")
    p.add_argument("-o", "--output", metavar="FILE")
    p.add_argument("--smtp", metavar="HOST:PORT", help="send the answer by mail")
    p.add_argument("--from", dest="sender", metavar="ADDR")
    p.add_argument("--to", metavar="ADDR", help="default: the stored mail's Reply-To or From")
    p.add_argument("--starttls", action="store_true")
    p.set_defaults(func=cmd_respond)


__all__ = ["register", "cmd_inbox", "cmd_respond"]
