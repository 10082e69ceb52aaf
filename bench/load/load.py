"""Load test of the Redis job queue: `dte worker` processes against the SII simulator.

For each scenario (faults off, faults on): a fresh simulator process and Redis key prefix, test
material from dte_native.testkit, N one-document EnvioDTEs signed before the clock starts, K
worker processes, and one producer enqueueing `send` jobs at a fixed rate. Every job's result
(dte_native.queue results stream) carries when SII (the simulator) accepted the upload and when
the envelope reached its final state; latencies are measured from the moment each job was
enqueued. See bench/load/run for the options.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # this checkout's package, like the tests

import dte_native as dte  # noqa: E402
from dte_native import queue, testkit  # noqa: E402

# Roughly 10% of uploads and status queries fail in every way the simulator can inject (5xx,
# dropped connections = unclear outcome, latency, token expiry).
FAULTS = [
    {"service": "upload", "kind": "http_error", "status": 503, "probability": 0.04},
    {"service": "upload", "kind": "drop", "probability": 0.02},
    {"service": "upload", "kind": "latency", "seconds": 0.5, "probability": 0.04},
    {"service": "estup", "kind": "http_error", "status": 503, "probability": 0.04},
    {"service": "estup", "kind": "token_expired", "probability": 0.02},
    {"service": "estup", "kind": "latency", "seconds": 0.3, "probability": 0.04},
]


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, int(round(p / 100.0 * (len(s) - 1)))))
    return s[k]


def cpu_seconds(pid: int) -> float:
    """user + system CPU seconds of a running process (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return round((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), 1)
    except (OSError, IndexError, ValueError):
        return float("nan")


def make_envelopes(kit: testkit.TestKit, n: int, first_folio: int) -> list[bytes]:
    cert, caf, keyring = kit.certificate(), kit.caf(33), kit.keyring()
    out = []
    for i in range(n):
        doc = json.loads(json.dumps(dte.example(33)))
        doc["Encabezado"]["IdDoc"]["Folio"] = first_folio + i
        doc["Encabezado"]["Emisor"]["RUTEmisor"] = kit.issuer_rut
        signed = dte.sign(doc, caf, cert, keyring=keyring)
        out.append(dte.envelope([signed], cert, resolution_date="2014-08-22", resolution_number=0))
    return out


def start_simulator(kit: testkit.TestKit, step_delay_s: float, faults: bool, py: str) -> tuple[subprocess.Popen[str], str]:
    cmd = [py, "-m", "dte_native.cli", "simulator", "--port", "0", "--sii-keys", str(kit.sii_keys_dir),
           "--set", f"step_delay_s={step_delay_s}", "--set", f"faults={json.dumps(FAULTS if faults else [])}"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT,
                         env=os.environ | {"PYTHONPATH": str(ROOT)})
    assert p.stdout
    line = p.stdout.readline()
    if "listening on" not in line:
        p.kill()
        raise SystemExit(f"load: the simulator did not start: {line!r}")
    return p, line.strip().rsplit(" ", 1)[-1]


def scenario(args: argparse.Namespace, faults: bool, kit: testkit.TestKit, envelopes: list[bytes]) -> dict[str, Any]:
    py = sys.executable
    prefix = f"dteload:{uuid.uuid4().hex[:8]}"
    sim, url = start_simulator(kit, args.step_delay, faults, py)
    q = queue.JobQueue(args.redis, prefix=prefix)
    q.ensure_group()
    workers = []
    logs = []  # each worker's stderr goes to a file: a pipe nobody reads could fill up and stall it
    try:
        for i in range(args.workers):
            cmd = [py, "-m", "dte_native.cli", "worker", "--redis", args.redis, "--prefix", prefix,
                   "--consumer", f"load-{i}", "--concurrency", str(args.concurrency), "--env", "simulator",
                   "--url", url, "--cert", str(kit.cert_path), "--password-file", str(kit.password_file),
                   "--poll", str(args.poll), "--timeout", "10", "--attempts", "6", "--json"]
            logs.append(tempfile.NamedTemporaryFile(prefix=f"dte-load-worker{i}-", suffix=".log"))
            workers.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=logs[-1], text=True,
                                            cwd=ROOT, env=os.environ | {"PYTHONPATH": str(ROOT)}))
        # Start the clock once every worker says it consumes (its first line on stderr), so the
        # measurement is of the queue and not of process start-up. (Redis lists a consumer in
        # XINFO GROUPS only once it has been given an entry, so that cannot be waited for.)
        ready_by = time.time() + 120
        while time.time() < ready_by and not all(
                Path(f.name).read_text(errors="replace").startswith("dte worker") for f in logs):
            time.sleep(0.1)
        time.sleep(args.warmup)
        enqueued: dict[str, float] = {}
        t0 = time.time()
        for i, env in enumerate(envelopes):
            delay = t0 + i / args.rate - time.time()
            if delay > 0:
                time.sleep(delay)
            enqueued[q.send_envelope(env).id] = time.time() * 1000.0
        t_enqueued = time.time()
        results: dict[str, Any] = {}
        after = "0"
        deadline = time.time() + args.drain_timeout
        while len(results) < len(envelopes) and time.time() < deadline:
            for r in q.results(after, count=500, block_ms=1000):
                after = r.entry_id
                results[r.id] = r
        stats = q.stats()
        dead_codes: dict[str, int] = {}
        for d in q.dead_letters(1000):
            code = str((d.get("error") or {}).get("code", "?"))
            if code == "worker.error":
                code += ": " + str((d.get("error") or {}).get("message", ""))[:120]
            dead_codes[code] = dead_codes.get(code, 0) + 1
        cpu = {"simulator": cpu_seconds(sim.pid), "workers": round(sum(cpu_seconds(w.pid) for w in workers), 1)}
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
        counters = []
        for w in workers:
            try:
                out, _err = w.communicate(timeout=60)
                counters.append(json.loads(out.strip().splitlines()[-1]))
            except (subprocess.TimeoutExpired, ValueError, IndexError):
                w.kill()
        sim.send_signal(signal.SIGTERM)
        try:
            sim.wait(timeout=20)
        except subprocess.TimeoutExpired:
            sim.kill()
        q.purge()
        for f in logs:
            f.close()
    to_accept, to_final, states = [], [], {}
    last_accept = last_final = t0 * 1000.0
    for job_id, r in results.items():
        res = r.result or {}
        states[res.get("state") or r.status] = states.get(res.get("state") or r.status, 0) + 1
        if res.get("accepted_ms"):
            to_accept.append(res["accepted_ms"] - enqueued[job_id])
            last_accept = max(last_accept, res["accepted_ms"])
        if res.get("final_ms"):
            to_final.append(res["final_ms"] - enqueued[job_id])
            last_final = max(last_final, res["final_ms"])
    ms = lambda v: round(v, 1)  # noqa: E731
    return {
        "faults": faults,
        "documents": len(envelopes),
        "finished": len(results),
        "states": states,
        "dead_letters": stats.get("dead", 0),
        "dead_letter_codes": dead_codes,
        "cpu_seconds": cpu,
        "offered_rate_docs_s": args.rate,
        "enqueue_seconds": round(t_enqueued - t0, 2),
        "throughput_accepted_docs_s": round(len(to_accept) / max(1e-9, (last_accept / 1000.0 - t0)), 1),
        "throughput_final_docs_s": round(len(to_final) / max(1e-9, (last_final / 1000.0 - t0)), 1),
        "upload_accepted_ms": {"p50": ms(pct(to_accept, 50)), "p95": ms(pct(to_accept, 95)),
                               "p99": ms(pct(to_accept, 99)), "max": ms(max(to_accept, default=float("nan")))},
        "final_state_ms": {"p50": ms(pct(to_final, 50)), "p95": ms(pct(to_final, 95)),
                           "p99": ms(pct(to_final, 99)), "max": ms(max(to_final, default=float("nan")))},
        "workers": counters,
    }


