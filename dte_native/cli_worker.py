"""`dte worker`, `dte enqueue` and `dte queue`: jobs on Redis for many worker processes.

    dte worker --redis redis://127.0.0.1:6379/0 --concurrency 8 --env simulator --url http://127.0.0.1:8080 \\
        --cert cert.p12 --password-file pw --webhook-url https://odoo/l10n_cl_dte/webhook --webhook-secret-file s
    dte enqueue send envio.xml --redis redis://127.0.0.1:6379/0
    dte enqueue poll 0000012345 --company 76543210-3
    dte queue stats --json
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from typing import Any

from . import queue as q
from .errors import DteError

EXIT_OK, EXIT_FAILED = 0, 1


def _redis_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--redis", metavar="URL", default=os.environ.get(q.REDIS_URL_ENV, ""),
                   help=f"Redis URL, e.g. redis://127.0.0.1:6379/0 (${q.REDIS_URL_ENV})")
    p.add_argument("--prefix", default=os.environ.get("DTE_QUEUE_PREFIX", "dte"),
                   help="key prefix of the queue (default dte; $DTE_QUEUE_PREFIX)")
    p.add_argument("--group", default="dte-workers", help="consumer group (default dte-workers)")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def _queue(args: argparse.Namespace, **extra: Any) -> q.JobQueue:
    from . import cli

    if not args.redis:
        raise cli.UsageError(f"no Redis: pass --redis redis://HOST:PORT/DB or set ${q.REDIS_URL_ENV}")
    return q.JobQueue(args.redis, prefix=args.prefix, group=args.group, **extra)


def _print(args: argparse.Namespace, value: Any, text: str) -> None:
    if args.json:
        print(json.dumps(value, ensure_ascii=False, sort_keys=True), flush=True)
    else:
        print(text, flush=True)


# ------------------------------------------------------------------------------ worker

def cmd_worker(args: argparse.Namespace) -> int:
    from . import cli, sii, webhooks
    from .worker import Worker, WorkerConfig, default_consumer

    if not args.redis:
        raise cli.UsageError(f"no Redis: pass --redis redis://HOST:PORT/DB or set ${q.REDIS_URL_ENV}")
    if bool(args.webhook_url) != bool(args.webhook_secret_file):
        raise cli.UsageError("--webhook-url and --webhook-secret-file go together")
    if args.concurrency < 1:
        raise cli.UsageError("--concurrency must be at least 1")
    secret = webhooks.read_secret(args.webhook_secret_file) if args.webhook_secret_file else b""
    client = None
    if args.cert:
        if args.env == "simulator" and not args.url:
            raise cli.UsageError("--env simulator needs --url BASE (e.g. http://127.0.0.1:8080)")
        cert = cli._load_cert(args.cert, args.password_file)
        # Tokens, breakers and the rate limit are shared through the same Redis.
        client = sii.SiiClient(cert, sii.ClientConfig(
            args.env, base_url=args.url, timeout_s=args.timeout, max_attempts=args.attempts,
            redis_url=args.redis, redis_prefix=args.prefix, rate_per_s=args.rate))
    imap_password = ""
    if args.imap_password_file:
        imap_password = cli._password(args.imap_password_file)
    cfg = WorkerConfig(redis_url=args.redis, group=args.group, consumer=args.consumer or default_consumer(),
                       concurrency=args.concurrency, prefix=args.prefix, webhook_url=args.webhook_url or "",
                       webhook_secret=secret, poll_s=args.poll, poll_timeout_s=args.poll_timeout,
                       max_attempts=args.max_attempts, claim_idle_ms=args.claim_idle_ms,
                       retry_base_s=args.retry_base, exit_when_idle_s=args.exit_when_idle,
                       imap_password=imap_password)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    worker = Worker(cfg, client)
    if args.metrics_port:
        from . import metrics

        token = (cli._password(args.metrics_token_file) if args.metrics_token_file
                 else os.environ.get("DTE_METRICS_TOKEN", ""))
        if not token:
            raise cli.UsageError("--metrics-port needs --metrics-token-file (or $DTE_METRICS_TOKEN)")
        metrics.serve(metrics.watch_worker(worker), token, host=args.metrics_host, port=args.metrics_port)
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # On stderr even with --json (stdout stays one JSON line): supervisors wait for it.
    print(f"dte worker {cfg.consumer}: group {cfg.group}, concurrency {cfg.concurrency}", file=sys.stderr, flush=True)
    counters = worker.run(stop)
    _print(args, {"consumer": cfg.consumer, **counters},
           f"dte worker {cfg.consumer}: " + ", ".join(f"{k} {v}" for k, v in counters.items()))
    return EXIT_OK


# ----------------------------------------------------------------------------- enqueue

def cmd_enqueue(args: argparse.Namespace) -> int:
    from . import cli

    queue = _queue(args)
    if args.kind == "send":
        if not args.target:
            raise cli.UsageError("dte enqueue send ENVELOPE.xml")
        r = queue.send_envelope(cli._read(args.target), args.company or "", poll=not args.no_poll,
                                filename=os.path.basename(args.target), job_id=args.id or "")
    elif args.kind == "poll":
        if not args.target or not args.company:
            raise cli.UsageError("dte enqueue poll TRACKID --company RUT")
        r = queue.poll_track(args.target, args.company, boleta=args.boleta, wait=not args.no_poll,
                             job_id=args.id or "")
    else:
        if not (args.imap_url and args.user and args.company and args.store):
            raise cli.UsageError("dte enqueue inbox --imap-url URL --user USER --company RUT --store DIR")
        r = queue.fetch_inbox(args.imap_url, args.user, args.company, args.store, limit=args.limit,
                              job_id=args.id or "")
    _print(args, {"id": r.id, "added": r.added, "kind": args.kind},
           f"{r.id}: {'enqueued' if r.added else 'already enqueued or done (not added again)'}")
    return EXIT_OK


# ------------------------------------------------------------------------------- queue

def cmd_queue(args: argparse.Namespace) -> int:
    queue = _queue(args)
    if args.action == "stats":
        s = queue.stats()
        text = (f"depth {s['depth']} (waiting {s['waiting']}, pending {s['pending']}), delayed retries "
                f"{s['delayed']}, dead letters {s['dead']}, results {s['results']}, consumers {s['consumers']}")
        for name, n in sorted(s["pending_by_consumer"].items()):
            text += f"\n  {name}: {n} pending"
        _print(args, s, text)
    elif args.action == "dead":
        dead = queue.dead_letters(args.limit or 100)
        lines = [f"{d['id']} {d.get('kind', '')} attempts {d.get('attempts', '?')}: "
                 f"{(d.get('error') or {}).get('code', '')} {(d.get('error') or {}).get('message', '')}"
                 for d in dead]
        _print(args, dead, "\n".join(lines) or "no dead letters")
    elif args.action == "result":
        from . import cli
        if not args.id:
            raise cli.UsageError("dte queue result --id JOB_ID")
        res = queue.result(args.id)
        _print(args, res, json.dumps(res, ensure_ascii=False, indent=1) if res is not None else "no result (yet)")
        return EXIT_OK if res is not None else EXIT_FAILED
    elif args.action == "purge":
        from . import cli
        if not args.yes:
            raise cli.UsageError(f"dte queue purge deletes every key under '{args.prefix}:'; add --yes")
        n = queue.purge()
        _print(args, {"deleted": n}, f"deleted {n} keys")
    return EXIT_OK


def register(sub: Any) -> None:
    p = sub.add_parser("worker", help="run queued jobs from Redis (send, poll, inbox), report by webhook")
    _redis_args(p)
    p.add_argument("--consumer", metavar="NAME", help="consumer name, unique per process (default HOST-PID)")
    p.add_argument("--concurrency", type=int, default=4, help="jobs at once (default 4)")
    p.add_argument("--webhook-url", metavar="URL",
                   help="where to POST results (…/l10n_cl_dte/webhook; the event name is appended)")
    p.add_argument("--webhook-secret-file", metavar="FILE", help="file holding the shared HMAC secret")
    p.add_argument("--env", choices=["simulator", "certification", "production"],
                   default=os.environ.get("DTE_SII_ENV", "certification"), help="SII environment ($DTE_SII_ENV)")
    p.add_argument("--url", metavar="BASE", default=os.environ.get("DTE_SII_URL", ""),
                   help="base URL of the simulator ($DTE_SII_URL)")
    p.add_argument("--cert", metavar="P12", help="signer certificate (PKCS#12); needed by send and poll jobs")
    p.add_argument("--password-file", metavar="FILE", help="file holding the PKCS#12 password")
    p.add_argument("--imap-password-file", metavar="FILE", help="IMAP password for inbox jobs")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per SII request (default 60)")
    p.add_argument("--attempts", type=int, default=4, help="tries per SII request (default 4)")
    p.add_argument("--rate", type=float, default=0.0, help="SII requests per second over all workers (0 = no limit)")
    p.add_argument("--poll", type=float, default=2.0, help="seconds between status queries (default 2)")
    p.add_argument("--poll-timeout", type=float, default=600.0, help="stop following a track id after this")
    p.add_argument("--max-attempts", type=int, default=5, help="attempts per job before dead letter (default 5)")
    p.add_argument("--retry-base", type=float, default=1.0, help="backoff before the 2nd attempt, seconds")
    p.add_argument("--claim-idle-ms", type=int, default=30000,
                   help="take over jobs of a worker silent this long (default 30000)")
    p.add_argument("--exit-when-idle", type=float, default=0.0, metavar="S",
                   help="stop after S seconds without jobs (default: run until SIGTERM)")
    p.add_argument("--metrics-port", type=int, metavar="PORT",
                   help="serve Prometheus /metrics (bearer token) on this port")
    p.add_argument("--metrics-host", default="127.0.0.1", help="address for --metrics-port (default 127.0.0.1)")
    p.add_argument("--metrics-token-file", metavar="FILE", help="bearer token of /metrics ($DTE_METRICS_TOKEN)")
    p.add_argument("-v", "--verbose", action="store_true", help="log every job")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("enqueue", help="submit a job for `dte worker` (send ENVELOPE | poll TRACKID | inbox)")
    p.add_argument("kind", choices=list(q.JOB_KINDS))
    p.add_argument("target", nargs="?", metavar="ENVELOPE|TRACKID")
    _redis_args(p)
    p.add_argument("--company", metavar="RUT", help="issuing company (send: default the carátula's)")
    p.add_argument("--no-poll", action="store_true", help="send/poll: do not wait for a final state")
    p.add_argument("--boleta", action="store_true", help="poll: a boleta REST track id")
    p.add_argument("--id", metavar="JOB_ID", help="idempotency key (send: default from the envelope's bytes)")
    p.add_argument("--imap-url", help="inbox: imaps://host:993/INBOX")
    p.add_argument("--user", help="inbox: IMAP user")
    p.add_argument("--store", metavar="DIR", help="inbox: where the worker stores mails")
    p.add_argument("--limit", type=int, help="inbox: at most this many messages")
    p.set_defaults(func=cmd_enqueue)

    p = sub.add_parser("queue", help="inspect the job queue: stats | dead | result | purge")
    p.add_argument("action", choices=["stats", "dead", "result", "purge"])
    _redis_args(p)
    p.add_argument("--id", metavar="JOB_ID", help="result: the job")
    p.add_argument("--limit", type=int, help="dead: at most this many")
    p.add_argument("--yes", action="store_true", help="purge: really delete")
    p.set_defaults(func=cmd_queue)


__all__ = ["register", "cmd_worker", "cmd_enqueue", "cmd_queue", "DteError"]
