"""Prometheus metrics of dte_native: one registry, the instruments, and a token-protected server.

Exposition is Prometheus' text format 0.0.4, written by ``prometheus_client`` (Debian's
``python3-prometheus-client``): escaping, histogram buckets and multi-process aggregation are
its job, not ours. What this module adds is the *contract*: the metric names below are the ones
the Grafana dashboard and the alert rules in ``deploy/`` use (a test checks they agree).

Two kinds of metrics:

* **process metrics**, updated as work happens: SII call latency by service, calls by outcome,
  retries, documents finished by outcome, webhook events. Use :func:`instrument` on a
  :class:`~dte_native.sii.SiiClient`, or :meth:`DteMetrics.sii_call` around a call.
* **snapshot gauges**, computed at scrape time by *sources* (callables returning
  :class:`Sample` lists): documents by state and type, folios left per CAF, days left on
  certificates, circuit-breaker states, queue depth. The Odoo addon registers a source that
  reads its database; ``dte worker``/``dte metrics-serve`` register the breaker states of their
  clients, the Redis queue's depth and certificate files.

>>> m = DteMetrics()
>>> with m.sii_call("upload"):
...     pass
>>> b"dte_sii_request_duration_seconds_count{service=\\"upload\\"} 1.0" in m.render()
True

The server (:func:`serve`) answers ``GET /metrics`` only with ``Authorization: Bearer <token>``
(401 without credentials, 403 with wrong ones) and ``GET /healthz`` without any, for health
checks.
"""
from __future__ import annotations

import datetime
import hmac
import os
import threading
import time
import weakref
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = [
    "DteMetrics", "Sample", "Source", "process_metrics", "SNAPSHOT_GAUGES", "PROCESS_METRICS",
    "BREAKER_STATE_VALUES", "instrument", "breaker_source", "certificate_source", "caf_source",
    "days_left", "exported_names", "check_bearer", "serve", "MetricsServer", "CONTENT_TYPE",
    "queue_samples", "watch_worker",
]

CONTENT_TYPE = CONTENT_TYPE_LATEST  # text/plain; version=0.0.4; charset=utf-8

# Seconds: SII answers in 0.1-3 s normally; the tail is what the breaker and alerts care about.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)

BREAKER_STATE_VALUES = {"closed": 0, "half_open": 1, "open": 2}

# Snapshot gauges: name -> (help, label names). Values come from sources at scrape time.
SNAPSHOT_GAUGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "dte_documents": ("DTE documents by SII state and document type", ("state", "doc_type")),
    "dte_caf_folios_left": ("Folios not yet used in a CAF", ("company", "doc_type", "caf")),
    "dte_caf_days_left": ("Days until a CAF expires (SII: 6 months after authorization)",
                          ("company", "doc_type", "caf")),
    "dte_certificate_days_left": ("Days until a signer certificate expires (negative: expired)",
                                  ("company", "signer_rut", "certificate")),
    "dte_circuit_breaker_state": ("Circuit breaker per SII endpoint: 0 closed, 1 half-open, 2 open",
                                  ("endpoint",)),
    "dte_queue_depth": ("Jobs waiting in a queue stream (not yet delivered to a worker)", ("queue",)),
    "dte_queue_pending": ("Jobs delivered to a worker and not yet acknowledged", ("queue",)),
    "dte_queue_dead_letters": ("Jobs in the dead-letter stream of a queue", ("queue",)),
    "dte_batch_documents": ("Documents of open batches by progress state", ("batch", "state")),
}

# Process metrics: name (as exported) -> help. Counters are exported with the _total suffix.
PROCESS_METRICS: dict[str, str] = {
    "dte_sii_request_duration_seconds": "Duration of SII calls by service (upload, envelope_status...)",
    "dte_sii_requests_total": "SII calls by service and outcome (ok or the error class)",
    "dte_sii_retries_total": "Retries the SII client made (attempts beyond the first) by service",
    "dte_worker_jobs_total": "Jobs a `dte worker` handled, by consumer and outcome (started, completed, "
                             "retried, dead...)",
    "dte_documents_processed_total": "Documents that reached a final SII state, by type and outcome",
    "dte_webhook_events_total": "Webhook events received, by event and outcome",
}


