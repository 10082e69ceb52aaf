"""`dte worker` processes against the SII simulator and the real Redis: two workers never run a
job twice, a SIGKILLed worker's jobs are taken over, retries end in a dead letter with a signed
alert, one token renewal for many processes, and a circuit breaker shared by clients."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

import dte_native as dte
from dte_native import queue, sii, testkit
from dte_native.errors import SiiTransportError
from dte_native.worker import Worker, WorkerConfig

import simkit
from conftest import document
from test_queue import SECRET, Receiver, prefix, rurl  # noqa: F401 (the Redis fixtures)

sim_mod = simkit.load_simulator()
XSD = simkit.xsd_dir()
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def sim(kit: testkit.TestKit) -> Iterator[Any]:
    s = sim_mod.Simulator(port=0, xsd_dir=XSD, sii_keys=kit.sii_keys_dir, config={"step_delay_s": 0})
    s.start()
    yield s
    s.stop()


_FOLIO = [300]


def envelopes(cafs: dict[int, dte.Caf], cert: dte.Certificate, keyring: dte.SiiKeyring, n: int) -> list[bytes]:
    """n one-document EnvioDTEs with folios no other test of this module uses."""
    out = []
    for _ in range(n):
        _FOLIO[0] += 1
        signed = dte.sign(document(33, _FOLIO[0]), cafs[33], cert, keyring=keyring)
        out.append(dte.envelope([signed], cert, resolution_date="2014-08-22", resolution_number=0))
    return out


def worker_cmd(kit: testkit.TestKit, sim: Any, rurl: str, prefix: str, consumer: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "dte_native.cli", "worker", "--redis", rurl, "--prefix", prefix,
            "--consumer", consumer, "--env", "simulator", "--url", sim.url, "--cert", str(kit.cert_path),
            "--password-file", str(kit.password_file), "--poll", "0.05", "--timeout", "10", "--json", *extra]


def start(cmd: list[str]) -> subprocess.Popen[bytes]:
    # Run this checkout's package (PYTHONPATH) like pytest does.
    env = os.environ | {"PYTHONPATH": str(REPO)}
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO, env=env)


def finish(p: subprocess.Popen[bytes], timeout: float = 60) -> dict[str, Any]:
    out, err = p.communicate(timeout=timeout)
    assert p.returncode == 0, err.decode()
    return json.loads(out.decode().strip().splitlines()[-1])


def faults(sim: Any, rules: list[dict[str, Any]]) -> None:
    req = urllib.request.Request(sim.url + "/_sim/config", data=json.dumps({"faults": rules}).encode(),
                                 method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200


def uploads(sim: Any) -> list[dict[str, Any]]:
    return list(sim.store.snapshot()["envelopes"])


def test_two_worker_processes_never_process_a_job_twice(kit: testkit.TestKit, cafs: dict[int, dte.Caf],
                                                          cert: dte.Certificate, keyring: dte.SiiKeyring,
                                                          sim: Any, rurl: str, prefix: str) -> None:
    q = queue.JobQueue(rurl, prefix=prefix)
    q.ensure_group()
    ids = [q.send_envelope(e).id for e in envelopes(cafs, cert, keyring, 16)]
    workers = [start(worker_cmd(kit, sim, rurl, prefix, f"w{i}", "--concurrency", "3", "--exit-when-idle", "1.5"))
               for i in range(2)]
    counters = [finish(w) for w in workers]
    results = q.results(count=1000)
    assert sorted(r.id for r in results) == sorted(ids)  # each job completed exactly once
    assert all(r.status == "ok" and r.result and r.result["state"] == "accepted" for r in results)
    assert not any(r.result and r.result["duplicate"] for r in results)
    assert sum(c["completed"] for c in counters) == 16
    assert sum(c["started"] for c in counters) == 16  # and started exactly once
    assert len(uploads(sim)) == 16  # the simulator received each envelope once
    s = q.stats()
    assert (s["depth"], s["pending"], s["dead"]) == (0, 0, 0)


def test_killed_worker_jobs_are_taken_over(kit: testkit.TestKit, cafs: dict[int, dte.Caf], cert: dte.Certificate,
                                          keyring: dte.SiiKeyring, sim: Any, rurl: str, prefix: str) -> None:
    # Slow uploads keep the first worker busy long enough to be killed with jobs in hand.
    faults(sim, [{"service": "upload", "kind": "latency", "seconds": 1.0, "count": 3}])
    q = queue.JobQueue(rurl, prefix=prefix)
    q.ensure_group()
    ids = [q.send_envelope(e).id for e in envelopes(cafs, cert, keyring, 6)]
    doomed = start(worker_cmd(kit, sim, rurl, prefix, "doomed", "--concurrency", "3", "--claim-idle-ms", "1000"))
    deadline = time.monotonic() + 30
    while q.stats()["pending_by_consumer"].get("doomed", 0) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # inside the slow uploads
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(timeout=10)
    assert q.stats()["pending_by_consumer"].get("doomed", 0) >= 1  # it died holding jobs
    survivor = start(worker_cmd(kit, sim, rurl, prefix, "survivor", "--concurrency", "3", "--claim-idle-ms", "1000",
                                "--exit-when-idle", "2.5"))
    counters = finish(survivor)
    results = q.results(count=1000)
    assert sorted(r.id for r in results) == sorted(ids)  # every job finished, once
    # An upload the killed worker delivered before dying is recognised by SII on the resend
    # (STATUS 99: "duplicate"); nothing is accepted twice.
    assert all(r.consumer == "survivor" and r.result and r.result["state"] in ("accepted", "duplicate")
               for r in results), [(r.id, r.consumer, r.attempts, r.result) for r in results]
    taken_over = [r for r in results if r.attempts >= 2]
    assert taken_over, "no job was taken over from the killed worker"
    hashes = [e["sha256"] for e in uploads(sim)]
    assert len(hashes) == len(set(hashes)) == 6  # each envelope received by SII exactly once
    assert counters["completed"] == 6
    assert q.stats()["depth"] == 0


def test_retries_then_dead_letter_with_signed_alert(cert: dte.Certificate, sim: Any, rurl: str, prefix: str) -> None:
    faults(sim, [{"service": "estup", "kind": "http_error", "status": 503}])
    client = sii.SiiClient(cert, sii.ClientConfig("simulator", base_url=sim.url, timeout_s=5, max_attempts=1,
                                                  breaker_failures=100))
    receiver = Receiver()
    try:
        cfg = WorkerConfig(redis_url=rurl, prefix=prefix, consumer="w", concurrency=2, max_attempts=3,
                           retry_base_s=0.05, retry_max_s=0.1, webhook_url=receiver.url, webhook_secret=SECRET,
                           exit_when_idle_s=1.0, block_ms=100)
        w = Worker(cfg, client)
        job_id = w.queue.poll_track("0000000123", "76543210-3").id
        counters = w.run()
        assert (counters["started"], counters["retried"], counters["dead"], counters["completed"]) == (3, 2, 1, 0)
        [dead] = w.queue.dead_letters()
        assert dead["id"] == job_id and dead["error"]["code"] == "sii.http_503"
        assert receiver.refused == []
        [(path, body)] = receiver.accepted
        assert path.endswith("/error_alert")
        assert body["event"] == "error_alert" and body["event_id"] == f"{job_id}:error_alert"
        assert "sii.http_503" in body["message"]
    finally:
        receiver.close()


def test_send_job_reports_documents_by_signed_webhook(kit: testkit.TestKit, cafs: dict[int, dte.Caf],
                                                      cert: dte.Certificate, keyring: dte.SiiKeyring, sim: Any,
                                                      rurl: str, prefix: str) -> None:
    client = sii.SiiClient(cert, sii.ClientConfig("simulator", base_url=sim.url, timeout_s=5, redis_url=rurl,
                                                  redis_prefix=prefix))
    receiver = Receiver()
    try:
        cfg = WorkerConfig(redis_url=rurl, prefix=prefix, consumer="w", poll_s=0.05, webhook_url=receiver.url,
                           webhook_secret=SECRET, exit_when_idle_s=0.5, block_ms=100)
        w = Worker(cfg, client)
        [env] = envelopes(cafs, cert, keyring, 1)
        job_id = w.queue.send_envelope(env).id
        assert w.run()["completed"] == 1
        result = w.queue.result(job_id)
        assert result and result["state"] == "accepted" and result["track_id"] and result["final"]
        [(path, body)] = receiver.accepted
        assert path.endswith("/status_update") and body["event"] == "status_update"
        [doc] = body["documents"]
        assert (doc["doc_type"], doc["folio"], doc["state"], doc["track_id"]) == (33, _FOLIO[0], "accepted",
                                                                                 result["track_id"])
        assert body["company_rut"] == kit.issuer_rut
    finally:
        receiver.close()


TOKEN_SCRIPT = """
import sys, time
from dte_native import sii, testkit, Certificate
cert = Certificate.load(sys.argv[1], open(sys.argv[2]).read().strip())
c = sii.SiiClient(cert, sii.ClientConfig("simulator", base_url=sys.argv[3], redis_url=sys.argv[4],
                                         redis_prefix=sys.argv[5], timeout_s=10))
