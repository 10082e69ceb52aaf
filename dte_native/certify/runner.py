"""Runs certification sets end to end: parse, build, sign, envelope, books, check (schema +
every signature, TED and CAF), printed samples, exchange answers, and sending to SII (or the
local simulator) with each track id polled to its final state.

Everything goes into one output folder that keeps a ``state.json``: the folios used and the
documents issued per case, so that a set run later (the sales book after the basic set, the
guide book after the guías) finds the documents it needs and no folio is used twice.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

from .. import _api, books, reception
from .._api import Caf, Certificate, SiiKeyring
from ..errors import DteError
from . import xmlread
from .builder import (Company, Issued, build_boleta, build_boleta_note, build_case, build_guide_book,
                      build_purchase_book, build_rvd, build_sales_book)
from .parser import SetError, TestSet, parse_set

Env = Literal["simulator", "certification"]
UploadKind = Literal["EnvioDTE", "EnvioBOLETA", "LibroCV", "LibroGuia", "ConsumoFolios"]


@dataclass
class Options:
    out_dir: Path
    env: Env = "simulator"
    url: str = ""
    send: bool = True
    sii_keys: list[str] = field(default_factory=list)
    date: str = ""                       # FchEmis of every document (default today)
    simulation: bool = False
    exchange: list[Path] = field(default_factory=list)
    printed: bool = True
    poll_s: float = 0.0                  # 0: 0.1 s against the simulator, 5 s against SII
    timeout_s: float = 900.0


@dataclass
class Upload:
    """One file that goes to SII: an envelope of a set or a book."""
    name: str
    kind: UploadKind
    set_name: str
    file: str
    documents: int
    schema_valid: bool = False
    verified: bool = False
    problems: list[str] = field(default_factory=list)
    track_id: str = ""
    state: str = ""
    sii_state: str = ""
    glosa: str = ""
    accepted: int = 0
    rejected: int = 0
    objections: int = 0
    rejections: list[str] = field(default_factory=list)

    @property
    def checked(self) -> bool:
        return self.schema_valid and self.verified

    @property
    def accepted_ok(self) -> bool:
        return self.state in ("accepted", "accepted_with_objections") and self.rejected == 0


@dataclass
class Result:
    out_dir: str
    documents: list[dict[str, Any]] = field(default_factory=list)
    uploads: list[Upload] = field(default_factory=list)
    answers: list[str] = field(default_factory=list)
    samples: list[str] = field(default_factory=list)
    sent: bool = False
    url: str = ""
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        if self.errors or not all(u.checked for u in self.uploads):
            return False
        return all(u.accepted_ok for u in self.uploads) if self.sent else True

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ok"] = self.ok
        for u, raw in zip(self.uploads, d["uploads"]):
            raw["checked"], raw["accepted_ok"] = u.checked, u.accepted_ok
        return d


class Certification:
    """One output folder: its state, the material, and what was produced."""

    def __init__(self, company: Company, cafs: Sequence[Caf], cert: Certificate, options: Options,
                 say: Callable[[str], None] = lambda s: None) -> None:
        self.company, self.cert, self.options, self.say = company, cert, options, say
        self.cafs = list(cafs)
        self.keyring = SiiKeyring.default(options.sii_keys)
        self.out = Path(options.out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        for sub in ("dte", "envios", "libros", "muestras", "intercambio"):
            (self.out / sub).mkdir(exist_ok=True)
        self.date = options.date or _api.today_in_chile()
        self.period = self.date[:7]
        self.schemas = _api.schemas() if _api.schema_dir() is not None else None
        self.state_path = self.out / "state.json"
        state = json.loads(self.state_path.read_text(encoding="utf-8")) if self.state_path.is_file() else {}
        self.next_folio: dict[int, int] = {int(k): v for k, v in state.get("next_folio", {}).items()}
        self.issued: dict[str, Issued] = {k: Issued(**v) for k, v in state.get("issued", {}).items()}
        self.result = Result(out_dir=str(self.out))

    # --- folios and state -------------------------------------------------------------------

    def _caf_for(self, doc_type: int, folio: int) -> Caf | None:
        return next((c for c in self.cafs if c.info.doc_type == doc_type and c.info.covers(folio)), None)

    def take_folio(self, doc_type: int, where: str) -> tuple[int, Caf]:
        mine = sorted((c for c in self.cafs if c.info.doc_type == doc_type), key=lambda c: c.info.folio_from)
        if not mine:
            raise SetError(f"{where}: no CAF for document type {doc_type} ({_api.type_name(doc_type)}); "
                           f"pass one with --caf", "certify.no_caf")
        folio = max(self.next_folio.get(doc_type, 0), mine[0].info.folio_from)
        caf = self._caf_for(doc_type, folio)
        if caf is None:
            later = [c for c in mine if c.info.folio_from > folio]
            if not later:
                ranges = ", ".join(f"{c.info.folio_from}-{c.info.folio_to}" for c in mine)
                raise SetError(f"{where}: the CAFs of type {doc_type} ({ranges}) have no folio left from "
                               f"{folio} on; pass a new CAF with --caf", "certify.folios_exhausted")
            caf, folio = later[0], later[0].info.folio_from
        self.next_folio[doc_type] = folio + 1
        return folio, caf

    def save_state(self) -> None:
        state = {"next_folio": {str(k): v for k, v in sorted(self.next_folio.items())},
                 "issued": {k: asdict(v) for k, v in self.issued.items()}}
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, ensure_ascii=False, indent=1), encoding="utf-8")
        tmp.replace(self.state_path)

    # --- documents ----------------------------------------------------------------------------

    def _sign(self, document: dict[str, Any], caf: Caf, key: str, set_name: str, where: str) -> Issued:
        try:
            signed = _api.sign(document, caf, self.cert, keyring=self.keyring, today=self.date)
        except DteError as e:
            raise SetError(f"{where}: the document does not sign: {type(e).__name__} {e.code}: {e.message}",
                           "certify.sign") from None
        path = self.out / "dte" / f"{signed.id}.xml"
        path.write_bytes(signed.xml)
        item = Issued(case_id=key, set_name=set_name, doc_type=signed.doc_type, folio=signed.folio,
                      date=signed.issue_date, document=document, totals=xmlread.totals(signed.xml),
                      file=str(path.relative_to(self.out)))
        self.issued[key] = item
        self.result.documents.append({"set": set_name, "case": key, "type": item.doc_type, "folio": item.folio,
                                      "total": item.totals.get("MntTotal"), "file": item.file})
        return item

    def run_set(self, test_set: TestSet) -> None:
        self.say(f"{test_set.name}: {test_set.kind.replace('_', ' ')}"
                 + (f", {len(test_set.cases)} cases" if test_set.cases else ""))
        if test_set.kind == "documents":
            issued = []
            for case in test_set.cases:
                where = f"{case.where} (line {case.source_line})"
                folio, caf = self.take_folio(case.doc_type, where)
                doc = build_case(case, folio, self.date, self.company, self.issued)
                issued.append(self._sign(doc, caf, case.case_id, test_set.name, where))
            self._envelope(issued, test_set.name, Path(test_set.name).stem)
        elif test_set.kind == "boletas":
            self._boletas(test_set)
        elif test_set.kind == "sales_book":
            self._sales_book(test_set)
        elif test_set.kind == "purchase_book":
            book = build_purchase_book(test_set, self.company, self.period, self.date)
            self._book("LibroCV", book, test_set.name, "libro-compras")
        elif test_set.kind == "guide_book":
            guides = sorted((d for d in self.issued.values() if d.doc_type == 52), key=lambda d: d.folio)
            latest_set = guides[-1].set_name if guides else ""
            guides = [g for g in guides if g.set_name == latest_set]
            invoice = min((d for d in self.issued.values() if d.doc_type == 33), key=lambda d: d.folio,
                          default=None)
            book = build_guide_book(guides, test_set, self.company, self.period, invoice)
            self._book("LibroGuia", book, test_set.name, "libro-guias")
        self.save_state()

    def _boletas(self, test_set: TestSet) -> None:
        boletas, notes = [], []
        for case in test_set.boletas:
            where = f"{test_set.name}: CASO-{case.number} (line {case.source_line})"
            folio, caf = self.take_folio(39, where)
            key = f"{test_set.name}#{case.number}"
            boleta = self._sign(build_boleta(case, folio, self.date, self.company), caf, key,
                                test_set.name, where)
            boletas.append(boleta)
        for case, boleta in zip(test_set.boletas, boletas):
            where = f"{test_set.name}: CASO-{case.number} (line {case.source_line})"
            if not (case.annul or any(x.rebate_pct is not None for x in case.lines)):
                continue
            folio, caf = self.take_folio(61, where)
            note = build_boleta_note(case, boleta, folio, self.date, self.company)
            if note is not None:
                notes.append(self._sign(note, caf, f"{test_set.name}#{case.number}-NC", test_set.name, where))
        self._envelope(boletas, test_set.name, "boletas", boleta=True)
        if notes:
            self._envelope(notes, test_set.name, "boletas-notas")
        self._book("ConsumoFolios", build_rvd(boletas, notes, self.company, self.date), test_set.name, "rvd")

    def _sales_book(self, test_set: TestSet) -> None:
        # SII: the documents of the basic set; without it, those of the exempt set.
        sets: dict[str, list[Issued]] = {}
        for d in self.issued.values():
            if d.doc_type in (33, 34, 56, 61) and "#" not in d.case_id:
                sets.setdefault(d.set_name, []).append(d)
        chosen = next((docs for docs in sets.values() if any(d.doc_type == 33 for d in docs)), None)
        chosen = chosen or next((docs for docs in sets.values() if any(d.doc_type == 34 for d in docs)), None)
        if not chosen:
            raise SetError(f"{test_set.name}: the sales book is built from the documents of the basic set "
                           f"(or the exempt set): run that set first or in the same command",
                           "certify.missing_reference")
        book = build_sales_book(sorted(chosen, key=lambda d: (d.doc_type, d.folio)), self.company, self.period)
        self._book("LibroCV", book, test_set.name, "libro-ventas")

    # --- envelopes and books ------------------------------------------------------------------

    def _check(self, upload: Upload, data: bytes) -> None:
        validation = _api.validate(data, self.schemas) if self.schemas else None
        upload.schema_valid = validation.valid if validation else False
        if validation and not validation.valid:
            upload.problems += [f"schema line {e.line} {e.path}: {e.message}" for e in validation.errors][:10]
        if validation is None:
            upload.problems.append("no SII schemas available (set DTE_XSD_DIR)")
        report = _api.verify(data, keyring=self.keyring, schema_set=self.schemas)
        upload.verified = report.ok
        upload.problems += [f"{c.name} [{c.subject}]: {c.reason}" for c in report.failures][:10]

    def _envelope(self, docs: list[Issued], set_name: str, stem: str, boleta: bool = False) -> None:
        xmls = [(self.out / d.file).read_bytes() for d in docs]
        data = _api.envelope(xmls, self.cert, resolution_date=self.company.resolution_date or None,
                             resolution_number=self.company.resolution_number, issuer=self.company.rut,
                             boleta=boleta)
        path = self.out / "envios" / f"{stem}.xml"
        path.write_bytes(data)
        up = Upload(name=path.name, kind="EnvioBOLETA" if boleta else "EnvioDTE", set_name=set_name,
                    file=str(path.relative_to(self.out)), documents=len(docs))
        self._check(up, data)
        self.result.uploads.append(up)

    def _book(self, kind: UploadKind, book: dict[str, Any], set_name: str, stem: str) -> None:
        sign = {"LibroCV": books.sign_libro_cv, "LibroGuia": books.sign_libro_guia,
                "ConsumoFolios": books.sign_consumo_folios}[kind]
        try:
            data = sign(book, self.cert, schemas=self.schemas)
        except DteError as e:
            raise SetError(f"{set_name}: the {kind} does not build: {type(e).__name__} {e.code}: {e.message}",
                           "certify.book") from None
        path = self.out / "libros" / f"{stem}.xml"
        path.write_bytes(data)
        (self.out / "libros" / f"{stem}.json").write_text(json.dumps(book, ensure_ascii=False, indent=1),
                                                          encoding="utf-8")
        entries = book.get("Detalle") or book.get("Documentos") or []
        up = Upload(name=path.name, kind=kind, set_name=set_name, file=str(path.relative_to(self.out)),
                    documents=len(entries))
        self._check(up, data)
        self.result.uploads.append(up)

    # --- simulation, exchange, printed samples -----------------------------------------------

    def simulation(self) -> None:
        """SII's "set de simulación": a realistic batch chosen by the company. One document of
        every type the CAFs allow (except boletas), notes referencing the invoices just made."""
        types = sorted({c.info.doc_type for c in self.cafs} - {39, 41, 43})
        if not types:
            raise SetError("simulation: no CAF for a document type", "certify.no_caf")
        self.say(f"simulation: {len(types)} documents")
        made: dict[int, Issued] = {}
        for t in [t for t in types if t not in (56, 61, 111, 112)] + [t for t in types if t in (56, 61, 111, 112)]:
            doc = _api.example(t)
            head = doc["Encabezado"]
            head["Emisor"] = dict(self.company.emisor)
            head["IdDoc"].pop("FchVenc", None)
            if t not in (110, 111, 112):
                head.pop("Totales", None)
                head["Receptor"] = dict(self.company.supplier if t == 46 else self.company.receptor)
            target_type = {56: 33, 61: 33, 111: 110, 112: 110}.get(t)
            refs = doc.get("Referencia") or []
            refs = refs if isinstance(refs, list) else [refs]
            if target_type:
                target = made.get(target_type)
                if target is None:
                    continue
                for r in refs:
                    if str(r.get("TpoDocRef")) == str(target_type):
                        r.update(FolioRef=str(target.folio), FchRef=target.date)
            else:
                refs = [r for r in refs if r.get("TpoDocRef") not in ("33", "110", 33, 110)]
                for r in refs:
                    r["FchRef"] = self.date
            if refs:
                doc["Referencia"] = refs
            else:
                doc.pop("Referencia", None)
            head["IdDoc"]["FchEmis"] = self.date
            folio, caf = self.take_folio(t, "simulation")
            head["IdDoc"]["Folio"] = folio
            made[t] = self._sign(doc, caf, f"simulacion#{t}", "simulacion", f"simulation: type {t}")
        self._envelope(list(made.values()), "simulacion", "simulacion")
        self.save_state()

    def exchange(self, path: Path) -> None:
        """Intercambio: answers to the EnvioDTE SII sent to the company (RecepcionEnvio,
        ResultadoDTE accepting, EnvioRecibos); uploaded by hand in SII's certification portal."""
        data = path.read_bytes()
        received = reception.verify_received(data, company_rut=self.company.rut, keyring=self.keyring,
                                             schema_set=self.schemas)
        self.say(f"exchange: {path.name}: {len(received.documents)} document(s), reception state "
                 f"{received.state} {received.glosa}".rstrip())
        contact = {"name": str(self.company.emisor.get("RznSoc", ""))[:40],
                   "email": str(self.company.emisor.get("CorreoEmisor", ""))}
        answers = [reception.respond(received, self.cert, "receive", company_rut=self.company.rut,
                                     file_name=path.name, contact=contact)]
        if received.documents:
            answers.append(reception.respond(received, self.cert, "accept", company_rut=self.company.rut,
                                             contact=contact))
            answers.append(reception.respond(received, self.cert, "receipt", company_rut=self.company.rut,
                                             recinto=str(self.company.emisor.get("DirOrigen", "OFICINA"))[:80],
                                             contact=contact))
        for name, xml in answers:
            out = self.out / "intercambio" / f"{path.stem}-{name}"
            out.write_bytes(xml)
            validation = _api.validate(xml, self.schemas) if self.schemas else None
            if validation is not None and not validation.valid:
                self.result.errors.append(f"{out.name}: schema: {validation.errors[0].message}")
            self.result.answers.append(str(out.relative_to(self.out)))

    def printed_samples(self, items: Sequence[Issued]) -> None:
        from .printed import render_pdf

        for d in items:
            xml = (self.out / d.file).read_bytes()
            copies = [False, True] if d.doc_type in (33, 34, 43, 46, 52) else [False]
            for cedible in copies:
                pdf = render_pdf(xml, office=self.company.sii_office,
                                 resolution=(self.company.resolution_number,
                                             (self.company.resolution_date or self.date)[:4]),
                                 cedible=cedible)
                name = f"T{d.doc_type}F{d.folio}{'-cedible' if cedible else ''}.pdf"
                (self.out / "muestras" / name).write_bytes(pdf)
                self.result.samples.append(f"muestras/{name}")

    # --- sending ------------------------------------------------------------------------------

    def send(self) -> None:
        from .. import sii

        sim = None
        url = self.options.url
        if self.options.env == "simulator" and not url:
            from ..simulator import Simulator

            keys = self.options.sii_keys[0] if self.options.sii_keys else _api._data_dir("sii_keys")
            sim = Simulator(port=0, xsd_dir=_api.schema_dir(), sii_keys=keys, config={"step_delay_s": 0.05})
            url = sim.start()
            self.say(f"sending to the local SII simulator at {url}")
        else:
            self.say(f"sending to {self.options.env} {url}".rstrip())
        self.result.sent, self.result.url = True, url
        poll = self.options.poll_s or (0.1 if self.options.env == "simulator" else 5.0)
        try:
            client = sii.SiiClient(self.cert, sii.ClientConfig(self.options.env, base_url=url))
            for up in self.result.uploads:
                data = (self.out / up.file).read_bytes()
                try:
                    sent = client.upload(data, self.company.rut, up.name,
                                         force_dte_upload=up.kind == "EnvioBOLETA")
                    up.track_id = sent.track_id
                    if not sent.track_id:
                        up.state, up.glosa = "accepted", "already received by SII (duplicate upload)"
                        continue
                    # Books and the RVD carry no documents: their EPR has no per-type counts.
                    kind: Literal["documents", "book"] = (
                        "documents" if up.kind in ("EnvioDTE", "EnvioBOLETA") else "book")
                    st = client.wait_final(sent.track_id, self.company.rut, poll_s=poll,
                                           timeout_s=self.options.timeout_s, kind=kind)
                except DteError as e:
                    up.state, up.glosa = "error", f"{type(e).__name__} {e.code}: {e.message}"
                    continue
                up.state, up.sii_state, up.glosa = st.state, st.sii_state, st.glosa
                up.accepted = sum(c.accepted for c in st.counts)
                up.rejected = sum(c.rejected for c in st.counts)
                up.objections = sum(c.objections for c in st.counts)
                up.rejections = [f"{d.doc_type} #{d.folio}: {d.state} {d.description}".strip()
                                 for d in st.details if d.state not in ("accepted", "DOK")]
                self.say(f"  {up.name:<28} track id {up.track_id}: {up.state} ({up.sii_state})")
            if sim is not None:
                # The simulator says why (SII e-mails the reasons): attach them to the upload.
                state = sim.state()
                for up in self.result.uploads:
                    env = next((e for e in state.get("envelopes", []) if e.get("trackid") == up.track_id), None)
                    if env:
                        up.rejections += [f"{e.get('code')}: {e.get('message')}" for e in env.get("errors", [])]
                        for doc in env.get("docs", []):
                            up.rejections += [f"T{doc['tipo']}F{doc['folio']} {e['code']}: {e['message']}"
                                              for e in doc.get("errors", [])]
        finally:
            if sim is not None:
                sim.stop()