@dataclass(frozen=True)
class Sample:
    """One value of a snapshot gauge: ``Sample("dte_documents", {"state": "accepted",
    "doc_type": "33"}, 12)``."""

    name: str
    labels: Mapping[str, str]
    value: float


Source = Callable[[], Iterable[Sample]]


class _SnapshotCollector(Collector):
    """Calls every source at scrape time; a failing source is reported, not fatal."""

    def __init__(self) -> None:
        self._sources: list[tuple[str, Source]] = []
        self._lock = threading.Lock()

    def add(self, name: str, source: Source) -> None:
        with self._lock:
            self._sources = [(n, s) for n, s in self._sources if n != name] + [(name, source)]

    def remove(self, name: str) -> None:
        with self._lock:
            self._sources = [(n, s) for n, s in self._sources if n != name]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        return self.families(())

    def families(self, extra: Iterable[Sample]) -> Iterator[GaugeMetricFamily]:
        """The snapshot gauges from every source, then ``extra`` samples (one scrape's own)."""
        with self._lock:
            sources = list(self._sources)
        families = {name: GaugeMetricFamily(name, help_, labels=list(labels))
                    for name, (help_, labels) in SNAPSHOT_GAUGES.items()}
        errors = GaugeMetricFamily("dte_metrics_source_up", "1 when a metrics source answered at "
                                   "the last scrape, 0 when it failed", labels=["source"])
        seen: set[tuple[str, tuple[str, ...]]] = set()
        batches: list[tuple[str, Callable[[], Iterable[Sample]]]] = list(sources)
        extra_list = list(extra)
        if extra_list:
            batches.append(("scrape", lambda: extra_list))
        for source_name, source in batches:
            try:
                samples = list(source())
            except Exception:  # noqa: BLE001 - a broken source must not hide the others
                errors.add_metric([source_name], 0)
                continue
            errors.add_metric([source_name], 1)
            for s in samples:
                if s.name not in families:
                    raise ValueError(f"metrics source {source_name}: unknown gauge {s.name}")
                labels = SNAPSHOT_GAUGES[s.name][1]
                values = tuple(str(s.labels.get(k, "")) for k in labels)
                if (s.name, values) in seen:  # two sources for one series: the first wins
                    continue
                seen.add((s.name, values))
                families[s.name].add_metric(list(values), float(s.value))
        yield from families.values()
        yield errors

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())


class _Collect(Collector):
    def __init__(self, fn: Callable[[], Iterable[Any]]) -> None:
        self._fn = fn

    def collect(self) -> Iterable[Any]:
        return self._fn()