start = float(sys.argv[6])
time.sleep(max(0.0, start - time.time()))
print(c.token())
"""


def test_shared_token_is_renewed_once_by_concurrent_processes(kit: testkit.TestKit, sim: Any, rurl: str,
                                                              prefix: str) -> None:
    faults(sim, [{"service": "token", "kind": "latency", "seconds": 0.5}])
    start_at = f"{time.time() + 3.0:.3f}"  # all processes ask at the same moment
    procs = [start([sys.executable, "-c", TOKEN_SCRIPT, str(kit.cert_path), str(kit.password_file), sim.url, rurl,
                    prefix, start_at]) for _ in range(4)]
    tokens = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err.decode()
        tokens.append(out.decode().strip())
    assert len(set(tokens)) == 1 and tokens[0]
    assert sim.store.snapshot()["tokens"] == 1  # one renewal for four processes


def test_circuit_breaker_state_is_shared_between_clients(cert: dte.Certificate, sim: Any, rurl: str, prefix: str,
                                                         cafs: dict[int, dte.Caf], keyring: dte.SiiKeyring) -> None:
    faults(sim, [{"service": "upload", "kind": "http_error", "status": 503}])
    cfg = sii.ClientConfig("simulator", base_url=sim.url, timeout_s=5, max_attempts=1, breaker_failures=2,
                           breaker_open_s=60, redis_url=rurl, redis_prefix=prefix)
    a, b = sii.SiiClient(cert, cfg), sii.SiiClient(cert, cfg)
    env1, env2 = envelopes(cafs, cert, keyring, 2)
    for env in (env1, env1):
        with pytest.raises(SiiTransportError) as e:
            a.upload(env)
        assert e.value.code == "sii.http_503"
    # The other client (any process) sees the circuit open and does not call SII.
    with pytest.raises(SiiTransportError) as e:
        b.upload(env2)
    assert e.value.code == "sii.circuit_open"
    assert b.breaker_states()["upload"] == "open"
    unshared = sii.SiiClient(cert, sii.ClientConfig("simulator", base_url=sim.url, timeout_s=5, max_attempts=1,
                                                    redis_url=""))
    with pytest.raises(SiiTransportError) as e:
        unshared.upload(env2)
    assert e.value.code == "sii.http_503"  # without Redis the breaker is per process


def test_send_of_an_envelope_sii_already_has_reports_its_documents(cafs: dict[int, dte.Caf], cert: dte.Certificate,
                                                                   keyring: dte.SiiKeyring, sim: Any, rurl: str,
                                                                   prefix: str) -> None:
    client = sii.SiiClient(cert, sii.ClientConfig("simulator", base_url=sim.url, timeout_s=5))
    [env] = envelopes(cafs, cert, keyring, 1)
    assert client.upload(env).track_id  # delivered earlier, e.g. by a worker whose answer was lost
    receiver = Receiver()
    try:
        w = Worker(WorkerConfig(redis_url=rurl, prefix=prefix, consumer="w", webhook_url=receiver.url,
                                webhook_secret=SECRET, exit_when_idle_s=0.5, block_ms=100), client)
        job_id = w.queue.send_envelope(env).id
        assert w.run()["completed"] == 1
        result = w.queue.result(job_id)
        assert result and result["state"] == "duplicate" and result["duplicate"] and result["final"]
        [(_path, body)] = receiver.accepted
        [doc] = body["documents"]
        assert (doc["folio"], doc["state"]) == (_FOLIO[0], "accepted")  # QueryEstDte: DOK
        assert len(uploads(sim)) == 1
    finally:
        receiver.close()


def test_upload_frees_the_slot_while_the_follower_waits_for_sii(kit: testkit.TestKit, cafs: dict[int, dte.Caf],
                                                                cert: dte.Certificate, keyring: dte.SiiKeyring,
                                                                rurl: str, prefix: str) -> None:
    """With one slot, three send jobs are all uploaded before SII (0.5 s per processing step
    here) has finished the first: following a track id does not hold the slot."""
    slow = sim_mod.Simulator(port=0, xsd_dir=XSD, sii_keys=kit.sii_keys_dir, config={"step_delay_s": 0.5})
    slow.start()
    try:
        client = sii.SiiClient(cert, sii.ClientConfig("simulator", base_url=slow.url, timeout_s=5))
        cfg = WorkerConfig(redis_url=rurl, prefix=prefix, consumer="w", concurrency=1, poll_s=0.05,
                           exit_when_idle_s=0.5, block_ms=100)
        w = Worker(cfg, client)
        ids = [w.queue.send_envelope(env).id for env in envelopes(cafs, cert, keyring, 3)]
        counters = w.run()
        assert counters["completed"] == 3 and counters["followed"] == 3 and counters["abandoned"] == 0
        results = [w.queue.result(i) for i in ids]
        assert all(r and r["state"] == "accepted" and r["final"] for r in results), results
        # Every upload was accepted before the first envelope reached its final state.
        assert max(r["accepted_ms"] for r in results) < min(r["final_ms"] for r in results)
    finally:
        slow.stop()


def test_worker_stopped_while_following_leaves_the_job_for_take_over(kit: testkit.TestKit,
                                                                     cafs: dict[int, dte.Caf],
                                                                     cert: dte.Certificate,
                                                                     keyring: dte.SiiKeyring,
                                                                     rurl: str, prefix: str) -> None:
    """A worker told to stop while SII is still processing leaves the job unacknowledged (no
    result, not dead); another worker takes it over once the lease lapses and finishes it."""
    import threading
    slow = sim_mod.Simulator(port=0, xsd_dir=XSD, sii_keys=kit.sii_keys_dir, config={"step_delay_s": 1.0})
    slow.start()
    try:
        client = sii.SiiClient(cert, sii.ClientConfig("simulator", base_url=slow.url, timeout_s=5))
        first = Worker(WorkerConfig(redis_url=rurl, prefix=prefix, consumer="first", concurrency=1, poll_s=0.05,
                                    block_ms=100, claim_idle_ms=1000, stop_grace_s=0.0), client)
        [env] = envelopes(cafs, cert, keyring, 1)
        job_id = first.queue.send_envelope(env).id
        stop = threading.Event()
        runner = threading.Thread(target=first.run, args=(stop,))
        runner.start()
        deadline = time.monotonic() + 10
        while first.following() == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert first.following() == 1
        stop.set()
        runner.join(timeout=15)
        assert first.counters["abandoned"] == 1 and first.counters["completed"] == 0
        assert first.queue.result(job_id) is None
        second = Worker(WorkerConfig(redis_url=rurl, prefix=prefix, consumer="second", concurrency=1,
                                     poll_s=0.05, block_ms=100, claim_idle_ms=1000, exit_when_idle_s=3.0), client)
        assert second.run()["completed"] == 1
        result = second.queue.result(job_id)
        assert result and result["final"] and result["state"] in ("accepted", "duplicate"), result
        assert len(list(slow.store.snapshot()["envelopes"])) == 1  # never uploaded twice
    finally:
        slow.stop()