def run(set_paths: Sequence[str | Path], company: Company, cafs: Sequence[Caf], cert: Certificate,
        options: Options, say: Callable[[str], None] = lambda s: None) -> Result:
    """Every set given, in order, then simulation/exchange, printed samples and sending.
    All sets are parsed before anything is signed, so a bad set spends no folio."""
    parsed = [parse_set(p) for p in set_paths]
    for path in options.exchange:
        if not Path(path).is_file():
            raise SetError(f"--exchange {path}: no such file", "certify.exchange")
    work = Certification(company, cafs, cert, options, say)
    before = set(work.issued)
    for test_set in parsed:
        work.run_set(test_set)
    if options.simulation:
        work.simulation()
    for path in options.exchange:
        work.exchange(Path(path))
    if options.printed:
        new = [d for k, d in work.issued.items() if k not in before]
        work.printed_samples(new)
    work.save_state()
    if options.send:
        work.send()
    (work.out / "report.json").write_text(json.dumps(work.result.to_dict(), ensure_ascii=False, indent=1),
                                          encoding="utf-8")
    return work.result


def load_company(path: str | Path) -> Company:
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise SetError(f"{p}: cannot read the company file: {e}", "certify.company") from None
    if not isinstance(data, dict):
        raise SetError(f"{p}: the company file must be a JSON object", "certify.company")
    return Company.from_dict(data, str(p))