class DteMetrics:
    """The registry and instruments of one process (or one Odoo server).

    ``registry`` holds everything (process metrics and snapshot gauges) for code that wants a
    plain prometheus_client registry; :meth:`render` is what the endpoints serve."""

    def __init__(self) -> None:
        self._process = CollectorRegistry(auto_describe=True)
        self.sii_latency = Histogram(
            "dte_sii_request_duration_seconds", PROCESS_METRICS["dte_sii_request_duration_seconds"],
            ["service"], buckets=LATENCY_BUCKETS, registry=self._process)
        self.sii_requests = Counter(
            "dte_sii_requests", PROCESS_METRICS["dte_sii_requests_total"], ["service", "outcome"],
            registry=self._process)
        self.sii_retries = Counter(
            "dte_sii_retries", PROCESS_METRICS["dte_sii_retries_total"], ["service"], registry=self._process)
        self.documents_processed = Counter(
            "dte_documents_processed", PROCESS_METRICS["dte_documents_processed_total"],
            ["doc_type", "outcome"], registry=self._process)
        self.webhook_events = Counter(
            "dte_webhook_events", PROCESS_METRICS["dte_webhook_events_total"], ["event", "outcome"],
            registry=self._process)
        self._snapshots = _SnapshotCollector()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collect(self._process.collect))
        self.registry.register(self._snapshots)
        self._clients: weakref.WeakSet[Any] = weakref.WeakSet()

    # --- process metrics ----------------------------------------------------------------------

    @contextmanager
    def sii_call(self, service: str) -> Iterator[None]:
        """Times one SII call and counts it by outcome (``ok`` or the exception's class name)."""
        start = time.perf_counter()
        outcome = "ok"
        try:
            yield
        except BaseException as e:
            outcome = type(e).__name__
            raise
        finally:
            self.sii_latency.labels(service).observe(time.perf_counter() - start)
            self.sii_requests.labels(service, outcome).inc()

    def record_document(self, doc_type: int | str, outcome: str) -> None:
        """A document reached a final state (``accepted``, ``accepted_with_objections``,
        ``rejected``)."""
        self.documents_processed.labels(str(doc_type), outcome).inc()

    # --- snapshot gauges ----------------------------------------------------------------------

    def add_source(self, name: str, source: Source) -> None:
        """Registers (or replaces) a source of snapshot samples called at every scrape."""
        self._snapshots.add(name, source)

    def remove_source(self, name: str) -> None:
        self._snapshots.remove(name)

    def watch_client(self, client: Any) -> None:
        """Reports ``client.breaker_states()`` at every scrape for as long as the client lives."""
        self._clients.add(client)
        self.add_source("breakers", breaker_source(lambda: list(self._clients)))

    # --- output -------------------------------------------------------------------------------

    def render(self, extra: Iterable[Sample] = ()) -> bytes:
        """Text format 0.0.4: the process metrics, the sources' gauges and ``extra`` samples
        (this scrape's own, e.g. what the Odoo endpoint reads from its database). Under
        prometheus_client's multi-process mode (``PROMETHEUS_MULTIPROC_DIR`` set, e.g. Odoo
        with several workers) the process metrics of every process are summed."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess  # noqa: PLC0415 - only in that mode

            process = CollectorRegistry()
            multiprocess.MultiProcessCollector(process)  # type: ignore[no-untyped-call]
        else:
            process = self._process
        extra_list = list(extra)
        scrape = CollectorRegistry(auto_describe=False)
        scrape.register(_Collect(process.collect))
        scrape.register(_Collect(lambda: self._snapshots.families(extra_list)))
        return bytes(generate_latest(scrape))


_process_metrics: DteMetrics | None = None
_process_lock = threading.Lock()


def process_metrics() -> DteMetrics:
    """The process-wide :class:`DteMetrics` (created on first use)."""
    global _process_metrics
    with _process_lock:
        if _process_metrics is None:
            _process_metrics = DteMetrics()
        return _process_metrics


# --- instrumentation of the SII client -----------------------------------------------------------

_TIMED = ("token", "upload", "envelope_status", "document_status", "boleta_document_status", "claim",
          "claim_events", "transferable", "reception_date", "upload_many", "status_many")


class _InstrumentedClient:
    """A :class:`~dte_native.sii.SiiClient` whose calls are timed and counted. Everything else
    is the client's own."""

    def __init__(self, client: Any, metrics: DteMetrics) -> None:
        self._client = client
        self._metrics = metrics

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if name not in _TIMED or not callable(attr):
            return attr
        metrics = self._metrics

        def timed(*args: Any, **kwargs: Any) -> Any:
            with metrics.sii_call(name):
                result = attr(*args, **kwargs)
            attempts = getattr(result, "attempts", 1)
            if isinstance(attempts, int) and attempts > 1:
                metrics.sii_retries.labels(name).inc(attempts - 1)
            if name == "upload_many":
                for item in result:
                    value = getattr(item, "value", None)
                    extra = getattr(value, "attempts", 1) if value is not None else 1
                    if isinstance(extra, int) and extra > 1:
                        metrics.sii_retries.labels(name).inc(extra - 1)
            return result

        return timed

    def __repr__(self) -> str:
        return f"<instrumented {self._client!r}>"


