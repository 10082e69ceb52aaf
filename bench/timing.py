"""Small timing helpers shared by the contenders (each runs in its own process and venv)."""
from __future__ import annotations

import os
import re
import resource
import statistics
import subprocess
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


def openssl_speed(seconds: float, *algorithms: str) -> dict[int, dict[str, float]]:
    """`openssl speed -seconds S rsaN...`: {bits: {"sign_per_s", "verify_per_s"}} (openssl
    divides by the CPU user time of its own process)."""
    out = subprocess.run(["openssl", "speed", "-seconds", str(seconds), *algorithms],
                         capture_output=True, text=True, check=True,
                         timeout=60 + 20 * seconds * len(algorithms)).stdout
    rates = {}
    for m in re.finditer(r"^rsa\s+(\d+)\s+bits\s+\S+\s+\S+\s+([\d.]+)\s+([\d.]+)", out, re.M):
        rates[int(m.group(1))] = {"sign_per_s": float(m.group(2)), "verify_per_s": float(m.group(3))}
    return rates


def signing_floor(seconds: float = 1) -> float:
    """Documents per CPU second if a document cost only its two private-key operations: one
    RSA-2048 (XMLDSig) and one RSA-512 (TED) signature, as `openssl speed` times them now."""
    r = openssl_speed(seconds, "rsa2048", "rsa512")
    return 1 / (1 / r[2048]["sign_per_s"] + 1 / r[512]["sign_per_s"])


def paired_ratios(ways: dict[str, tuple[Callable[[int], int], str]], rounds: int,
                  seconds: float) -> dict:
    """The share of the signing floor each way reaches, measured so that the machine's drift
    cancels: floor and ways alternate, F W1 W2 .. F .. W2 W1 F .., and each way's slice is
    compared with the mean of the floors timed just before and just after it. `ways` maps a name
    to (step, figure), figure "per_cpu_second" or "per_second" (wall, for several threads).
    Returns per way the median ratio, the quartiles and every ratio."""
    names = list(ways)
    floors = [signing_floor()]
    slices: list[tuple[str, float, int]] = []  # (way, rate, index of the floor before it)
    for r in range(rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            step, figure = ways[name]
            res = rate(step, seconds=seconds, reps=1, warmup=1 if r < 2 else 0)
            got = res["reps"][0][figure]
            if got:
                slices.append((name, got, len(floors) - 1))
        floors.append(signing_floor())
    out: dict = {"rounds": rounds, "seconds_per_slice": seconds,
                 "floors_docs_per_cpu_s": [round(f, 1) for f in floors]}
    for name in names:
        ratios = sorted(got / ((floors[k] + floors[k + 1]) / 2)
                        for n, got, k in slices if n == name)
        if not ratios:
            continue
        q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
        out[name] = {"figure": ways[name][1], "median_ratio": round(statistics.median(ratios), 3),
                     "quartiles": [round(q[0], 3), round(q[2], 3)],
                     "ratios": [round(x, 3) for x in ratios]}
    return out
