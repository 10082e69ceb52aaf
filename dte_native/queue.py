"""Jobs on Redis Streams for `dte worker` processes (the C++ core's dte/redis.hpp).

A job is a kind (``send``, ``poll``, ``inbox``) and a JSON payload, identified by a job id that
is also its idempotency key: the same id enqueued twice is one job, and once a job has a stored
result it is never run again. Workers of one consumer group share the jobs; a job whose worker
stopped (killed, hung) for ``claim_idle_ms`` is taken over by another; failures are retried with
exponential backoff and, after ``max_attempts`` (crashes included), moved to the dead letters.

    >>> q = JobQueue("redis://127.0.0.1:6379/0", prefix="doc-example")   # doctest: +SKIP
    >>> q.send_envelope(open("envio.xml", "rb").read())                 # doctest: +SKIP
    EnqueueResult(id='send-3f1c...', added=True)

Redis is configured by URL (``redis://[:password@]host:port/db``), given explicitly or in
``$DTE_REDIS_URL``. Without Redis everything runs in-process (the embedded default).
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from . import _core
from .errors import DteError

__all__ = ["REDIS_URL_ENV", "JOB_KINDS", "QueueConfig", "Job", "EnqueueResult", "JobResult", "JobQueue",
           "redis_url", "queue_metrics", "RedisConnection"]

REDIS_URL_ENV = "DTE_REDIS_URL"
JOB_KINDS = ("send", "poll", "inbox")
BeginOutcome = Literal["run", "done", "busy", "dead"]


def redis_url(url: str | None = None) -> str:
    """``url``, else ``$DTE_REDIS_URL``; raises DteError ``redis.not_configured`` when neither."""
    value = url or os.environ.get(REDIS_URL_ENV, "")
    if not value:
        raise DteError(f"no Redis configured: pass a redis:// URL or set ${REDIS_URL_ENV}", "redis.not_configured")
    _core.redis_url_parse(value)  # DteError redis.bad_url early
    return value


@dataclass(frozen=True)
class QueueConfig:
    prefix: str = "dte"
    group: str = "dte-workers"
    max_attempts: int = 5
    retry_base_s: float = 1.0
    retry_max_s: float = 60.0
    retry_jitter: float = 0.3
    claim_idle_ms: int = 30000
    result_ttl_s: int = 7 * 86400
    results_maxlen: int = 100000


@dataclass
class Job:
    entry_id: str
    id: str
    kind: str
    payload: str = field(repr=False)
    enqueued_ms: int
    attempt: int = 0
    reclaimed: bool = False

    @property
    def data(self) -> dict[str, Any]:
        """The payload as a dict (DteError ``queue.bad_payload`` when it is not a JSON object)."""
        try:
            value = json.loads(self.payload)
        except ValueError as e:
            raise DteError(f"job {self.id}: payload is not JSON: {e}", "queue.bad_payload") from None
        if not isinstance(value, dict):
            raise DteError(f"job {self.id}: payload must be a JSON object", "queue.bad_payload")
        return value

    def _native(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class EnqueueResult:
    id: str
    added: bool  # False: a job with this id was already enqueued or finished


@dataclass(frozen=True)
class JobResult:
    entry_id: str
    id: str
    kind: str
    status: str  # "ok" | "dead"
    result: dict[str, Any] | None
    error: dict[str, Any] | None
    consumer: str
    attempts: int
    enqueued_ms: int
    done_ms: int

    @classmethod
    def _from(cls, entry_id: str, f: dict[str, str]) -> JobResult:
        def js(key: str) -> Any:
            try:
                return json.loads(f[key]) if f.get(key) else None
            except ValueError:
                return {"raw": f[key]}
        return cls(entry_id, f.get("id", ""), f.get("kind", ""), f.get("status", ""), js("result"), js("error"),
                   f.get("consumer", ""), int(f.get("attempts") or 0), int(f.get("enqueued_ms") or 0),
                   int(f.get("done_ms") or 0))


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


class JobQueue:
    """A queue on one Redis (thread-safe; blocking reads use their own connection)."""

    def __init__(self, url: str | None = None, config: QueueConfig | None = None, *,
                 connect_timeout_s: float = 2.0, command_timeout_s: float = 5.0, **overrides: Any) -> None:
        cfg = config or QueueConfig()
        if overrides:
            cfg = QueueConfig(**{**asdict(cfg), **overrides})
        self.url = redis_url(url)
        self.config = cfg
        self._native = _core.JobQueue(self.url, asdict(cfg), {"connect_timeout_s": connect_timeout_s,
                                                              "command_timeout_s": command_timeout_s})

    # ---------------------------------------------------------------- producing

    def ensure_group(self) -> None:
        self._native.ensure_group()

    def enqueue(self, kind: str, payload: dict[str, Any], job_id: str = "") -> EnqueueResult:
        """Adds a job; ``job_id`` (the idempotency key) is generated when empty."""
        if kind not in JOB_KINDS:
            raise DteError(f"unknown job kind {kind!r}; known: {', '.join(JOB_KINDS)}", "queue.bad_kind")
        new_id, added = self._native.enqueue(kind, _dumps(payload), job_id)
        return EnqueueResult(str(new_id), bool(added))

    def send_envelope(self, envelope: bytes, company_rut: str = "", *, poll: bool = True,
                      filename: str = "envio.xml", job_id: str = "") -> EnqueueResult:
        """A ``send`` job: upload the signed EnvioDTE/EnvioBOLETA and (``poll``) follow it to a
        final state. The default id is derived from the envelope's bytes, so the same envelope
        enqueued twice is one job."""
        if not job_id:
            job_id = "send-" + hashlib.sha256(envelope).hexdigest()[:40]
        payload = {"envelope_b64": base64.b64encode(envelope).decode(), "company_rut": company_rut,
                   "filename": filename, "poll": poll}
        return self.enqueue("send", payload, job_id)

    def poll_track(self, track_id: str, company_rut: str, *, boleta: bool = False, wait: bool = True,
                   job_id: str = "") -> EnqueueResult:
        """A ``poll`` job: the state of an upload (``wait``: until final)."""
        payload = {"track_id": str(track_id), "company_rut": company_rut, "boleta": boleta, "wait": wait}
        return self.enqueue("poll", payload, job_id)

    def fetch_inbox(self, imap_url: str, user: str, company_rut: str, store: str, *, limit: int | None = None,
                    job_id: str = "") -> EnqueueResult:
        """An ``inbox`` job: fetch and verify the exchange mailbox into ``store`` (the worker
        holds the IMAP password, never the job)."""
        payload = {"imap_url": imap_url, "user": user, "company_rut": company_rut, "store": store, "limit": limit}
        return self.enqueue("inbox", payload, job_id)

    # ---------------------------------------------------------------- consuming

    def fetch(self, consumer: str, count: int = 1, block_ms: int = 1000) -> list[Job]:
        return [Job(**j) for j in self._native.fetch(consumer, count, block_ms)]

    def begin(self, job: Job, consumer: str) -> BeginOutcome:
        outcome, attempt = self._native.begin(job._native(), consumer)
        job.attempt = int(attempt)
        return outcome  # type: ignore[return-value]

    def touch(self, job: Job, consumer: str) -> None:
        self._native.touch(job._native(), consumer)

    def complete(self, job: Job, consumer: str, result: dict[str, Any]) -> bool:
        return bool(self._native.complete(job._native(), consumer, _dumps(result)))

    def fail(self, job: Job, consumer: str, error: dict[str, Any], retryable: bool) -> Literal["retry", "dead"]:
        return self._native.fail(job._native(), consumer, _dumps(error), retryable)  # type: ignore[return-value]

    # ---------------------------------------------------------------- reading

    def result(self, job_id: str) -> dict[str, Any] | None:
        text = self._native.result(job_id)
        return None if text is None else json.loads(text)

    def results(self, after: str = "0", count: int = 100, block_ms: int = -1) -> list[JobResult]:
        return [JobResult._from(e, f) for e, f in self._native.results(after, count, block_ms)]

    def dead_letters(self, count: int = 100) -> list[dict[str, Any]]:
        out = []
        for entry_id, f in self._native.dead_letters(count):
            item: dict[str, Any] = {"entry_id": entry_id, **f}
            try:
                item["error"] = json.loads(f.get("error") or "null")
            except ValueError:
                pass
            item.pop("payload", None)  # may be large (an envelope); `id` finds it
            out.append(item)
        return out

    def stats(self) -> dict[str, Any]:
        """depth, pending, waiting, delayed, dead, results, consumers, pending_by_consumer."""
        return dict(self._native.stats())

    def purge(self) -> int:
        """Deletes every key under this queue's prefix. Returns how many."""
        return int(self._native.purge())

    def __repr__(self) -> str:
        return f"<JobQueue {_core.redis_url_parse(self.url)['display']} prefix={self.config.prefix!r}>"