def instrument(client: Any, metrics: DteMetrics | None = None) -> Any:
    """Wraps a :class:`~dte_native.sii.SiiClient` so that its calls feed ``metrics`` (default:
    the process-wide one) and its breakers are reported."""
    m = metrics or process_metrics()
    m.watch_client(client)
    return _InstrumentedClient(client, m)


# --- sources ---------------------------------------------------------------------------------------


def breaker_source(clients: Callable[[], Sequence[Any]]) -> Source:
    """Samples of ``dte_circuit_breaker_state`` from the clients' ``breaker_states()``; an
    endpoint seen by several clients reports its worst state."""

    def source() -> list[Sample]:
        worst: dict[str, int] = {}
        for c in clients():
            for endpoint, state in c.breaker_states().items():
                v = BREAKER_STATE_VALUES.get(str(state), 2)
                worst[endpoint] = max(worst.get(endpoint, 0), v)
        return [Sample("dte_circuit_breaker_state", {"endpoint": e}, v) for e, v in sorted(worst.items())]

    return source


def days_left(when: str | datetime.date | datetime.datetime, now: datetime.datetime | None = None) -> float:
    """Days (fractional) from ``now`` (UTC) to ``when`` ('2027-01-31T12:00:00Z', a date or a
    datetime; naive means UTC). Negative when past."""
    if isinstance(when, str):
        text = when.strip().replace(" ", "T").rstrip("Z")
        when = datetime.datetime.fromisoformat(text[:19] if "T" in text else text[:10])
    if not isinstance(when, datetime.datetime):
        when = datetime.datetime.combine(when, datetime.time(0, 0))
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    now = now or datetime.datetime.now(datetime.timezone.utc)
    if now.tzinfo is None:
        now = now.replace(tzinfo=datetime.timezone.utc)
    return round((when - now).total_seconds() / 86400.0, 3)


def certificate_source(certificates: Callable[[], Iterable[Any]], company: str = "") -> Source:
    """``dte_certificate_days_left`` of :class:`~dte_native.Certificate` objects (public or with
    key); labels are the signer RUT and the SHA-256 fingerprint's first 16 hex digits."""

    def source() -> list[Sample]:
        out = []
        for cert in certificates():
            info = cert.info
            out.append(Sample("dte_certificate_days_left",
                              {"company": company, "signer_rut": info.signer_rut,
                               "certificate": info.sha256_fingerprint.replace(":", "")[:16].lower()},
                              days_left(info.not_after)))
        return out

    return source


def caf_source(cafs: Callable[[], Iterable[tuple[Any, int]]], company: str = "") -> Source:
    """``dte_caf_folios_left`` (and ``dte_caf_days_left``) of (:class:`~dte_native.Caf`, next
    folio to use) pairs."""

    def source() -> list[Sample]:
        out = []
        for caf, next_folio in cafs():
            info = caf.info
            name = f"{info.doc_type}:{info.folio_from}-{info.folio_to}"
            left = max(0, info.folio_to - max(next_folio, info.folio_from) + 1)
            labels = {"company": company or info.issuer_rut, "doc_type": str(info.doc_type), "caf": name}
            out.append(Sample("dte_caf_folios_left", labels, left))
            if info.expires_on:
                out.append(Sample("dte_caf_days_left", labels, days_left(info.expires_on)))
        return out

    return source


def queue_samples(stats: Callable[[], Mapping[str, Any]], name: str = "dte") -> Source:
    """``dte_queue_depth`` (waiting + delayed for a retry), ``dte_queue_pending`` (delivered, not
    acknowledged) and ``dte_queue_dead_letters`` from a queue stats mapping
    (``dte_native.queue.JobQueue.stats()`` / ``queue_metrics()``); ``up`` 0 marks the source down."""

    def source() -> list[Sample]:
        st = stats()
        if not st.get("up", 1):
            raise ConnectionError("the Redis job queue does not answer")
        labels = {"queue": name}
        waiting = (st.get("waiting", st.get("depth", 0)) or 0) + (st.get("delayed") or 0)
        return [Sample("dte_queue_depth", labels, waiting),
                Sample("dte_queue_pending", labels, st.get("pending") or 0),
                Sample("dte_queue_dead_letters", labels, st.get("dead") or 0)]

    return source


