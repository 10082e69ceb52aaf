"""`dte metrics-serve`: the Prometheus endpoint of dte_native outside Odoo and the worker.

    DTE_METRICS_TOKEN=s3cret dte metrics-serve --port 9464 --cert cert.pem \\
        --caf caf-33.xml@41 --redis redis://127.0.0.1:6379/0

Serves ``GET /metrics`` (``Authorization: Bearer <token>``) and ``GET /healthz``. Reports days
left on certificates, folios and days left on CAFs (``FILE@NEXT``: NEXT is the next folio to be
used; without it the whole range counts as left) and, with ``--redis``, the depth of the job
queues. ``dte worker --metrics-port`` serves the same registry plus its SII call metrics.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # metrics needs prometheus_client: imported only when a command uses it
    from . import metrics

EXIT_OK = 0


def read_token(token_file: str | None) -> str:
    """The metrics token from ``--token-file`` or ``$DTE_METRICS_TOKEN``."""
    from .cli import UsageError  # noqa: PLC0415 - cli imports this module

    if token_file:
        try:
            token = Path(token_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as e:
            raise UsageError(f"cannot read token file {token_file}: {getattr(e, 'strerror', None) or e}") from None
    else:
        token = os.environ.get("DTE_METRICS_TOKEN", "").strip()
    if not token:
        raise UsageError("a token is required: --token-file FILE or $DTE_METRICS_TOKEN "
                         "(the metrics endpoint is never public)")
    return token


def _certificates(paths: list[str], password_file: str | None) -> Callable[[], list[Any]]:
    from . import _api as api  # noqa: PLC0415
    from .cli import _load_cert, _read  # noqa: PLC0415

    certs = []
    for p in paths:
        if Path(p).suffix.lower() in (".p12", ".pfx"):
            certs.append(_load_cert(p, password_file))
        else:
            certs.append(api.Certificate.public_only(_read(p)))
    return lambda: certs


def _cafs(specs: list[str]) -> Callable[[], list[tuple[Any, int]]]:
    from . import _api as api  # noqa: PLC0415
    from .cli import UsageError, _read  # noqa: PLC0415

    cafs = []
    for spec in specs:
        path, _, nxt = spec.partition("@")
        if nxt and not nxt.isdigit():
            raise UsageError(f"--caf {spec}: expected FILE or FILE@NEXT_FOLIO")
        caf = api.Caf.parse(_read(path))
        cafs.append((caf, int(nxt) if nxt else caf.info.folio_from))
    return lambda: cafs


def queue_source(redis_url: str, prefix: str = "dte", group: str = "dte-workers") -> metrics.Source:
    """Queue gauges from the Redis job queue (``dte_native.queue.queue_metrics``)."""
    from .cli import UsageError  # noqa: PLC0415

    try:
        from . import queue  # noqa: PLC0415 - optional part (Redis scale-out)
    except ImportError as e:
        raise UsageError(f"--redis: the Redis job queue is not available here ({e})") from None
    from . import metrics  # noqa: PLC0415

    return metrics.queue_samples(lambda: queue.queue_metrics(redis_url, prefix=prefix, group=group), prefix)


def configure(args: argparse.Namespace, m: metrics.DteMetrics) -> None:
    """Registers the sources the options ask for on ``m``."""
    from . import metrics  # noqa: PLC0415

    if args.cert:
        m.add_source("certificates", metrics.certificate_source(
            _certificates(args.cert, args.password_file), company=args.company))
    if args.caf:
        m.add_source("cafs", metrics.caf_source(_cafs(args.caf), company=args.company))
    if args.redis:
        m.add_source("queue", queue_source(args.redis, prefix=args.prefix))


def cmd_metrics_serve(args: argparse.Namespace) -> int:
    from . import metrics  # noqa: PLC0415

    token = read_token(args.token_file)
    m = metrics.process_metrics()
    configure(args, m)
    server = metrics.serve(m, token, host=args.host, port=args.port, background=True)
    print(f"dte metrics-serve: http://{args.host}:{server.port}/metrics (bearer token required), "
          f"/healthz", file=sys.stderr, flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.close()
    return EXIT_OK


def add_metrics_options(p: argparse.ArgumentParser) -> None:
    """Options shared by ``dte metrics-serve`` and ``dte worker`` (sources of snapshot gauges)."""
    p.add_argument("--token-file", metavar="F", help="file holding the bearer token "
                   "(default $DTE_METRICS_TOKEN)")
    p.add_argument("--cert", metavar="CERT", action="append",
                   help="certificate to report days left on (PEM/DER, or .p12 with --password-file); repeatable")
    p.add_argument("--password-file", metavar="F", help="password of a .p12 given with --cert")
    p.add_argument("--caf", metavar="FILE[@NEXT]", action="append",
                   help="CAF to report folios and days left on; NEXT = next folio to use; repeatable")
    p.add_argument("--company", metavar="NAME", default="", help="company label of certificates and CAFs")
    p.add_argument("--redis", metavar="URL", default=os.environ.get("DTE_REDIS_URL", ""),
                   help="Redis URL of the job queue, for queue depth ($DTE_REDIS_URL)")
    p.add_argument("--prefix", default=os.environ.get("DTE_QUEUE_PREFIX", "dte"),
                   help="key prefix of the job queue (default dte; $DTE_QUEUE_PREFIX)")


def add_worker_metrics_options(p: argparse.ArgumentParser) -> None:
    """``dte worker --metrics-port N [--metrics-host H] [--metrics-token-file F]``."""
    p.add_argument("--metrics-port", type=int, default=0,
                   help="serve Prometheus metrics on this port (0 = no metrics endpoint)")
    p.add_argument("--metrics-host", default="127.0.0.1", help="address of the metrics endpoint")
    p.add_argument("--metrics-token-file", metavar="F",
                   help="bearer token of the metrics endpoint (default $DTE_METRICS_TOKEN)")


def start_worker_metrics(args: argparse.Namespace, worker: Any) -> Any:
    """Serves ``worker``'s metrics when ``--metrics-port`` was given; returns the server (or
    None). Call after creating the Worker and before ``worker.run``."""
    if not getattr(args, "metrics_port", 0):
        return None
    from . import metrics  # noqa: PLC0415

    token = read_token(getattr(args, "metrics_token_file", None))
    m = metrics.watch_worker(worker, metrics.process_metrics())
    server = metrics.serve(m, token, host=args.metrics_host, port=args.metrics_port)
    print(f"dte worker: metrics on http://{args.metrics_host}:{server.port}/metrics", file=sys.stderr, flush=True)
    return server


def register(sub: Any) -> None:
    p = sub.add_parser("metrics-serve", help="serve Prometheus metrics (certificates, CAFs, queue) "
                       "behind a bearer token")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=9464, help="port (default 9464; 0 = any free port)")
    add_metrics_options(p)
    p.set_defaults(func=cmd_metrics_serve)
