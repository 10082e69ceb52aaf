"""`dte demo`: the main job on the embedded default, with nothing external.

It makes test material (a test "SII" CAF-signing key, CAFs signed by it, a signer
certificate), signs a batch of documents of every type on the core's thread pool, wraps them
in EnvioDTE / EnvioBOLETA envelopes, validates every envelope against SII's schemas and
verifies every signature, TED and CAF; then it starts the local SII simulator, sends the
documents through the C++ SII client, polls every track id to its final state and prints a
summary.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import random
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TextIO

from . import _api
from ._types import SignedDte
from .testkit import TestKit, write_kit

# A realistic mix: mostly invoices and boletas, some notes, guías and exports.
DEFAULT_MIX: dict[int, int] = {33: 40, 39: 20, 34: 6, 41: 4, 52: 6, 61: 8, 56: 3, 46: 3, 43: 2,
                               110: 4, 111: 2, 112: 2}
NOTE_TYPES = {56: 33, 61: 33, 111: 110, 112: 110}  # note type -> type of the document it amends
ENVELOPE_MAX = {False: 2000, True: 500}           # SII's limits per EnvioDTE / EnvioBOLETA


class Progress:
    """A plain progress bar on a terminal; one line per stage otherwise."""

    def __init__(self, label: str, total: int, stream: TextIO = sys.stderr) -> None:
        self.label, self.total, self.stream = label, max(total, 1), stream
        self.done = 0
        self.tty = stream.isatty()
        self.started = time.perf_counter()

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self.tty:
            width = 30
            filled = int(width * self.done / self.total)
            self.stream.write(f"\r  {self.label:<22} [{'#' * filled}{'.' * (width - filled)}] "
                              f"{self.done}/{self.total}")
            self.stream.flush()

    def finish(self) -> float:
        elapsed = time.perf_counter() - self.started
        if self.tty:
            self.stream.write("\n")
        else:
            self.stream.write(f"  {self.label:<22} {self.done}/{self.total} in {elapsed:.2f} s\n")
        self.stream.flush()
        return elapsed


@dataclass
class DemoResult:
    documents: int = 0
    signed: int = 0
    sign_errors: list[str] = field(default_factory=list)
    sign_seconds: float = 0.0
    by_type: dict[int, int] = field(default_factory=dict)
    envelopes: list[dict[str, Any]] = field(default_factory=list)
    verify_seconds: float = 0.0
    sent: bool = False
    simulator_url: str = ""
    uploads: int = 0
    upload_errors: list[str] = field(default_factory=list)
    outcome: dict[str, int] = field(default_factory=dict)   # accepted / objections / rejected / pending
    send_seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)    # per document, upload -> final state
    rejections: list[str] = field(default_factory=list)     # the simulator's reasons
    # CPU seconds of this process (every thread: the core's pool, the C++ client and the in-process
    # simulator) for the whole run and for the sending phase, and the load average at the end:
    # the machine is shared, so wall time alone says little (BENCHMARKS.md).
    cpu_seconds: float = 0.0
    send_cpu_seconds: float = 0.0
    load_average: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @property
    def ok(self) -> bool:
        checked = (not self.sign_errors and self.signed == self.documents
                   and all(e["schema_valid"] is not False and e["verified"] for e in self.envelopes))
        if not self.sent:
            return checked
        return (checked and not self.upload_errors
                and self.outcome.get("accepted", 0) + self.outcome.get("objections", 0) == self.signed)


def plan_types(count: int, mix: dict[int, int], rng: random.Random) -> list[int]:
    """Types for `count` documents in proportion to `mix`, every type at least once when the
    batch is large enough, amended documents before the notes that reference them."""
    types = list(mix) if count >= len(mix) else []
    weights = list(mix.values())
    types += rng.choices(list(mix), weights=weights, k=count - len(types))
    rng.shuffle(types)
    # Notes go last so that they can reference a document of the same batch.
    return sorted(types, key=lambda t: t in NOTE_TYPES)


def make_document(doc_type: int, folio: int, issuer_rut: str, today: str, rng: random.Random,
                  earlier: dict[int, list[tuple[int, str]]]) -> dict[str, Any]:
    """A variation of the shipped example of `doc_type` with its own folio and amounts."""
    doc = copy.deepcopy(_api.example(doc_type))
    head = doc["Encabezado"]
    head["IdDoc"]["Folio"] = folio
    head["IdDoc"]["FchEmis"] = today
    head["Emisor"]["RUTEmisor"] = issuer_rut
    if doc_type not in (110, 111, 112):  # exports keep their currency fields in Totales
        head.pop("Totales", None)
    lines = doc["Detalle"] if isinstance(doc["Detalle"], list) else [doc["Detalle"]]
    for line in lines:
        if "QtyItem" in line and "PrcItem" in line and line["PrcItem"]:
            line["QtyItem"] = rng.randint(1, 12)
            price = float(line["PrcItem"])
            line["PrcItem"] = round(price * rng.uniform(0.8, 1.2), 2 if price < 1000 else 0)
            if line["PrcItem"] == int(line["PrcItem"]):
                line["PrcItem"] = int(line["PrcItem"])
        line.pop("MontoItem", None)
    doc["Detalle"] = lines
    target_type = NOTE_TYPES.get(doc_type)
    if target_type and earlier.get(target_type):
        ref_folio, ref_date = rng.choice(earlier[target_type])
        refs = doc.get("Referencia") or []
        refs = refs if isinstance(refs, list) else [refs]
        for ref in refs:
            if str(ref.get("TpoDocRef")) == str(target_type):
                ref["FolioRef"] = str(ref_folio)
                ref["FchRef"] = ref_date
        doc["Referencia"] = refs
    return doc


def run_demo(count: int = 200, threads: int = 0, out_dir: Path | None = None,
             seed: int = 2026, progress: bool = True,
             on_stage: Callable[[str], None] | None = None, send: bool = True,
             per_envelope: int = 50) -> DemoResult:
    rng = random.Random(seed)
    cpu_started = time.process_time()
    say = on_stage or (lambda s: print(s, file=sys.stderr))
    work = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix="dte-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    result = DemoResult(documents=count)

    say(f"1. Test material in {work}/kit (test SII key, CAFs for every type, certificate)")
    kit: TestKit = write_kit(work / "kit", folio_to=max(100, count + 10))
    cert = kit.certificate()
    keyring = kit.keyring()
    cafs = [kit.caf(t) for t in sorted(kit.caf_paths)]

    say(f"2. Signing {count} documents (build, rules, TED, XMLDSig) on the core's thread pool")
    today = _api.today_in_chile()
    types = plan_types(count, DEFAULT_MIX, rng)
    next_folio: Counter[int] = Counter()
    earlier: dict[int, list[tuple[int, str]]] = {}
    documents = []
    for t in types:
        next_folio[t] += 1
        documents.append(make_document(t, next_folio[t], kit.issuer_rut, today, rng, earlier))
        if t not in NOTE_TYPES:
            earlier.setdefault(t, []).append((next_folio[t], today))
    bar = Progress("signing", count) if progress else None
    signed: list[SignedDte] = []
    chunk = 50
    started = time.perf_counter()
    for i in range(0, count, chunk):
        outcomes = _api.sign_many(documents[i:i + chunk], cafs, cert, keyring=keyring,
                                  threads=threads)
        for o in outcomes:
            if o.ok and o.dte is not None:
                signed.append(o.dte)
            else:
                result.sign_errors.append(f"{o.error_code}: {o.error_message}")
        if bar:
            bar.advance(len(outcomes))
    result.sign_seconds = time.perf_counter() - started
    if bar:
        bar.finish()
    result.signed = len(signed)
    result.by_type = dict(sorted(Counter(d.doc_type for d in signed).items()))
    (work / "dte").mkdir(exist_ok=True)
    for d in signed:
        (work / "dte" / f"{d.id}.xml").write_bytes(d.xml)

    say("3. Envelopes: EnvioDTE (for SII, RutReceptor 60803000-K) and EnvioBOLETA")
    groups: dict[bool, list[SignedDte]] = {False: [], True: []}
    for d in signed:
        groups[_api.is_boleta(d.doc_type)].append(d)
    envelopes: list[tuple[str, bytes]] = []
    for boleta, docs in groups.items():
        limit = ENVELOPE_MAX[boleta]
        for n, start in enumerate(range(0, len(docs), limit), 1):
            name = f"{'EnvioBOLETA' if boleta else 'EnvioDTE'}-{n}.xml"
            xml = _api.envelope(docs[start:start + limit], cert, boleta=boleta)
            (work / name).write_bytes(xml)
            envelopes.append((name, xml))

    say("4. Independent checks of every envelope: SII schema, signatures, TED, CAF")
    schema_set = _api.default_schema_set()
    if schema_set is None:  # a wheel built without ../shared/sii/xsd and no DTE_XSD_DIR
        say("   (no XSD folder: the schema check is skipped; see docs/SCHEMAS.md)")
    bar = Progress("validating+verifying", len(envelopes)) if progress else None
    started = time.perf_counter()
    for name, xml in envelopes:
        validation = schema_set.validate(xml) if schema_set is not None else None
        report = _api.verify(xml, keyring=keyring)
        failures = [f"{c.name} {c.subject}: {c.reason}" for c in report.failures]
        result.envelopes.append({
            "file": name, "documents": len(report.documents), "bytes": len(xml),
            "schema_valid": validation.valid if validation is not None else None,  # None: no XSDs
            "schema_errors": [f"line {e.line} {e.path}: {e.message}"
                              for e in (validation.errors if validation is not None else [])][:5],
            "verified": report.ok, "checks": len(report.checks), "failures": failures[:10],
        })
        if bar:
            bar.advance()
    result.verify_seconds = time.perf_counter() - started
    if bar:
        bar.finish()
    if send:
        send_to_simulator(result, signed, kit, per_envelope, progress, say)
    result.cpu_seconds = time.process_time() - cpu_started
    result.load_average = os.getloadavg()
    return result


def send_to_simulator(result: DemoResult, signed: list[SignedDte], kit: TestKit, per_envelope: int,
                      progress: bool, say: Callable[[str], None]) -> None:
    """Starts the local SII simulator (trusting the kit's test SII key), uploads envelopes of
    `per_envelope` documents through the C++ client, and polls every track id to a final state.
    Notes go in a second wave: SII refuses a note whose referenced document it has not accepted."""
    from . import sii
    from .simulator import Simulator

    sim = Simulator(port=0, xsd_dir=_api.schema_dir(), sii_keys=kit.sii_keys_dir,
                    config={"step_delay_s": 0.1})
    result.simulator_url = sim.start()
    result.sent = True
    say(f"5. Sending to the local SII simulator at {result.simulator_url} "
        f"(seed/token, DTEUpload and boleta REST, status polling)")
    cert = kit.certificate()   # loaded once: every envelope below is signed with it
    client = sii.SiiClient(cert, sii.ClientConfig("simulator", base_url=result.simulator_url))
    outcome: Counter[str] = Counter()
    bar = Progress("sent and final", len(signed)) if progress else None
    started = time.perf_counter()
    cpu_started = time.process_time()
    try:
        waves = [[d for d in signed if d.doc_type not in NOTE_TYPES],
                 [d for d in signed if d.doc_type in NOTE_TYPES]]
        for wave in waves:
            batches: list[tuple[bytes, bool, int]] = []
            for boleta in (False, True):
                docs = [d for d in wave if _api.is_boleta(d.doc_type) == boleta]
                for i in range(0, len(docs), per_envelope):
                    part = docs[i:i + per_envelope]
                    batches.append((_api.envelope(part, cert, boleta=boleta), boleta, len(part)))
            sent_at = time.perf_counter()
            uploads = client.upload_many([(env, kit.issuer_rut) for env, _, _ in batches])
            pending: dict[str, tuple[bool, int]] = {}
            for (env, boleta, n), up in zip(batches, uploads):
                result.uploads += 1
                if up.ok and up.value is not None and up.value.track_id:
                    pending[up.value.track_id] = (boleta, n)
                else:
                    result.upload_errors.append(f"{up.error_kind} {up.error_code}: {up.error_message}")
            while pending:
                for boleta in (False, True):
                    ids = [t for t, (b, _) in pending.items() if b == boleta]
                    if not ids:
                        continue
                    for track_id, st in zip(ids, client.status_many([(t, kit.issuer_rut) for t in ids],
                                                                    boleta=boleta)):
                        if st.value is None or not st.value.final:
                            continue
                        _, n = pending.pop(track_id)
                        tally_outcome(st.value, n, outcome)
                        result.latencies += [time.perf_counter() - sent_at] * n
                        if bar:
                            bar.advance(n)
                if pending:
                    time.sleep(0.05)
        # What SII "has" says why: QueryEstUp gives counts only (SII e-mails the reasons).
        for doc in sim.state()["documents"]:
            if doc.get("state") not in ("accepted", "DOK", "ACEPTADO") and doc.get("errors"):
                result.rejections.append(f"T{doc.get('tipo')}F{doc.get('folio')}: "
                                         + "; ".join(map(str, doc["errors"]))[:200])
    finally:
        sim.stop()
    result.send_seconds = time.perf_counter() - started
    result.send_cpu_seconds = time.process_time() - cpu_started
    if bar:
        bar.finish()
    result.outcome = dict(outcome)


def tally_outcome(status: Any, documents: int, outcome: Counter[str]) -> None:
    """Per-document verdicts of a final envelope status: SII reports counts per type."""
    if status.state == "rejected" and not status.counts:
        outcome["rejected"] += documents  # the envelope itself was refused (schema, signature...)
        return
    informed = sum(c.informed for c in status.counts) or documents
    rejected = sum(c.rejected for c in status.counts)
    objections = sum(c.objections for c in status.counts)
    outcome["rejected"] += rejected
    outcome["objections"] += objections
    outcome["accepted"] += informed - rejected - objections


def print_summary(result: DemoResult, stream: TextIO = sys.stdout) -> None:
    w = stream.write
    w("\nSummary\n")
    rate = result.signed / result.sign_seconds if result.sign_seconds else 0.0
    w(f"  signed      {result.signed}/{result.documents} documents in {result.sign_seconds:.2f} s"
      f" ({rate:.0f}/s)\n")
    w("  by type     " + ", ".join(f"{t}: {n}" for t, n in result.by_type.items()) + "\n")
    for e in result.envelopes:
        status = "OK" if e["schema_valid"] is not False and e["verified"] else "FAILED"
        schema = {True: "valid", False: "INVALID", None: "not checked"}[e["schema_valid"]]
        w(f"  {e['file']:<18} {e['documents']:>5} DTEs  {e['bytes'] / 1024:>8.1f} KiB  "
          f"schema {schema}, "
          f"{e['checks']} checks {'passed' if e['verified'] else 'FAILED'}  {status}\n")
        for line in e["schema_errors"] + e["failures"]:
            w(f"      {line}\n")
    for err in result.sign_errors[:10]:
        w(f"  sign error: {err}\n")
    if result.sent:
        lat = sorted(result.latencies)
        def pct(p: float) -> float:
            return lat[min(len(lat) - 1, int(p * len(lat)))] if lat else 0.0
        w(f"  simulator   {result.uploads} uploads to {result.simulator_url} in {result.send_seconds:.2f} s; "
          + ", ".join(f"{k}: {v}" for k, v in sorted(result.outcome.items())) + "\n")
        w(f"  latency     upload -> final state per document: p50 {pct(0.5):.2f} s, "
          f"p95 {pct(0.95):.2f} s, p99 {pct(0.99):.2f} s\n")
        w(f"  cpu         {result.cpu_seconds:.2f} CPU-s in all ({result.send_cpu_seconds:.2f} sending), "
          f"load average {result.load_average[0]:.2f}\n")
        for err in result.upload_errors[:10]:
            w(f"  upload error: {err}\n")
        for why in result.rejections[:10]:
            w(f"  rejected    {why}\n")
    done = ("All documents signed, enveloped, schema-valid, verified"
            + (" and accepted by the simulator." if result.sent else "."))
    w(f"\n{done if result.ok else 'FAILED'}\n")


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = parser or argparse.ArgumentParser(prog="dte demo", description=__doc__)
    p.add_argument("--count", type=int, default=200, help="documents to sign (default 200)")
    p.add_argument("--threads", type=int, default=0, help="signing threads (0 = every core)")
    p.add_argument("--out", type=Path, help="keep the material and output here (default: temp dir)")
    p.add_argument("--seed", type=int, default=2026, help="random seed for the documents")
    p.add_argument("--no-send", action="store_true",
                   help="stop after the local checks (do not start the simulator and send)")
    p.add_argument("--per-envelope", type=int, default=50, help="documents per envelope sent (default 50)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    return p


def main(args: argparse.Namespace) -> int:
    result = run_demo(args.count, args.threads, args.out, args.seed, progress=not args.json,
                      send=not args.no_send, per_envelope=args.per_envelope)
    if args.json:
        print(json.dumps({**result.__dict__, "ok": result.ok}, indent=2, default=str))
    else:
        print_summary(result)
    return 0 if result.ok else 1
