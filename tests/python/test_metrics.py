"""Prometheus metrics: exposition format, the instrumented SII client against the simulator
(latency, retries, breaker state), snapshot sources, and `dte metrics-serve` over real HTTP with
its bearer token."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

import dte_native as dte
from dte_native import metrics, sii, testkit
from dte_native.errors import SiiTransportError

import simkit
from conftest import ISSUER, document

REPO = Path(__file__).resolve().parents[2]
sim_mod = simkit.load_simulator()
# This checkout's CLI (as the `dte` entry point calls it).
DTE = [sys.executable, "-c", "import sys; from dte_native.cli import main; sys.exit(main())"]
FAST = dict(timeout_s=5.0, connect_timeout_s=2.0, max_attempts=1, base_delay_s=0.02, max_delay_s=0.2,
            random_seed=7)


def families(text: bytes | str) -> dict[str, Any]:
    data = text.decode() if isinstance(text, bytes) else text
    return {f.name: f for f in text_string_to_metric_families(data)}


def value(fams: dict[str, Any], sample_name: str, **labels: str) -> float | None:
    for fam in fams.values():
        for s in fam.samples:
            if s.name == sample_name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return None


def http_get(url: str, token: str | None = None) -> tuple[int, bytes, dict[str, str]]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


@pytest.fixture()
def sim(kit: testkit.TestKit) -> Iterator[Any]:
    s = sim_mod.Simulator(port=0, xsd_dir=simkit.xsd_dir(), sii_keys=kit.sii_keys_dir,
                          config={"step_delay_s": 0})
    s.start()
    yield s
    s.stop()


def test_exposition_parses_and_names_match_the_contract() -> None:
    m = metrics.DteMetrics()
    with m.sii_call("upload"):
        pass
    with pytest.raises(KeyError), m.sii_call("envelope_status"):
        raise KeyError("boom")
    m.record_document(33, "accepted")
    m.add_source("db", lambda: [metrics.Sample("dte_documents", {"state": "accepted", "doc_type": "33"}, 7),
                                metrics.Sample("dte_documents", {"state": 'we"ird\\', "doc_type": "39"}, 1)])
    text = m.render()
    assert text.startswith(b"# HELP ")
    fams = families(text)
    # Every exported series name is one the dashboard/alerts contract knows.
    sample_names = {s.name for f in fams.values() for s in f.samples if not s.name.endswith("_created")}
    assert sample_names <= metrics.exported_names()
    assert value(fams, "dte_sii_request_duration_seconds_count", service="upload") == 1
    assert value(fams, "dte_sii_request_duration_seconds_bucket", service="upload", le="+Inf") == 1
    assert value(fams, "dte_sii_requests_total", service="envelope_status", outcome="KeyError") == 1
    assert value(fams, "dte_documents_processed_total", doc_type="33", outcome="accepted") == 1
    assert value(fams, "dte_documents", state="accepted", doc_type="33") == 7
    assert value(fams, "dte_documents", state='we"ird\\', doc_type="39") == 1  # escaped and read back
    assert value(fams, "dte_metrics_source_up", source="db") == 1


def test_failing_source_is_reported_not_fatal() -> None:
    m = metrics.DteMetrics()

    def broken() -> list[metrics.Sample]:
        raise ConnectionError("redis down")

    m.add_source("queue", broken)
    m.add_source("ok", lambda: [metrics.Sample("dte_queue_depth", {"queue": "send"}, 3)])
    fams = families(m.render())
    assert value(fams, "dte_metrics_source_up", source="queue") == 0
    assert value(fams, "dte_queue_depth", queue="send") == 3


def test_unknown_gauge_from_a_source_is_an_error() -> None:
    m = metrics.DteMetrics()
    m.add_source("bad", lambda: [metrics.Sample("dte_made_up", {}, 1)])
    with pytest.raises(ValueError, match="dte_made_up"):
        m.render()


def test_instrumented_client_against_the_simulator(sim: Any, kit: testkit.TestKit, cert: dte.Certificate,
                                                    cafs: dict[int, dte.Caf], keyring: dte.SiiKeyring) -> None:
    m = metrics.DteMetrics()
    client = metrics.instrument(sii.SiiClient(cert, sii.ClientConfig("simulator", base_url=sim.url, **FAST)), m)
    signed = dte.sign(document(33, 401), cafs[33], cert, keyring=keyring)
    envelope = dte.envelope([signed], cert, resolution_date="2014-08-22", resolution_number=0)
    sent = client.upload(envelope)
    client.envelope_status(sent.track_id, ISSUER)
    assert client.signer_rut == cert.info.signer_rut  # everything else passes through
    fams = families(m.render())
    assert value(fams, "dte_sii_request_duration_seconds_count", service="upload") == 1
    assert value(fams, "dte_sii_requests_total", service="envelope_status", outcome="ok") == 1
    states = {s.labels["endpoint"]: s.value for s in fams["dte_circuit_breaker_state"].samples}
    assert states and set(states.values()) == {0.0}


def test_retries_and_open_breaker_are_exported(sim: Any, cert: dte.Certificate) -> None:
    m = metrics.DteMetrics()
    client = metrics.instrument(sii.SiiClient(
        cert, sii.ClientConfig("simulator", base_url=sim.url, **{**FAST, "breaker_failures": 1})), m)
    req = urllib.request.Request(sim.url + "/_sim/config", method="POST", headers={"Content-Type": "application/json"},
                                 data=b'{"faults": [{"service": "seed", "kind": "http_error", "status": 503}]}')
    urllib.request.urlopen(req, timeout=10).read()
    # force_new: the token cache is process-wide and keyed by URL, and port 0 can give this
    # simulator the port of an earlier test's, whose token would otherwise be answered.
    with pytest.raises(SiiTransportError):
        client.token(force_new=True)
    fams = families(m.render())
    assert value(fams, "dte_sii_requests_total", service="token", outcome="SiiTransportError") == 1
    states = {s.labels["endpoint"]: s.value for s in fams["dte_circuit_breaker_state"].samples}
    assert metrics.BREAKER_STATE_VALUES["open"] in states.values()


def test_days_left() -> None:
    import datetime as dt
    now = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    assert metrics.days_left("2026-01-31T00:00:00Z", now) == 30
    assert metrics.days_left(dt.date(2025, 12, 31), now) == -1
    assert metrics.days_left("2026-01-01 12:00:00", now) == 0.5


def test_check_bearer() -> None:
    assert metrics.check_bearer(None, "t") == 401
    assert metrics.check_bearer("Basic dTpw", "t") == 401
    assert metrics.check_bearer("Bearer ", "t") == 401
    assert metrics.check_bearer("Bearer x", "t") == 403
    assert metrics.check_bearer("bearer t", "t") == 200
    assert metrics.check_bearer("Bearer t", "") == 403  # no token configured: nobody gets in


def test_serve_requires_a_token() -> None:
    with pytest.raises(ValueError):
        metrics.serve(metrics.DteMetrics(), "")


def test_metrics_serve_command(kit: testkit.TestKit, tmp_path: Path) -> None:
    """`dte metrics-serve` as a real process: 401/403/200, certificate and CAF gauges."""
    cert_arg = [str(kit.cert_path), "--password-file", str(kit.password_file)]
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("DTE_METRICS_TOKEN", None)
    proc = subprocess.Popen(
        [*DTE, "metrics-serve", "--port", "0", "--token-file", str(token_file),
         "--cert", *cert_arg, "--caf", f"{kit.caf_paths[33]}@41", "--company", "demo"],
        cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline() if proc.stderr else ""
        found = re.search(r"http://127\.0\.0\.1:(\d+)/metrics", line)
        assert found, line
        base = f"http://127.0.0.1:{found.group(1)}"
        assert http_get(base + "/healthz")[0] == 200
        status, _, headers = http_get(base + "/metrics")
        assert status == 401 and headers.get("WWW-Authenticate", "").startswith("Bearer")
        assert http_get(base + "/metrics", "wrong")[0] == 403
        status, body, headers = http_get(base + "/metrics", "s3cret-token")
        assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
        fams = families(body)
        info = kit.caf(33).info
        left = value(fams, "dte_caf_folios_left", company="demo", doc_type="33")
        assert left == info.folio_to - 41 + 1
        days = value(fams, "dte_certificate_days_left", company="demo", signer_rut=kit.certificate().info.signer_rut)
        assert days is not None and days > 30
        assert b"s3cret-token" not in body
    finally:
        proc.terminate()
        proc.wait(10)
    assert proc.returncode == 0


def test_metrics_serve_without_token_is_a_usage_error(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DTE_METRICS_TOKEN"}
    env["PYTHONPATH"] = str(REPO)
    r = subprocess.run([*DTE, "metrics-serve", "--port", "0"],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "token is required" in r.stderr


def test_render_adds_one_scrapes_samples_without_keeping_them() -> None:
    m = metrics.DteMetrics()
    first = families(m.render([metrics.Sample("dte_caf_folios_left", {"company": "a", "doc_type": "33",
                                                                      "caf": "33:1-10"}, 4)]))
    assert value(first, "dte_caf_folios_left", company="a") == 4
    assert value(families(m.render()), "dte_caf_folios_left", company="a") is None


REDIS_URL = os.environ.get("DTE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture()
def redis_prefix() -> Iterator[str]:
    from dte_native import queue
    prefix = f"dtemetrics{os.getpid()}{time.monotonic_ns()}"
    try:
        queue.JobQueue(REDIS_URL, prefix=prefix).ensure_group()
    except Exception as e:  # noqa: BLE001 - no Redis here
        pytest.skip(f"Redis not reachable at {REDIS_URL}: {e}")
    yield prefix
    queue.JobQueue(REDIS_URL, prefix=prefix).purge()


def test_worker_metrics_on_real_redis(redis_prefix: str, sim: Any, cert: dte.Certificate) -> None:
    """metrics.watch_worker: queue gauges, job counters and the worker's SII client instrumented."""
    from dte_native import queue
    from dte_native.worker import Worker, WorkerConfig

    q = queue.JobQueue(REDIS_URL, prefix=redis_prefix)
    q.enqueue("poll", {"track_id": "1", "company_rut": ISSUER})
    q.enqueue("poll", {"track_id": "2", "company_rut": ISSUER})
    client = sii.SiiClient(cert, sii.ClientConfig("simulator", base_url=sim.url, **FAST))
    worker = Worker(WorkerConfig(redis_url=REDIS_URL, prefix=redis_prefix, consumer="c1"), client)
    m = metrics.watch_worker(worker, metrics.DteMetrics())
    fams = families(m.render())
    assert value(fams, "dte_queue_depth", queue=redis_prefix) == 2
    assert value(fams, "dte_queue_dead_letters", queue=redis_prefix) == 0
    assert value(fams, "dte_worker_jobs_total", consumer="c1", outcome="completed") == 0
    worker.client.token()  # the worker's client is now instrumented
    fams = families(m.render())
    assert value(fams, "dte_sii_requests_total", service="token", outcome="ok") == 1
    assert {s.name for f in fams.values() for s in f.samples if not s.name.endswith("_created")} <= \
        metrics.exported_names()


