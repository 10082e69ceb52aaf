"""`dte worker`: a standalone process that runs queued jobs (dte_native.queue) outside Odoo.

Job kinds:
  send   upload a signed envelope through SiiClient and follow it to a final state
  poll   the state of a track id (until final unless ``wait`` is false)
  inbox  fetch and verify the exchange mailbox (dte_native.reception.run_inbox)

Each outcome is stored once (the job id is the idempotency key), published on the results
stream and, when a webhook URL is configured, POSTed signed (dte_native.webhooks) as
``status_update`` (documents and their states) or ``error_alert`` (a job that failed for good).
While the process lives it keeps the leases of its running jobs fresh; when it dies (even by
SIGKILL) they go idle and another worker takes them over after ``claim_idle_ms``.
"""
from __future__ import annotations

import base64
import logging
import os
import socket
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Callable

from . import webhooks
from .errors import DteError, SiiAuthError, SiiMalformedAnswer, SiiRejected, SiiTransportError
from .queue import Job, JobQueue, QueueConfig

__all__ = ["WorkerConfig", "Worker", "default_consumer", "envelope_documents_update"]

log = logging.getLogger("dte_native.worker")

# EnvelopeStatus.state / boleta detail state -> l10n_cl_dte.document state
_DOC_STATE = {"in_progress": "sent", "accepted": "accepted", "accepted_with_objections": "accepted_with_objections",
              "rejected": "rejected", "DOK": "accepted", "RPR": "accepted_with_objections",
              "RLV": "accepted_with_objections", "RCH": "rejected"}


def default_consumer() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass
class WorkerConfig:
    redis_url: str
    group: str = "dte-workers"
    consumer: str = field(default_factory=default_consumer)
    concurrency: int = 4
    prefix: str = "dte"
    webhook_url: str = ""
    webhook_secret: bytes = field(default=b"", repr=False)
    poll_s: float = 2.0            # between status queries of a send/poll job
    poll_timeout_s: float = 600.0  # give up following a track id (the result says not final)
    block_ms: int = 1000           # longest wait for new jobs in one read
    max_attempts: int = 5
    claim_idle_ms: int = 30000
    retry_base_s: float = 1.0
    retry_max_s: float = 60.0
    exit_when_idle_s: float = 0.0  # > 0: stop after this long without jobs (batch runs, tests)
    imap_password: str = field(default="", repr=False)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _error(e: BaseException) -> dict[str, Any]:
    out: dict[str, Any] = {"type": type(e).__name__, "code": getattr(e, "code", "worker.error"),
                           "message": str(getattr(e, "message", "") or e)}
    if isinstance(e, SiiRejected):
        out["sii_code"] = e.sii_code
    return out


def _retryable(e: BaseException) -> bool:
    if isinstance(e, (SiiTransportError, SiiMalformedAnswer)):
        return True
    if isinstance(e, SiiAuthError):
        # A token refused again right after its renewal is usually a passing fault at SII.
        return e.code in ("sii.token_lock_timeout", "sii.auth.seed_expired", "sii.token_rejected",
                          "sii.token_expired")
    if isinstance(e, DteError):
        return e.code.startswith("redis.") or e.code.startswith("imap.")
    return isinstance(e, (OSError, TimeoutError))


def envelope_documents_update(status: dict[str, Any], documents: list[tuple[int, int]]) -> list[dict[str, Any]]:
    """Per-document states for a ``status_update`` webhook from an envelope outcome: a document
    listed in the boleta details gets its own state, the others the envelope's."""
    state = _DOC_STATE.get(str(status.get("state", "in_progress")), "sent")
    per_doc = {(int(d["doc_type"]), int(d["folio"])): d for d in status.get("details") or []}
    out = []
    for doc_type, folio in documents:
        item: dict[str, Any] = {"doc_type": doc_type, "folio": folio, "state": state}
        if status.get("track_id"):
            item["track_id"] = str(status["track_id"])
        msg = " ".join(str(x) for x in (status.get("sii_state"), status.get("glosa")) if x)
        d = per_doc.get((doc_type, folio))
        if d:
            item["state"] = _DOC_STATE.get(str(d.get("state")), state)
            msg = " ".join(str(x) for x in (d.get("state"), d.get("description"), *d.get("errors", [])) if x)
        if msg:
            item["message"] = msg
        out.append(item)
    return out