def queue_metrics(url: str | None = None, prefix: str = "dte", group: str = "dte-workers") -> dict[str, Any]:
    """Queue gauges for the metrics endpoint: ``{"up": 1, "depth": .., "pending": .., "waiting": ..,
    "delayed": .., "dead": .., "results": .., "consumers": .., "pending_by_consumer": {..}}``;
    ``{"up": 0}`` when Redis is not configured or unreachable (never raises)."""
    try:
        q = JobQueue(url, prefix=prefix, group=group, connect_timeout_s=1.0, command_timeout_s=2.0)
        return {"up": 1, **q.stats()}
    except DteError:
        return {"up": 0}


class RedisConnection:
    """A raw connection, for tools and tests: ``command("GET", "k")`` returns str / int /
    list / None; an error reply raises DteError ``redis.reply``."""

    def __init__(self, url: str | None = None, *, connect_timeout_s: float = 2.0,
                 command_timeout_s: float = 5.0) -> None:
        self._native = _core.RedisConnection(redis_url(url), {"connect_timeout_s": connect_timeout_s,
                                                              "command_timeout_s": command_timeout_s,
                                                              "connect_attempts": 1})

    def command(self, *args: str | bytes | int | float) -> Any:
        return self._native.command(list(args))

    def ping(self) -> bool:
        return bool(self._native.ping())
