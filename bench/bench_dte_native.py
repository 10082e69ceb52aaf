"""dte_native measured from Python: build + normalise + rules + TED + XMLDSig per document on one
thread and through the batch API on the core's pool, full verification (with and without XSD
validation), and resident memory over long batch runs.

It calls the public facade (dte_native.sign, sign_many, verify, Certificate, Caf, SiiKeyring,
SchemaSet) with a JSON text input per document, as an integrator would; signing checks the
CAF's SII signature (the facade's default, verify_caf=True) with the bench's "SII" key.

  bench_dte_native.py MATERIAL_DIR sign-one OUT.xml
  bench_dte_native.py MATERIAL_DIR bench SECONDS XSD_DIR SIGNED_FOR_VERIFY.xml
  bench_dte_native.py MATERIAL_DIR memory N_TOTAL [BATCH]
  bench_dte_native.py MATERIAL_DIR paired SECONDS ROUNDS   (signing ways interleaved with the floor)
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import material as material_mod  # noqa: E402
from timing import max_rss_kib, paired_ratios, rate, vm_rss_kib  # noqa: E402

import dte_native as dte  # noqa: E402

FOLIO_SPAN = 900_000


class Native:
    def __init__(self, material: dict):
        self.cert = dte.Certificate.from_pkcs12(Path(material["p12"]).read_bytes(),
                                                material_mod.P12_PASSWORD)
        self.caf = dte.Caf.parse(Path(material["caf"]).read_bytes())
        self.keyring = dte.SiiKeyring()
        self.keyring.add_pem(100, Path(material["sii_pub"]).read_text())
        self.template = json.loads(Path(material["factura"]).read_text("utf-8"))

    def input_json(self, folio: int) -> str:
        self.template["Encabezado"]["IdDoc"]["Folio"] = folio
        return json.dumps(self.template, ensure_ascii=False)

    def inputs(self, start: int, n: int) -> list[str]:
        return [self.input_json((start + k) % FOLIO_SPAN + 1) for k in range(n)]

    def sign_one(self, text: str):
        return dte.sign(text, self.caf, self.cert, keyring=self.keyring,
                        timestamp=material_mod.TIMESTAMP, today=material_mod.ISSUE_DATE)

    def sign_many(self, inputs: list[str], threads: int) -> list:
        out = dte.sign_many(inputs, self.caf, self.cert, keyring=self.keyring,
                            timestamp=material_mod.TIMESTAMP, today=material_mod.ISSUE_DATE,
                            threads=threads)
        bad = [o for o in out if not o.ok]
        if bad:
            raise RuntimeError(f"{len(bad)} of {len(out)} failed: {bad[0].error_code} "
                               f"{bad[0].error_message}")
        return out


def main(argv: list[str]) -> int:
    material = material_mod.generate(Path(argv[1]))
    native = Native(material)
    cmd = argv[2]
    if cmd == "sign-one":
        Path(argv[3]).write_bytes(native.sign_one(native.input_json(1)).xml)
        return 0
    if cmd == "bench":
        seconds = float(argv[3])
        schemas = dte.SchemaSet(argv[4])
        signed = Path(argv[5]).read_bytes()
        out: dict = {"layer": "dte_native facade (sign, sign_many, verify)"}
        batch = 256
        pool = native.inputs(0, batch)  # input texts made beforehand for every way, as for sign_many
        out["sign_one_call_per_doc"] = rate(lambda i: (native.sign_one(pool[i % batch]), 1)[1],
                                            seconds=seconds)
        for threads in (1, 2):
            out[f"sign_many_threads_{threads}"] = rate(
                lambda _i, t=threads: len(native.sign_many(pool, t)), seconds=seconds)
        for label, kw in (("verify_no_schema", {"check_schema": False}),
                          ("verify_with_schema", {"schema_set": schemas})):
            report = dte.verify(signed, keyring=native.keyring, **kw)
            checks = [(c.name, c.status) if hasattr(c, "status") else repr(c) for c in report.checks]
            if not report.ok:
                out[label] = {"error": "does not verify", "checks": checks}
                continue

            def step(_i: int, kw=kw) -> int:
                assert dte.verify(signed, keyring=native.keyring, **kw).ok
                return 1
            out[label] = rate(step, seconds=seconds)
            out[label]["checks"] = checks
        print(json.dumps(out, default=str))
        return 0
    if cmd == "paired":
        # The same three signing ways as "bench", each slice timed between two `openssl speed`
        # runs: the share of the floor without the machine's drift between far-apart timings.
        pool = native.inputs(0, 256)
        ways = {
            "sign_one_call_per_doc": (lambda i: (native.sign_one(pool[i % len(pool)]), 1)[1],
                                      "per_cpu_second"),
            "sign_many_threads_1": (lambda _i: len(native.sign_many(pool, 1)), "per_cpu_second"),
            "sign_many_threads_2": (lambda _i: len(native.sign_many(pool, 2)), "per_second"),
        }
        print(json.dumps(paired_ratios(ways, rounds=int(argv[4]), seconds=float(argv[3]))))
        return 0
    if cmd == "memory":
        total = int(argv[3])
        batch = int(argv[4]) if len(argv) > 4 else 1000
        points = []
        done = 0
        marks = {1000, 10_000, 50_000, 100_000, total}
        while done < total:
            native.sign_many(native.inputs(done, batch), 2)
            done += batch
            if done in marks or done == batch:
                points.append({"docs": done, "vm_rss_kib": vm_rss_kib(), "max_rss_kib": max_rss_kib()})
        print(json.dumps({"batch": batch, "threads": 2, "points": points}))
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
