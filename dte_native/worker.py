"""`dte worker`: a standalone process that runs queued jobs (dte_native.queue) outside Odoo.

Job kinds:
  send   upload a signed envelope through SiiClient and follow it to a final state
  poll   the state of a track id (until final unless ``wait`` is false)
  inbox  fetch and verify the exchange mailbox (dte_native.reception.run_inbox)

A send job holds one of the ``concurrency`` slots only while it uploads: its track id is then
handed to the worker's follower, which polls every followed envelope each ``poll_s`` and
completes the job when SII's answer is final (or ``poll_timeout_s`` passes). Until then the job
stays unacknowledged and its lease is kept fresh, exactly like a running one.

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
    max_following: int = 1000      # envelopes followed at once; no new jobs are taken beyond it
    stop_grace_s: float = 5.0      # on stop, how long followed envelopes may still finish
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


@dataclass
class _Follow:
    """A job whose envelope is uploaded and whose track id the follower polls until final."""
    job: Job
    track_id: str
    company: str
    boleta: bool
    result: dict[str, Any] | None      # a send job's result so far; None: the result is the status
    docs: list[tuple[int, int]]        # a send job's documents, for the status_update webhook
    deadline: float
    next_poll: float = 0.0
    busy: bool = False
    failures: int = 0


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
                         "retried": 0, "dead": 0, "webhooks_sent": 0, "webhook_failures": 0,
                         "followed": 0, "abandoned": 0}
        self._running: dict[str, Job] = {}
        self._following: dict[str, _Follow] = {}
        self._lock = threading.Lock()
        self._handlers: dict[str, Callable[[Job], dict[str, Any] | _Follow]] = {
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
        follow_stop = threading.Event()
        follower = threading.Thread(target=self._follow_loop, args=(follow_stop,), daemon=True,
                                    name="dte-worker-follower")
        follower.start()
        inflight: set[Future[str]] = set()
        idle_since = time.monotonic()
        log.info("worker %s: group %s on %s, concurrency %d", cfg.consumer, cfg.group, self.queue, cfg.concurrency)
        with ThreadPoolExecutor(max_workers=max(1, cfg.concurrency), thread_name_prefix="dte-job") as pool:
            while not stop.is_set():
                inflight = {f for f in inflight if not f.done()}
                free = cfg.concurrency - len(inflight)
                if self.following() >= cfg.max_following:
                    free = 0
                if free <= 0:
                    if inflight:
                        wait(inflight, timeout=0.5, return_when=FIRST_COMPLETED)
                    else:
                        stop.wait(0.1)
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
                elif inflight or self.following():
                    idle_since = time.monotonic()
                elif cfg.exit_when_idle_s > 0 and time.monotonic() - idle_since >= cfg.exit_when_idle_s:
                    break
            wait(inflight)
        # Envelopes still followed get a short grace; then they are left unacknowledged: their
        # leases lapse and another worker takes the jobs over (its upload asks SII first).
        grace_end = time.monotonic() + max(0.0, cfg.stop_grace_s)
        while self.following() and time.monotonic() < grace_end:
            time.sleep(0.05)
        follow_stop.set()
        follower.join(timeout=10)
        with self._lock:
            left = list(self._following.values())
            self._following.clear()
            for f in left:
                self._running.pop(f.job.id, None)
        if left:
            self._count("abandoned", len(left))
            log.warning("worker %s: %d followed envelope(s) left for take-over", cfg.consumer, len(left))
        stop.set()
        toucher.join(timeout=5)
        return dict(self.counters)

    def following(self) -> int:
        """How many uploaded envelopes this worker is following."""
        with self._lock:
            return len(self._following)

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
        followed = False
        try:
            handler = self._handlers.get(job.kind)
            try:
                if handler is None:
                    raise DteError(f"unknown job kind {job.kind!r}", "queue.bad_kind")
                result = handler(job)
            except Exception as e:  # noqa: BLE001 - every failure is recorded on the job
                return self._fail(job, e)
            if isinstance(result, _Follow):
                with self._lock:
                    self._following[job.id] = result
                followed = True
                self._count("followed")
                return "following"
            return self._complete(job, result)
        finally:
            if not followed:
                with self._lock:
                    self._running.pop(job.id, None)

    def _complete(self, job: Job, result: dict[str, Any]) -> str:
        result.setdefault("finished_ms", _now_ms())
        first = self.queue.complete(job, self.config.consumer, result)
        if not first:
            self._count("already_done")
            return "already_done"
        self._count("completed")
        if result.get("webhook"):
            self._post("status_update", result.pop("webhook"))
        return "completed"

    def _fail(self, job: Job, e: BaseException) -> str:
        retryable = _retryable(e)
        err = _error(e)
        what = self.queue.fail(job, self.config.consumer, err, retryable)
        log.warning("job %s (%s) attempt %d failed: %s %s -> %s", job.id, job.kind, job.attempt,
                    err["code"], err["message"], what)
        if what == "dead":
            self._count("dead")
            self._alert(job, err)
        else:
            self._count("retried")
        return what

    # ---------------------------------------------------------------- following

    def _follow_loop(self, stop: threading.Event) -> None:
        """Polls each followed envelope every poll_s, a few at a time, until it is final."""
        cfg = self.config
        with ThreadPoolExecutor(max_workers=max(2, min(16, cfg.concurrency)),
                                thread_name_prefix="dte-follow") as polls:
            while not stop.wait(0.02):
                now = time.monotonic()
                with self._lock:
                    due = [f for f in self._following.values() if not f.busy and f.next_poll <= now]
                    for f in due:
                        f.busy = True
                for f in due:
                    polls.submit(self._poll_followed, f)

    def _poll_followed(self, f: _Follow) -> None:
        from dataclasses import asdict
        cfg = self.config
        try:
            st = self._need_client().envelope_status(f.track_id, f.company, f.boleta)
        except Exception as e:  # noqa: BLE001 - recorded on the job
            if _retryable(e) and f.failures + 1 < max(1, cfg.max_attempts):
                f.failures += 1
                delay = min(cfg.retry_max_s, cfg.retry_base_s * 2 ** (f.failures - 1))
                log.info("job %s: status of %s failed (%s), again in %.1f s", f.job.id, f.track_id, e, delay)
                with self._lock:
                    f.next_poll = time.monotonic() + max(cfg.poll_s, delay)
                    f.busy = False
                return
            self._unfollow(f)
            self._fail(f.job, e)
            return
        if not (st.final or time.monotonic() >= f.deadline):
            with self._lock:
                f.next_poll = time.monotonic() + cfg.poll_s
                f.failures = 0
                f.busy = False
            return
        status = asdict(st)
        status["final_ms"] = _now_ms() if st.final else None
        if f.result is None:
            result = status
        else:
            result = f.result
            result.update(state=status["state"], sii_state=status["sii_state"], glosa=status["glosa"],
                          final=status["final"], final_ms=status["final_ms"], details=status["details"])
            if f.docs:
                result["webhook"] = {"event_id": f"{f.job.id}:status_update:{result.get('state')}",
                                     "job_id": f.job.id, "company_rut": f.company,
                                     "documents": envelope_documents_update(status, f.docs)}
        self._unfollow(f)
        try:
            self._complete(f.job, result)
        except Exception as e:  # noqa: BLE001 - Redis down: the job stays pending for take-over
            log.warning("job %s: cannot store its outcome (%s); left for take-over", f.job.id, e)

    def _unfollow(self, f: _Follow) -> None:
        with self._lock:
            self._following.pop(f.job.id, None)
            self._running.pop(f.job.id, None)

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

    def _status_now(self, track_id: str, company: str, boleta: bool) -> dict[str, Any]:
        from dataclasses import asdict
        st = self._need_client().envelope_status(track_id, company, boleta)
        out = asdict(st)
        out["final_ms"] = _now_ms() if st.final else None
        return out

    def _send(self, job: Job) -> dict[str, Any] | _Follow:
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
                # The slot is freed now; the follower completes the job when SII is final.
                return _Follow(job, up.track_id, company, up.family == "boleta", result, docs,
                               time.monotonic() + self.config.poll_timeout_s,
                               next_poll=time.monotonic() + self.config.poll_s)
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

    def _poll(self, job: Job) -> dict[str, Any] | _Follow:
        data = job.data
        try:
            track_id, company = str(data["track_id"]), str(data["company_rut"])
        except KeyError as e:
            raise DteError(f"job {job.id}: poll needs {e}", "queue.bad_payload") from None
        if not data.get("wait", True):
            return self._status_now(track_id, company, bool(data.get("boleta")))
        return _Follow(job, track_id, company, bool(data.get("boleta")), None, [],
                       time.monotonic() + self.config.poll_timeout_s)

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
            counters["following"] = len(self._following)
        try:
            queue = self.queue.stats()
        except DteError:
            queue = {}
        return {"consumer": self.config.consumer, "running": running, **counters, "queue": queue}