class _WorkerCollector(Collector):
    def __init__(self, worker: Any) -> None:
        self._worker = weakref.ref(worker)

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily  # noqa: PLC0415

        fam = CounterMetricFamily("dte_worker_jobs", PROCESS_METRICS["dte_worker_jobs_total"],
                                  labels=["consumer", "outcome"])
        worker = self._worker()
        if worker is not None:
            info = worker.metrics()
            for key, value in sorted(info.items()):
                if isinstance(value, int) and not isinstance(value, bool) and key != "running":
                    fam.add_metric([str(info.get("consumer", "")), key], value)
        yield fam


def watch_worker(worker: Any, metrics: DteMetrics | None = None) -> DteMetrics:
    """Exports a ``dte_native.worker.Worker``: its SII client's calls (instrumented in place),
    its job counters as ``dte_worker_jobs_total`` and its queue's gauges. Then serve with
    :func:`serve` (``dte worker --metrics-port``)."""
    m = metrics or process_metrics()
    if getattr(worker, "client", None) is not None and not isinstance(worker.client, _InstrumentedClient):
        worker.client = instrument(worker.client, m)
    m._process.register(_WorkerCollector(worker))
    prefix = getattr(getattr(worker, "config", None), "prefix", "dte")
    m.add_source("queue", queue_samples(lambda: worker.queue.stats(), prefix))
    return m


# --- names, for the dashboard and alert checks ------------------------------------------------------


def exported_names() -> set[str]:
    """Every series name this module can export (histogram/counter suffixes included)."""
    names = set(SNAPSHOT_GAUGES) | {"dte_metrics_source_up"}
    for name in PROCESS_METRICS:
        if name.endswith("_seconds"):
            names |= {name + "_bucket", name + "_sum", name + "_count"}
        else:
            names.add(name)
    return names


# --- the HTTP server ---------------------------------------------------------------------------------


def check_bearer(header: str | None, token: str) -> int:
    """HTTP status for an ``Authorization`` header against the expected token: 200 when it
    matches, 401 when absent or not a bearer credential, 403 when wrong."""
    if not header:
        return 401
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return 401
    if not token or not hmac.compare_digest(value.strip().encode(), token.encode()):
        return 403
    return 200


@dataclass
class MetricsServer:
    """A running metrics server; ``port`` is the bound one (useful with port 0)."""

    httpd: ThreadingHTTPServer
    thread: threading.Thread | None = field(default=None)

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self.thread is not None:
            self.thread.join(5)


def serve(metrics: DteMetrics, token: str, host: str = "127.0.0.1", port: int = 9464,
          background: bool = True) -> MetricsServer:
    """Serves ``GET /metrics`` (bearer ``token`` required) and ``GET /healthz``. With
    ``background`` the server runs in a daemon thread; otherwise call
    ``server.httpd.serve_forever()``."""
    if not token:
        raise ValueError("a metrics token is required (the endpoint is never public)")

    class Handler(BaseHTTPRequestHandler):
        server_version = "dte-metrics"

        def _send(self, status: int, body: bytes, ctype: str = "text/plain; charset=utf-8",
                  extra: Mapping[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 - http.server API
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                self._send(200, b"ok\n")
                return
            if path != "/metrics":
                self._send(404, b"not found: try /metrics\n")
                return
            status = check_bearer(self.headers.get("Authorization"), token)
            if status == 401:
                self._send(401, b"metrics need 'Authorization: Bearer <token>'\n",
                           extra={"WWW-Authenticate": 'Bearer realm="dte-metrics"'})
                return
            if status == 403:
                self._send(403, b"wrong metrics token\n")
                return
            self._send(200, metrics.render(), CONTENT_TYPE_LATEST)

        do_HEAD = do_GET

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet by design
            return

    httpd = ThreadingHTTPServer((host, port), Handler)
    httpd.daemon_threads = True
    server = MetricsServer(httpd)
    if background:
        server.thread = threading.Thread(target=httpd.serve_forever, name="dte-metrics", daemon=True)
        server.thread.start()
    return server
