"""`dte demo`: the main job on the embedded default, with nothing external.

It makes test material (a test "SII" CAF-signing key, CAFs signed by it, a signer
certificate), signs a batch of documents of every type on the core's thread pool, wraps them
in EnvioDTE / EnvioBOLETA envelopes, validates every envelope against SII's schemas and
verifies every signature, TED and CAF, then prints a summary.
"""
from __future__ import annotations

import argparse
import copy
import datetime as _dt
import json
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

    @property
    def ok(self) -> bool:
        return (not self.sign_errors and self.signed == self.documents
                and all(e["schema_valid"] and e["verified"] for e in self.envelopes))


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
             on_stage: Callable[[str], None] | None = None) -> DemoResult:
    rng = random.Random(seed)
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
    today = _dt.date.today().isoformat()
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
    bar = Progress("validating+verifying", len(envelopes)) if progress else None
    started = time.perf_counter()
    for name, xml in envelopes:
        validation = _api.validate(xml)
        report = _api.verify(xml, keyring=keyring)
        failures = [f"{c.name} {c.subject}: {c.reason}" for c in report.failures]
        result.envelopes.append({
            "file": name, "documents": len(report.documents), "bytes": len(xml),
            "schema_valid": validation.valid,
            "schema_errors": [f"line {e.line} {e.path}: {e.message}" for e in validation.errors][:5],
            "verified": report.ok, "checks": len(report.checks), "failures": failures[:10],
        })
        if bar:
            bar.advance()
    result.verify_seconds = time.perf_counter() - started
    if bar:
        bar.finish()
    return result


def print_summary(result: DemoResult, stream: TextIO = sys.stdout) -> None:
    w = stream.write
    w("\nSummary\n")
    rate = result.signed / result.sign_seconds if result.sign_seconds else 0.0
    w(f"  signed      {result.signed}/{result.documents} documents in {result.sign_seconds:.2f} s"
      f" ({rate:.0f}/s)\n")
    w("  by type     " + ", ".join(f"{t}: {n}" for t, n in result.by_type.items()) + "\n")
    for e in result.envelopes:
        status = "OK" if e["schema_valid"] and e["verified"] else "FAILED"
        w(f"  {e['file']:<18} {e['documents']:>5} DTEs  {e['bytes'] / 1024:>8.1f} KiB  "
          f"schema {'valid' if e['schema_valid'] else 'INVALID'}, "
          f"{e['checks']} checks {'passed' if e['verified'] else 'FAILED'}  {status}\n")
        for line in e["schema_errors"] + e["failures"]:
            w(f"      {line}\n")
    for err in result.sign_errors[:10]:
        w(f"  sign error: {err}\n")
    w(f"\n{'All documents signed, enveloped, schema-valid and verified.' if result.ok else 'FAILED'}\n")


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = parser or argparse.ArgumentParser(prog="dte demo", description=__doc__)
    p.add_argument("--count", type=int, default=200, help="documents to sign (default 200)")
    p.add_argument("--threads", type=int, default=0, help="signing threads (0 = every core)")
    p.add_argument("--out", type=Path, help="keep the material and output here (default: temp dir)")
    p.add_argument("--seed", type=int, default=2026, help="random seed for the documents")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    return p


def main(args: argparse.Namespace) -> int:
    result = run_demo(args.count, args.threads, args.out, args.seed, progress=not args.json)
    if args.json:
        print(json.dumps({**result.__dict__, "ok": result.ok}, indent=2, default=str))
    else:
        print_summary(result)
    return 0 if result.ok else 1
