"""The Redis job queue facade, queue metrics, the queue CLI and webhook signatures, against the
real Redis on 127.0.0.1:6379 (skipped when unreachable; every test uses its own key prefix and
deletes it afterwards)."""
from __future__ import annotations

import http.server
import json
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest

from dte_native import cli, queue, webhooks
from dte_native.errors import DteError

REDIS_URL = os.environ.get("DTE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def redis_reachable(url: str = REDIS_URL) -> bool:
    try:
        return queue.RedisConnection(url, connect_timeout_s=0.5).ping()
    except DteError:
        return False


@pytest.fixture()
def rurl() -> str:
    if not redis_reachable():
        pytest.skip(f"Redis not reachable at {REDIS_URL}")
    return REDIS_URL


@pytest.fixture()
def prefix(rurl: str) -> Iterator[str]:
    p = f"dtetest:{os.getpid()}:{uuid.uuid4().hex[:10]}"
    yield p
    queue.JobQueue(rurl, prefix=p).purge()


# ----------------------------------------------------------------------------- queue

def test_enqueue_is_idempotent_and_completion_counts_once(rurl: str, prefix: str) -> None:
    q = queue.JobQueue(rurl, prefix=prefix)
    q.ensure_group()
    first = q.send_envelope(b"<EnvioDTE/>", "76543210-3")
    again = q.send_envelope(b"<EnvioDTE/>", "76543210-3")
    assert first.added and not again.added and first.id == again.id  # the envelope's bytes are the key
    other = q.poll_track("123", "76543210-3")
    assert other.added and other.id != first.id
    jobs = q.fetch("w1", 10, 100)
    assert {j.id for j in jobs} == {first.id, other.id}
    send = next(j for j in jobs if j.kind == "send")
    assert send.data["company_rut"] == "76543210-3" and send.data["poll"] is True
    assert q.begin(send, "w1") == "run" and send.attempt == 1
    assert q.complete(send, "w1", {"state": "accepted"})
    assert not q.complete(send, "w2", {"state": "rejected"})  # a second completion never counts
    assert q.result(first.id) == {"state": "accepted"}
    assert not q.send_envelope(b"<EnvioDTE/>").added  # finished jobs are not enqueued again
    [res] = q.results()
    assert (res.id, res.status, res.result, res.consumer) == (first.id, "ok", {"state": "accepted"}, "w1")
    s = q.stats()
    assert (s["depth"], s["pending"], s["waiting"], s["dead"]) == (1, 1, 0, 0)
    assert s["pending_by_consumer"] == {"w1": 1}


def test_retries_with_backoff_then_dead_letter(rurl: str, prefix: str) -> None:
    q = queue.JobQueue(rurl, prefix=prefix, max_attempts=3, retry_base_s=0.05, retry_max_s=0.05)
    job_id = q.poll_track("42", "76543210-3").id
    outcomes = []
    deadline = time.monotonic() + 20
    while len(outcomes) < 3 and time.monotonic() < deadline:
        for job in q.fetch("w", 1, 50):
            assert q.begin(job, "w") == "run"
            assert job.attempt == len(outcomes) + 1
            outcomes.append(q.fail(job, "w", {"code": "sii.http_503", "message": "down"}, retryable=True))
    assert outcomes == ["retry", "retry", "dead"]
    [dead] = q.dead_letters()
    assert dead["id"] == job_id and dead["attempts"] == "3" and dead["error"]["code"] == "sii.http_503"
    [res] = q.results()
    assert res.status == "dead" and res.error == {"code": "sii.http_503", "message": "down"}
    assert q.stats()["dead"] == 1 and q.stats()["depth"] == 0


def test_unknown_kind_and_bad_url_are_clear_errors(rurl: str, prefix: str) -> None:
    q = queue.JobQueue(rurl, prefix=prefix)
    with pytest.raises(DteError) as e:
        q.enqueue("print", {})
    assert e.value.code == "queue.bad_kind"
    with pytest.raises(DteError) as e:
        queue.JobQueue("http://127.0.0.1:6379")
    assert e.value.code == "redis.bad_url"
    with pytest.raises(DteError) as e:
        queue.RedisConnection("redis://127.0.0.1:1/0", connect_timeout_s=0.3).command("PING")
    assert e.value.code == "redis.connect"


def test_queue_metrics_is_a_dict_for_the_metrics_endpoint(rurl: str, prefix: str) -> None:
    q = queue.JobQueue(rurl, prefix=prefix)
    q.ensure_group()
    q.poll_track("1", "76543210-3")
    m = queue.queue_metrics(rurl, prefix=prefix)
    assert m["up"] == 1 and m["depth"] == 1 and m["waiting"] == 1 and m["dead"] == 0
    assert queue.queue_metrics("redis://127.0.0.1:1/0") == {"up": 0}


def test_cli_enqueue_and_queue_stats(rurl: str, prefix: str, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    env = tmp_path / "envio.xml"
    env.write_bytes(b"<EnvioDTE/>")
    base = ["--redis", rurl, "--prefix", prefix, "--json"]
    assert cli.main(["enqueue", "send", str(env), *base]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["added"] is True and out["id"].startswith("send-")
    assert cli.main(["enqueue", "send", str(env), *base]) == 0
    assert json.loads(capsys.readouterr().out)["added"] is False
    assert cli.main(["enqueue", "poll", "777", "--company", "76543210-3", *base]) == 0
    capsys.readouterr()
    assert cli.main(["queue", "stats", *base]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["depth"] == 2 and stats["pending"] == 0 and stats["dead"] == 0
    assert cli.main(["queue", "stats", "--redis", rurl, "--prefix", prefix]) == 0
    assert "depth 2" in capsys.readouterr().out
    assert cli.main(["enqueue", "poll", "777", *base]) == 2  # --company missing: usage error
    assert "--company" in capsys.readouterr().err
    assert cli.main(["queue", "purge", *base]) == 2  # needs --yes


# ----------------------------------------------------------------------------- webhooks

SECRET = b"0123456789abcdef-webhook"


def test_webhook_signature_good_bad_and_replayed() -> None:
    body = b'{"event":"status_update","event_id":"e1"}'
    now = 1_700_000_000
    sig = webhooks.sign(SECRET, body, now)
    assert sig.startswith("sha256=") and len(sig) == 7 + 64
    assert webhooks.verify(SECRET, body, str(now), sig, now=now + 10) == now
    assert webhooks.verify(SECRET.decode(), body, now, sig, now=now) == now  # str secret, int timestamp

    def refused(code: str, cls: type[webhooks.WebhookError], *args: Any, **kw: Any) -> None:
        with pytest.raises(cls) as e:
            webhooks.verify(*args, **kw)
        assert e.value.code == code, e.value.code

    refused("webhook.bad_signature", webhooks.WebhookSignatureError, b"other-secret", body, str(now), sig, now=now)
    refused("webhook.bad_signature", webhooks.WebhookSignatureError, SECRET, body + b" ", str(now), sig, now=now)
    # The timestamp is signed: moving it invalidates the signature.
    refused("webhook.bad_signature", webhooks.WebhookSignatureError, SECRET, body, str(now + 1), sig, now=now)
    refused("webhook.bad_signature", webhooks.WebhookSignatureError, SECRET, body, str(now), "sha256=" + "0" * 64,
            now=now)
    refused("webhook.missing_signature", webhooks.WebhookSignatureError, SECRET, body, str(now), None, now=now)
    refused("webhook.missing_timestamp", webhooks.WebhookError, SECRET, body, None, sig, now=now)
    refused("webhook.malformed_timestamp", webhooks.WebhookError, SECRET, body, "yesterday", sig, now=now)
    # Replays: outside the window either way, and a second delivery inside it.
    refused("webhook.stale_timestamp", webhooks.WebhookReplayError, SECRET, body, str(now), sig, now=now + 301)
    refused("webhook.stale_timestamp", webhooks.WebhookReplayError, SECRET, body, str(now), sig, now=now - 301)
    guard = webhooks.ReplayGuard()
    assert webhooks.verify(SECRET, body, str(now), sig, now=now, replay=guard) == now
    refused("webhook.replayed", webhooks.WebhookReplayError, SECRET, body, str(now), sig, now=now, replay=guard)
    assert issubclass(webhooks.WebhookSignatureError, webhooks.WebhookError)
    assert webhooks.WebhookSignatureError("x").status == 401 and webhooks.WebhookError("x").status == 400


class Receiver:
    """A webhook receiver over real HTTP that verifies like the Odoo controller does."""

    def __init__(self, secret: bytes = SECRET, answer: int = 200) -> None:
        self.secret, self.answer = secret, answer
        self.accepted: list[tuple[str, dict[str, Any]]] = []
        self.refused: list[str] = []
        self.guard = webhooks.ReplayGuard()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    webhooks.verify_headers(receiver.secret, body, dict(self.headers.items()), replay=receiver.guard)
                except webhooks.WebhookError as e:
                    receiver.refused.append(e.code)
                    self.send_response(e.status)
                    self.end_headers()
                    return
                receiver.accepted.append((self.path, json.loads(body)))
                self.send_response(receiver.answer)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/l10n_cl_dte/webhook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_webhook_post_is_verified_by_a_real_receiver() -> None:
    r = Receiver()
    try:
        assert webhooks.post(r.url + "/status_update", SECRET, "status_update", {"event_id": "x1"}) == 200
        assert r.accepted == [("/l10n_cl_dte/webhook/status_update", {"event_id": "x1"})]
        assert webhooks.post(r.url + "/status_update", b"wrong", "status_update", {"event_id": "x2"},
                             attempts=1) == 401
        assert r.refused == ["webhook.bad_signature"]
        assert webhooks.post("http://127.0.0.1:1/x", SECRET, "e", {}, attempts=1, timeout_s=1) == 0
    finally:
        r.close()