class Worker:
    """Runs jobs of one consumer group with ``concurrency`` threads; ``client`` is a
    dte_native.sii.SiiClient (needed by send and poll jobs)."""

    def __init__(self, config: WorkerConfig, client: Any = None) -> None:
        self.config = config
        self.client = client
        self.queue = JobQueue(config.redis_url, QueueConfig(
            prefix=config.prefix, group=config.group, max_attempts=config.max_attempts,
            claim_idle_ms=config.claim_idle_ms, retry_base_s=config.retry_base_s, retry_max_s=config.retry_max_s))
        self.queue.ensure_group()
        self.counters = {"fetched": 0, "started": 0, "completed": 0, "already_done": 0, "busy": 0,
                         "retried": 0, "dead": 0, "webhooks_sent": 0, "webhook_failures": 0}
        self._running: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._handlers: dict[str, Callable[[Job], dict[str, Any]]] = {
            "send": self._send, "poll": self._poll, "inbox": self._inbox}

    # ---------------------------------------------------------------- loop

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.counters[key] += n

    def run(self, stop: threading.Event | None = None) -> dict[str, int]:
        """Consumes until ``stop`` is set (or idle for ``exit_when_idle_s``); finishes the jobs
        in hand before returning the counters."""
        stop = stop or threading.Event()
        cfg = self.config
        toucher = threading.Thread(target=self._keep_leases, args=(stop,), daemon=True, name="dte-worker-leases")
        toucher.start()
        inflight: set[Future[str]] = set()
        idle_since = time.monotonic()
        log.info("worker %s: group %s on %s, concurrency %d", cfg.consumer, cfg.group, self.queue, cfg.concurrency)
        with ThreadPoolExecutor(max_workers=max(1, cfg.concurrency), thread_name_prefix="dte-job") as pool:
            while not stop.is_set():
                inflight = {f for f in inflight if not f.done()}
                free = cfg.concurrency - len(inflight)
                if free <= 0:
                    wait(inflight, timeout=0.5, return_when=FIRST_COMPLETED)
                    continue
                try:
                    jobs = self.queue.fetch(cfg.consumer, free, cfg.block_ms if not inflight else min(cfg.block_ms, 200))
                except DteError as e:
                    log.warning("worker %s: cannot read jobs (%s: %s); retrying", cfg.consumer, e.code, e.message)
                    stop.wait(1.0)
                    continue
                if jobs:
                    idle_since = time.monotonic()
                    self._count("fetched", len(jobs))
                    for job in jobs:
                        inflight.add(pool.submit(self.handle, job))
                elif inflight:
                    idle_since = time.monotonic()
                elif cfg.exit_when_idle_s > 0 and time.monotonic() - idle_since >= cfg.exit_when_idle_s:
                    break
            wait(inflight)
        stop.set()
        toucher.join(timeout=5)
        return dict(self.counters)

    def _keep_leases(self, stop: threading.Event) -> None:
        period = max(0.05, self.config.claim_idle_ms / 3000.0)
        while not stop.wait(period):
            with self._lock:
                jobs = list(self._running.values())
            for job in jobs:
                try:
                    self.queue.touch(job, self.config.consumer)
                except DteError as e:
                    log.warning("worker %s: lease of job %s not renewed: %s", self.config.consumer, job.id, e.message)

    def handle(self, job: Job) -> str:
        """Runs one fetched job; returns what happened (run/done/busy/dead/retry/...)."""
        consumer = self.config.consumer
        outcome = self.queue.begin(job, consumer)
        if outcome == "done":
            self._count("already_done")
            return "already_done"
        if outcome == "busy":
            self._count("busy")
            return "busy"
        if outcome == "dead":
            self._count("dead")
            self._alert(job, {"code": "queue.max_attempts", "message": "the job kept failing or crashing"})
            return "dead"
        self._count("started")
        with self._lock:
            self._running[job.id] = job
        try:
            handler = self._handlers.get(job.kind)
            try:
                if handler is None:
                    raise DteError(f"unknown job kind {job.kind!r}", "queue.bad_kind")
                result = handler(job)
            except Exception as e:  # noqa: BLE001 - every failure is recorded on the job
                retryable = _retryable(e)
                err = _error(e)
                what = self.queue.fail(job, consumer, err, retryable)
                log.warning("job %s (%s) attempt %d failed: %s %s -> %s", job.id, job.kind, job.attempt,
                            err["code"], err["message"], what)
                if what == "dead":
                    self._count("dead")
                    self._alert(job, err)
                else:
                    self._count("retried")
                return what
            result.setdefault("finished_ms", _now_ms())
            first = self.queue.complete(job, consumer, result)
            if not first:
                self._count("already_done")
                return "already_done"
            self._count("completed")
            if result.get("webhook"):
                self._post("status_update", result.pop("webhook"))
            return "completed"
        finally:
            with self._lock:
                self._running.pop(job.id, None)

    # ---------------------------------------------------------------- webhooks

    def _post(self, event: str, body: dict[str, Any]) -> None:
        if not self.config.webhook_url:
            return
        url = self.config.webhook_url.rstrip("/")
        if "{event}" in url:
            url = url.replace("{event}", event)
        elif not url.endswith("/" + event):
            url = f"{url}/{event}"
        body = {"event": event, **body}
        status = webhooks.post(url, self.config.webhook_secret, event, body, delivery=str(body.get("event_id", "")))
        if 200 <= status < 300:
            self._count("webhooks_sent")
        else:
            self._count("webhook_failures")
            log.warning("webhook %s %s answered %s", event, body.get("event_id"), status or "nothing")

    def _alert(self, job: Job, err: dict[str, Any]) -> None:
        body: dict[str, Any] = {"event_id": f"{job.id}:error_alert", "severity": "error", "job_id": job.id,
                                "kind": job.kind, "message": f"job {job.id} ({job.kind}) failed for good: "
                                                             f"{err.get('code')}: {err.get('message')}"}
        try:
            data = job.data
            if job.kind == "send":
                docs = self._documents(data)
                body["documents"] = [{"doc_type": t, "folio": f} for t, f in docs]
                body["company_rut"] = data.get("company_rut") or ""
        except Exception:  # noqa: BLE001 - the alert goes out even for an unreadable payload
            pass
        self._post("error_alert", body)

    # ---------------------------------------------------------------- job kinds

    def _need_client(self) -> Any:
        if self.client is None:
            raise DteError("this worker has no SII client (start it with --cert)", "worker.no_client")
        return self.client

    @staticmethod
    def _documents(data: dict[str, Any]) -> list[tuple[int, int]]:
        from . import sii
        envelope = base64.b64decode(data["envelope_b64"])
        return [(q.doc_type, q.folio) for q in sii.documents_of_envelope(envelope)]

    def _follow(self, track_id: str, company: str, boleta: bool, wait_final: bool) -> dict[str, Any]:
        from dataclasses import asdict
        client = self._need_client()
        deadline = time.monotonic() + self.config.poll_timeout_s
        while True:
            st = client.envelope_status(track_id, company, boleta)
            if st.final or not wait_final or time.monotonic() >= deadline:
                out = asdict(st)
                out["final_ms"] = _now_ms() if st.final else None
                return out
            time.sleep(self.config.poll_s)

    def _send(self, job: Job) -> dict[str, Any]:
        from . import sii
        data = job.data
        client = self._need_client()
        try:
            envelope = base64.b64decode(data["envelope_b64"], validate=True)
        except (KeyError, ValueError) as e:
            raise DteError(f"job {job.id}: send needs envelope_b64 ({e})", "queue.bad_payload") from None
        queries = sii.documents_of_envelope(envelope)
        docs = [(q.doc_type, q.folio) for q in queries]
        company = data.get("company_rut") or (queries[0].issuer_rut if queries else "")
        result: dict[str, Any] = {"documents": [{"doc_type": t, "folio": f} for t, f in docs],
                                  "company_rut": company}
        try:
            up = client.upload(envelope, data.get("company_rut") or "", data.get("filename") or "envio.xml")
        except SiiRejected as e:  # SII said no: a final outcome, not a failure to retry
            result.update(state="rejected", uploaded=False, error=_error(e), final=True, final_ms=_now_ms())
            status = {"state": "rejected", "sii_state": e.sii_code, "glosa": e.message}
        else:
            result.update(uploaded=True, track_id=up.track_id, duplicate=up.duplicate, upload_status=up.status,
                          upload_attempts=up.attempts, family=up.family, accepted_ms=_now_ms())
            status = {"state": "in_progress", "track_id": up.track_id, "sii_state": "REC" if up.track_id else "99"}
            if up.track_id and data.get("poll", True):
                status = self._follow(up.track_id, company, up.family == "boleta", True)
                result.update(state=status["state"], sii_state=status["sii_state"], glosa=status["glosa"],
                              final=status["final"], final_ms=status["final_ms"], details=status["details"])
            elif not up.track_id and data.get("poll", True) and queries:
                # SII already had this envelope (its first upload's answer was lost): the track id
                # is unknown, so ask SII about each document instead (QueryEstDte).
                status = self._documents_at_sii(queries)
                result.update(state="duplicate", final=status["final"], final_ms=status["final_ms"],
                              details=status["details"])
            else:
                result.update(state="sent" if up.track_id else "duplicate", final=False)
        if docs:
            result["webhook"] = {"event_id": f"{job.id}:status_update:{result.get('state')}", "job_id": job.id,
                                 "company_rut": company, "documents": envelope_documents_update(status, docs)}
        return result

    def _documents_at_sii(self, queries: list[Any]) -> dict[str, Any]:
        """Per-document states from QueryEstDte, shaped like an envelope status for the webhook:
        DOK -> accepted, DNK -> accepted with objections, FNA/FAN/EMP -> rejected, FAU -> sent."""
        client = self._need_client()
        details, final = [], True
        verdict_to_detail = {"accepted": "DOK", "accepted_with_objections": "RPR", "rejected": "RCH"}
        for q in queries:
            st = client.document_status(q)
            verdict = getattr(st, "verdict", "") or ("accepted" if st.state == "received" else "")
            code = verdict_to_detail.get(verdict)
            if code is None:
                final = False
                continue
            details.append({"doc_type": q.doc_type, "folio": q.folio, "state": code,
                            "description": f"{st.sii_state} {st.glosa}".strip(), "errors": []})
        return {"state": "in_progress", "sii_state": "99", "glosa": "already received by SII",
                "details": details, "final": final, "final_ms": _now_ms() if final else None}

    def _poll(self, job: Job) -> dict[str, Any]:
        data = job.data
        try:
            track_id, company = str(data["track_id"]), str(data["company_rut"])
        except KeyError as e:
            raise DteError(f"job {job.id}: poll needs {e}", "queue.bad_payload") from None
        return self._follow(track_id, company, bool(data.get("boleta")), bool(data.get("wait", True)))

    def _inbox(self, job: Job) -> dict[str, Any]:
        from . import reception
        data = job.data
        try:
            entries = reception.run_inbox(str(data["imap_url"]), str(data["user"]), self.config.imap_password,
                                          str(data["store"]), company_rut=str(data["company_rut"]),
                                          limit=data.get("limit"))
        except KeyError as e:
            raise DteError(f"job {job.id}: inbox needs {e}", "queue.bad_payload") from None
        return {"fetched": len(entries),
                "accepted": [e.uid for e in entries if not e.outcome.quarantined],
                "quarantined": [e.uid for e in entries if e.outcome.quarantined]}

    def metrics(self) -> dict[str, Any]:
        """This worker's counters, its running jobs and the queue's gauges."""
        with self._lock:
            counters, running = dict(self.counters), len(self._running)
        try:
            queue = self.queue.stats()
        except DteError:
            queue = {}
        return {"consumer": self.config.consumer, "running": running, **counters, "queue": queue}
