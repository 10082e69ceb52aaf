"""Benchmark driver: the machine's RSA floor, dte_native, the Python way and the PyPI peers, all in
ONE run on the same document and keys. Each contender runs in its own process (and venv, see
bench/run); this driver collects their JSON, prints a table and writes bench/results/latest.json.

Rates are documents per second. Two are given for each single-threaded measurement:
  * wall: documents / elapsed time (what a user sees, but it falls when other work shares the CPUs);
  * per CPU second: documents / CPU time of the measuring process. `openssl speed` divides by
    CPU user time as well, so this is the figure compared with the floor.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
import material as material_mod  # noqa: E402
from timing import openssl_speed  # noqa: E402

XSD_DIR = os.environ.get("DTE_XSD_DIR", str(ROOT.parent / "shared" / "sii" / "xsd"))


def rel(path: Path) -> str:
    """A path as the results record it: relative to the checkout when inside it."""
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def sh(cmd: list[str], check: bool = True, timeout: float | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=timeout)


def worker(python: str, script: str, *args: str, timeout: float = 1800) -> dict:
    p = subprocess.run([python, str(HERE / script), *args], capture_output=True, text=True,
                       timeout=timeout)
    if p.returncode != 0:
        return {"error": f"exit {p.returncode}: {(p.stderr or p.stdout).strip()[-1500:]}"}
    try:
        return json.loads(p.stdout.strip().splitlines()[-1]) if p.stdout.strip() else {}
    except json.JSONDecodeError:
        return {"error": f"unparsable output: {p.stdout[-500:]}"}


def machine() -> dict:
    cpu = ""
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "nproc": int(sh(["nproc"]).stdout.strip()),
        "cpu_model": cpu,
        "openssl": sh(["openssl", "version"]).stdout.strip(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def floor(seconds: int) -> dict:
    # rsa1024 only feeds the verification floor (SII's CAF key); the signing floor is the
    # brief's `openssl speed -seconds 3 rsa2048 rsa512`.
    rates = openssl_speed(seconds, "rsa2048", "rsa512", "rsa1024")
    s2048, s512 = rates[2048]["sign_per_s"], rates[512]["sign_per_s"]
    v2048, v1024, v512 = (rates[b]["verify_per_s"] for b in (2048, 1024, 512))
    return {
        "openssl_speed": rates,
        # One XMLDSig (RSA-2048) + one TED (RSA-512) private-key operation per document.
        "sign_docs_per_s": round(1 / (1 / s2048 + 1 / s512), 1),
        # Verifying is public-key work only: XMLDSig (2048) + TED FRMT (512) + CAF FRMA (1024).
        "verify_docs_per_s_rsa_only": round(1 / (1 / v2048 + 1 / v512 + 1 / v1024), 1),
        "divisor": "CPU user time (openssl speed default)",
    }


def cpp_bench(exe: Path, factura: str, n: int) -> dict:
    """The core's own benchmark (bench/cpp/bench_core.cpp): sign_many and verify_document from
    C++, wall-clock, its own testkit material of the same key sizes, our factura as input."""
    out: dict = {"source": "bench/cpp/bench_core.cpp", "n": n, "divisor": "wall clock"}
    for mode in ("sign1", "sign2", "paired", "verify", "verify-schema"):
        before = os.getloadavg()[0]
        p = sh([str(exe), "--n", str(n), "--mode", mode, "--input", factura], check=False,
               timeout=1800)
        lines = [ln for ln in p.stdout.splitlines() if "docs/s" in ln or ln.startswith("paired")]
        if p.returncode != 0 or not lines:
            out[mode] = {"error": (p.stderr or p.stdout).strip()[-500:]}
            continue
        if mode == "paired":
            m = re.search(r"median ([\d.]+)% \(quartiles ([\d.]+)%-([\d.]+)%\)", lines[-1])
            out[mode] = {"median_ratio": round(float(m.group(1)) / 100, 3),
                         "quartiles": [round(float(m.group(2)) / 100, 3),
                                       round(float(m.group(3)) / 100, 3)],
                         "line": lines[-1].strip()} if m else {"error": lines[-1].strip()}
            continue
        m = re.search(r"([\d.]+) docs/s", lines[-1])
        out[mode] = {"per_second": float(m.group(1)), "line": lines[-1].strip(),
                     "loadavg_before": round(before, 2)}
    return out


def xmlsec1_verifies(path: Path) -> bool:
    if not shutil.which("xmlsec1"):
        return False
    return sh(["xmlsec1", "--verify", "--id-attr:ID", "Documento", str(path)], check=False).returncode == 0


def xmllint_valid(path: Path) -> bool:
    return sh(["xmllint", "--noout", "--schema", str(Path(XSD_DIR) / "DTE_v10.xsd"), str(path)],
              check=False).returncode == 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seconds", type=float, default=3.0, help="seconds per repetition (3 reps)")
    ap.add_argument("--memory-docs", type=int, default=10_000,
                    help="documents signed for the RSS check (use 100000 for the full check)")
    ap.add_argument("--venvs", default=str(ROOT / "build" / "bench-venv"))
    ap.add_argument("--work", default=str(ROOT / "build" / "bench-data"))
    ap.add_argument("--out", default=str(HERE / "results" / "latest.json"))
    ap.add_argument("--cpp-bench", default=str(ROOT / "build" / "bench-cpp" / "dte_bench"))
    ap.add_argument("--cpp-docs", type=int, default=3000, help="documents per dte_bench mode")
    ap.add_argument("--paired-rounds", type=int, default=8,
                    help="rounds of floor/sign slices (1 s each) for the drift-free ratios")
    ap.add_argument("--only", default="", help="comma list: floor,native,python,facturacion,cl_sii")
    args = ap.parse_args()
    only = set(filter(None, args.only.split(",")))
    want = lambda k: not only or k in only  # noqa: E731

    venvs = Path(args.venvs)
    core_py = str(venvs / "core" / "bin" / "python")
    fe_py = str(venvs / "facturacion" / "bin" / "python")
    clsii_py = str(venvs / "cl-sii" / "bin" / "python")
    work = Path(args.work)
    mat_dir = work / "material"
    material = material_mod.generate(mat_dir)
    secs = str(args.seconds)
    res: dict = {"machine": machine(), "document": "factura 33, 5 lines (bench/material.py)",
                 "seconds_per_rep": args.seconds, "reps": 3}

    if want("floor"):
        print("floor: openssl speed -seconds 3 rsa2048 rsa512 ...", flush=True)
        res["floor"] = floor(3)

    # Signed samples: each signer's output must verify with xmlsec1 and validate with xmllint.
    samples: dict[str, Path] = {}
    pw_xml = work / "signed-python-way.xml"
    if sh([core_py, str(HERE / "python_way.py"), str(mat_dir), "sign", "1", str(pw_xml)],
          check=False).returncode == 0:
        samples["python_way"] = pw_xml
    native_ok = sh([core_py, "-c", "import dte_native._core"], check=False).returncode == 0
    nat_xml = work / "signed-dte-native.xml"
    if native_ok:
        p = sh([core_py, str(HERE / "bench_dte_native.py"), str(mat_dir), "sign-one", str(nat_xml)],
               check=False)
        if p.returncode == 0:
            samples["dte_native"] = nat_xml
        else:
            res["dte_native_error"] = p.stderr.strip()[-1500:]
    res["samples"] = {k: {"path": rel(v), "xmlsec1_verify": xmlsec1_verifies(v),
                          "xmllint_schema_valid": xmllint_valid(v)} for k, v in samples.items()}
    verify_doc = samples.get("dte_native", samples.get("python_way"))
    res["verified_document"] = rel(verify_doc) if verify_doc is not None else "None"

    if want("native"):
        if "dte_native" in samples:
            print("dte_native: sign / batch / verify ...", flush=True)
            res["dte_native"] = worker(core_py, "bench_dte_native.py", str(mat_dir), "bench", secs,
                                       XSD_DIR, str(verify_doc))
            print(f"dte_native: signing interleaved with the floor, {args.paired_rounds} rounds ...",
                  flush=True)
            res["dte_native"]["paired"] = worker(core_py, "bench_dte_native.py", str(mat_dir),
                                                 "paired", "1", str(args.paired_rounds))
            print(f"dte_native: memory over {args.memory_docs} documents ...", flush=True)
            res["dte_native"]["memory"] = worker(core_py, "bench_dte_native.py", str(mat_dir),
                                                 "memory", str(args.memory_docs))
        else:
            res["dte_native"] = {"error": res.get("dte_native_error",
                                                  "dte_native._core is not importable in the bench venv")}
    if want("native"):
        cpp = Path(args.cpp_bench)
        if cpp.exists():
            print("dte_native C++ core without Python (bench/cpp, dte_bench) ...", flush=True)
            res["dte_native_cpp"] = cpp_bench(cpp, material["factura"], args.cpp_docs)
        else:
            res["dte_native_cpp"] = {"error": f"{cpp} not built (bench/run builds it)"}
    if want("python"):
        print("python way: sign / verify ...", flush=True)
        res["python_way"] = {
            "sign": worker(core_py, "python_way.py", str(mat_dir), "bench-sign", secs),
            "verify_no_schema": worker(core_py, "python_way.py", str(mat_dir), "bench-verify", secs,
                                       str(verify_doc)),
            "verify_with_schema": worker(core_py, "python_way.py", str(mat_dir), "bench-verify",
                                         secs, str(verify_doc), XSD_DIR),
        }
    if want("facturacion"):
        print("facturacion-electronica: timbrar / verificar_firma_xml ...", flush=True)
        fe_xml = work / "signed-facturacion.xml"
        if Path(fe_py).exists():
            res["facturacion_electronica"] = {
                "version": sh([fe_py, "-m", "pip", "show", "facturacion-electronica"],
                              check=False).stdout.split("Version: ")[-1].split("\n")[0],
                "sign_verify_true": worker(fe_py, "peer_facturacion.py", str(mat_dir), "bench-sign",
                                           secs, "1", str(fe_xml)),
                "sign_verify_false": worker(fe_py, "peer_facturacion.py", str(mat_dir), "bench-sign",
                                            secs, "0"),
                "verify_signature_only": worker(fe_py, "peer_facturacion.py", str(mat_dir),
                                                "bench-verify", secs, str(verify_doc)),
            }
            if "error" in res["facturacion_electronica"]["verify_signature_only"] and fe_xml.exists():
                # Its verifier rejects signatures other signers make (see BENCHMARKS.md): time
                # it on its own output too, so the table still shows its speed.
                res["facturacion_electronica"]["verify_signature_only_own_output"] = worker(
                    fe_py, "peer_facturacion.py", str(mat_dir), "bench-verify", secs, str(fe_xml))
            if fe_xml.exists():
                res["samples"]["facturacion_electronica"] = {
                    "path": rel(fe_xml), "xmlsec1_verify": xmlsec1_verifies(fe_xml),
                    "xmllint_schema_valid": xmllint_valid(fe_xml)}
        else:
            res["facturacion_electronica"] = {"error": f"{fe_py} missing (bench/run installs it)"}
    if want("cl_sii"):
        print("cl-sii: verify_xml_signature / parse ...", flush=True)
        if Path(clsii_py).exists():
            r = worker(clsii_py, "peer_cl_sii.py", str(mat_dir), "bench-verify", secs, str(verify_doc))
            r["version"] = sh([clsii_py, "-m", "pip", "show", "cl-sii"],
                              check=False).stdout.split("Version: ")[-1].split("\n")[0]
            res["cl_sii"] = r
        else:
            res["cl_sii"] = {"error": f"{clsii_py} missing (bench/run installs it)"}

    res["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1, default=str) + "\n", "utf-8")
    print_table(res)
    print(f"\nwritten: {args.out}")
    return 0


def _get(d: dict, *path: str):
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d


def print_table(res: dict) -> None:
    fl = res.get("floor", {})
    f_sign = fl.get("sign_docs_per_s")
    rows = [
        ("floor: 1 RSA-2048 + 1 RSA-512 sign", ("floor", "sign_docs_per_s"), None),
        ("dte_native sign, 1 call/doc, 1 thread", ("dte_native", "sign_one_call_per_doc"), "sign"),
        ("dte_native sign_many threads=1", ("dte_native", "sign_many_threads_1"), "sign"),
        ("dte_native sign_many threads=2", ("dte_native", "sign_many_threads_2"), "sign"),
        ("Python way sign (lxml+cryptography+xmlsec)", ("python_way", "sign"), "sign"),
        ("facturacion-electronica timbrar verify=True", ("facturacion_electronica", "sign_verify_true"), "sign"),
        ("facturacion-electronica timbrar verify=False", ("facturacion_electronica", "sign_verify_false"), "sign"),
        ("dte_native verify (sig+TED+CAF), no XSD", ("dte_native", "verify_no_schema"), "verify"),
        ("dte_native verify + XSD", ("dte_native", "verify_with_schema"), "verify"),
        ("Python way verify (sig+TED+CAF), no XSD", ("python_way", "verify_no_schema"), "verify"),
        ("Python way verify + XSD", ("python_way", "verify_with_schema"), "verify"),
        ("cl-sii verify_xml_signature (sig only)", ("cl_sii", "signature"), "verify"),
        ("cl-sii sig + XSD + parse_dte_xml", ("cl_sii", "signature_schema_parse"), "verify"),
        ("facturacion-electronica verificar_firma_xml", ("facturacion_electronica", "verify_signature_only"), "verify"),
        ("  same, on its own signed output", ("facturacion_electronica", "verify_signature_only_own_output"), "verify"),
    ]
    cpp = res.get("dte_native_cpp") or {}
    for mode, label in (("sign1", "C++ core sign_many threads=1 (no Python)"),
                        ("sign2", "C++ core sign_many threads=2 (no Python)"),
                        ("verify", "C++ core verify_document, no XSD"),
                        ("verify-schema", "C++ core verify_document + XSD")):
        if isinstance(cpp.get(mode), dict) and "per_second" in cpp[mode]:
            res.setdefault("_cpp_rows", []).append((label, cpp[mode]["per_second"],
                                                    mode.startswith("sign")))
    print(f"\n{'contender':48} {'wall/s':>10} {'per CPU-s':>10} {'vs floor':>9}")
    for label, path, kind in rows:
        v = _get(res, *path)
        if v is None:
            continue
        if isinstance(v, (int, float)):
            print(f"{label:48} {v:>10.1f}")
            continue
        if "error" in v:
            print(f"{label:48} {'ERROR: ' + str(v['error'])[:60]}")
            continue
        cpu = v.get("median_per_cpu_second")
        ratio = ""
        if kind == "sign" and f_sign and cpu:
            ratio = f"{cpu / f_sign:8.2f}x"
        print(f"{label:48} {v['median']:>10.1f} {cpu if cpu else '':>10} {ratio:>9}")
    for label, v, is_sign in res.pop("_cpp_rows", []):
        ratio = f"{v / f_sign:8.2f}x" if is_sign and f_sign else ""
        print(f"{label:48} {v:>10.1f} {'':>10} {ratio:>9}")
    paired = [(f"dte_native {label}", _get(res, "dte_native", "paired", key))
              for label, key in (("sign, 1 call/doc", "sign_one_call_per_doc"),
                                 ("sign_many threads=1", "sign_many_threads_1"),
                                 ("sign_many threads=2 (wall)", "sign_many_threads_2"))]
    paired.append(("C++ core sign_many threads=1 (in-process floor)", _get(cpp, "paired")))
    if any(isinstance(v, dict) and "median_ratio" in v for _, v in paired):
        print("\nshare of the floor with floor and signing interleaved (median of slices, quartiles):")
        for label, v in paired:
            if isinstance(v, dict) and "median_ratio" in v:
                lo, hi = v["quartiles"]
                print(f"  {label:50} {v['median_ratio']:5.2f}x  ({lo:.2f}-{hi:.2f})")
    mem = _get(res, "dte_native", "memory", "points")
    if mem:
        print("\ndte_native RSS (sign_many, batches of 1000, 2 threads):")
        for p in mem:
            print(f"  after {p['docs']:>7} docs: VmRSS {p['vm_rss_kib'] / 1024:.1f} MiB, "
                  f"max RSS {p['max_rss_kib'] / 1024:.1f} MiB")
    m = res["machine"]
    print(f"\nload average start {m['loadavg_at_start']} end {m.get('loadavg_at_end')}"
          f" on {m['nproc']} CPUs ({m['cpu_model']}, {m['openssl']})")


if __name__ == "__main__":
    sys.exit(main())