def main() -> int:
    p = argparse.ArgumentParser(prog="bench/load/run", description=__doc__)
    p.add_argument("--redis", default=os.environ.get("DTE_REDIS_URL", "redis://127.0.0.1:6379/0"))
    p.add_argument("--rate", type=float, default=50.0, help="documents enqueued per second (default 50)")
    p.add_argument("--seconds", type=float, default=20.0, help="how long to enqueue (default 20)")
    p.add_argument("--workers", type=int, default=4, help="worker processes (default 4)")
    p.add_argument("--concurrency", type=int, default=8, help="jobs at once per worker (default 8)")
    p.add_argument("--poll", type=float, default=0.25, help="seconds between status queries (default 0.25)")
    p.add_argument("--step-delay", type=float, default=0.1,
                   help="simulator seconds per envelope state step (REC..EPR, default 0.1)")
    p.add_argument("--faults", choices=["off", "on", "both"], default="both")
    p.add_argument("--warmup", type=float, default=1.0,
                   help="seconds to wait after every worker has joined the group (default 1)")
    p.add_argument("--drain-timeout", type=float, default=180.0)
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "load-latest.json"))
    args = p.parse_args()
    if not queue.RedisConnection(args.redis, connect_timeout_s=1).ping():
        print(f"load: Redis not reachable at {args.redis}", file=sys.stderr)
        return 2
    n = int(args.rate * args.seconds)
    runs = []
    with tempfile.TemporaryDirectory(prefix="dte-load-") as tmp:
        kit = testkit.write_kit(Path(tmp) / "kit", types=[33], folio_from=1, folio_to=2 * n + 10)
        for i, faults in enumerate([False, True] if args.faults == "both" else [args.faults == "on"]):
            t = time.time()
            envelopes = make_envelopes(kit, n, 1 + i * n)
            print(f"load: signed {n} envelopes in {time.time() - t:.1f} s; faults {'on' if faults else 'off'}: "
                  f"{args.workers} workers x {args.concurrency}, {args.rate:g} docs/s for {args.seconds:g} s",
                  file=sys.stderr, flush=True)
            runs.append(scenario(args, faults, kit, envelopes))
    report = {"when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "machine": platform.node(),
              "cpus": os.cpu_count(), "load_avg_at_end": os.getloadavg(), "args": vars(args), "runs": runs}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print("| faults | docs | finished | throughput accepted / final (docs/s) | upload accepted p50 / p95 / p99 (ms) "
          "| final state p50 / p95 / p99 (ms) | states | dead |")
    print("|---|---|---|---|---|---|---|---|")
    for r in runs:
        a, f = r["upload_accepted_ms"], r["final_state_ms"]
        print(f"| {'on' if r['faults'] else 'off'} | {r['documents']} | {r['finished']} | "
              f"{r['throughput_accepted_docs_s']} / {r['throughput_final_docs_s']} | "
              f"{a['p50']:.0f} / {a['p95']:.0f} / {a['p99']:.0f} | {f['p50']:.0f} / {f['p95']:.0f} / {f['p99']:.0f} | "
              f"{', '.join(f'{k} {v}' for k, v in sorted(r['states'].items()))} | {r['dead_letters']} |")
    print(f"load average at the end: {report['load_avg_at_end']}; written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
