"""Small timing helpers shared by the contenders (each runs in its own process and venv)."""
from __future__ import annotations

import os
import resource
import statistics
import time
from typing import Callable


def vm_rss_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def max_rss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def rate(step: Callable[[int], int], seconds: float = 3.0, reps: int = 3,
         warmup: int = 1) -> dict:
    """Calls step(i) (which does some documents and returns how many) repeatedly for about
    `seconds` per repetition; returns documents/s per repetition, their median and best.
    i counts documents across calls so callers can use it as a folio."""
    i = 0
    for _ in range(warmup):
        i += step(i)
    per_rep = []
    for _ in range(reps):
        done = 0
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        while True:
            n = step(i)
            i += n
            done += n
            elapsed = time.perf_counter() - t0
            if elapsed >= seconds:
                break
        cpu = time.process_time() - cpu0
        per_rep.append({"docs": done, "seconds": round(elapsed, 4), "cpu_seconds": round(cpu, 4),
                        "per_second": round(done / elapsed, 1),
                        "per_cpu_second": round(done / cpu, 1) if cpu > 0 else None})
    rates = [r["per_second"] for r in per_rep]
    cpu_rates = [r["per_cpu_second"] for r in per_rep if r["per_cpu_second"]]
    # On a shared machine wall-clock rates fall with other people's load; documents per CPU
    # second of this process (all its threads) do not, and compare with `openssl speed`, whose
    # divisor is CPU user time too.
    return {"median": round(statistics.median(rates), 1), "best": max(rates),
            "median_per_cpu_second": round(statistics.median(cpu_rates), 1) if cpu_rates else None,
            "reps": per_rep,
            "loadavg_after": [round(x, 2) for x in os.getloadavg()]}