def test_metrics_serve_reports_queue_depth(redis_prefix: str, tmp_path: Path) -> None:
    from dte_native import cli_ops, queue

    queue.JobQueue(REDIS_URL, prefix=redis_prefix).enqueue("poll", {"track_id": "9", "company_rut": ISSUER})
    args = cli_ops.argparse.Namespace(cert=None, caf=None, redis=REDIS_URL, prefix=redis_prefix, company="",
                                      password_file=None)
    m = metrics.DteMetrics()
    cli_ops.configure(args, m)
    fams = families(m.render())
    assert value(fams, "dte_queue_depth", queue=redis_prefix) == 1
    assert value(fams, "dte_metrics_source_up", source="queue") == 1
    # Redis gone: the source says so, the endpoint still answers.
    args.redis = "redis://127.0.0.1:1/0"
    m2 = metrics.DteMetrics()
    cli_ops.configure(args, m2)
    assert value(families(m2.render()), "dte_metrics_source_up", source="queue") == 0


def test_multiprocess_mode_sums_every_process(tmp_path: Path) -> None:
    """Odoo with several workers: PROMETHEUS_MULTIPROC_DIR makes one scrape see every process."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    record = ("from dte_native import metrics\n"
              "m = metrics.process_metrics()\n"
              "with m.sii_call('upload'):\n    pass\n"
              "m.record_document(33, 'accepted')\n")
    for _ in range(2):
        subprocess.run([sys.executable, "-c", record], env=env, check=True, cwd=REPO, timeout=60)
    render = ("import sys\nfrom dte_native import metrics\n"
              "sys.stdout.write(metrics.DteMetrics().render([metrics.Sample('dte_documents', "
              "{'state': 'sent', 'doc_type': '33'}, 5)]).decode())\n")
    out = subprocess.run([sys.executable, "-c", render], env=env, check=True, cwd=REPO, timeout=60,
                         capture_output=True, text=True).stdout
    fams = families(out)
    assert value(fams, "dte_sii_request_duration_seconds_count", service="upload") == 2
    assert value(fams, "dte_documents_processed_total", doc_type="33", outcome="accepted") == 2
    assert value(fams, "dte_documents", state="sent", doc_type="33") == 5
