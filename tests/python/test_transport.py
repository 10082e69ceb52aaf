"""The C++ SII client against the in-process SII simulator over real sockets: tokens and their
expiry signals, upload and status, boletas, claims, bad answers, and a batch under faults."""
from __future__ import annotations

import http.server
import json
import threading
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

import dte_native as dte
from dte_native import sii, testkit
from dte_native.errors import SiiAuthError, SiiMalformedAnswer, SiiRejected, SiiTransportError

import simkit
from conftest import ISSUER, document

sim_mod = simkit.load_simulator()
XSD = simkit.xsd_dir()

FAST = dict(timeout_s=5.0, connect_timeout_s=2.0, max_attempts=4, base_delay_s=0.02, max_delay_s=0.2,
            random_seed=7)


# ----------------------------------------------------------------------------- helpers

def start_sim(kit: testkit.TestKit, **cfg: Any) -> Any:
    s = sim_mod.Simulator(port=0, xsd_dir=XSD, sii_keys=kit.sii_keys_dir, config={"step_delay_s": 0, **cfg})
    s.start()
    return s


def client_for(sim: Any, cert: dte.Certificate, **cfg: Any) -> sii.SiiClient:
    return sii.SiiClient(cert, sii.ClientConfig("simulator", base_url=sim.url, **{**FAST, **cfg}))


def admin(sim: Any, path: str, body: dict[str, Any] | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(sim.url + path, data=data, method="POST" if data is not None else "GET",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def faults(sim: Any, rules: list[dict[str, Any]]) -> None:
    admin(sim, "/_sim/config", {"faults": rules})


def tokens_issued(sim: Any) -> int:
    return int(admin(sim, "/_sim/state")["tokens"])


class Docs:
    """Signed DTEs and envelopes from the session's test kit, with folios never reused."""

    def __init__(self, cafs: dict[int, dte.Caf], cert: dte.Certificate, keyring: dte.SiiKeyring,
                 start: int) -> None:
        self.cafs, self.cert, self.keyring = cafs, cert, keyring
        self.next = {t: start for t in cafs}

    def dte(self, doc_type: int = 33) -> dte.SignedDte:
        folio = self.next[doc_type]
        self.next[doc_type] += 1
        return dte.sign(document(doc_type, folio), self.cafs[doc_type], self.cert, keyring=self.keyring)

    def envelope(self, *signed: dte.SignedDte) -> bytes:
        return dte.envelope(list(signed), self.cert, resolution_date="2014-08-22", resolution_number=0)


_TESTS_SEEN = [0]


@pytest.fixture()
def docs(cafs: dict[int, dte.Caf], cert: dte.Certificate, keyring: dte.SiiKeyring) -> Docs:
    # Each test has a fresh simulator; still give each a fresh block of 40 folios inside the kit's
    # CAF range (1..500), so material never collides within one simulator.
    _TESTS_SEEN[0] += 1
    return Docs(cafs, cert, keyring, 1 + (_TESTS_SEEN[0] * 40) % 440)


@pytest.fixture()
def sim(kit: testkit.TestKit) -> Iterator[Any]:
    s = start_sim(kit)
    yield s
    s.stop()


def query_of(signed: dte.SignedDte, envelope: bytes) -> sii.DocumentQuery:
    found = [q for q in sii.documents_of_envelope(envelope)
             if q.folio == signed.folio and q.doc_type == signed.doc_type]
    assert found
    return found[0]


# ----------------------------------------------------------------------------- tokens

def test_token_is_cached_shared_and_renewed_after_revocation(sim: Any, cert: dte.Certificate, docs: Docs) -> None:
    c = client_for(sim, cert)
    t1 = c.token()
    assert t1 and c.token() == t1
    # Another client of the same environment, signer and certificate shares the cache.
    assert client_for(sim, cert).token() == t1
    assert c.token("boleta") != t1  # separate family
    admin(sim, "/_sim/revoke", {})
    signed = docs.dte()
    env = docs.envelope(signed)
    before = tokens_issued(sim)
    sent = c.upload(env)  # STATUS 5 -> one renewal -> success
    assert sent.track_id and not sent.duplicate
    assert tokens_issued(sim) == before + 1
    assert c.token() != t1


def test_token_ttl_renews_before_expiry(sim: Any, cert: dte.Certificate) -> None:
    c = client_for(sim, cert, token_ttl_s=0.0)
    assert c.token() != c.token()


@pytest.mark.parametrize("service,signal", [("estup", "001"), ("estup", "002"), ("estup", "003"),
                                            ("estdte", "002"), ("upload", None), ("reclamo", None)])
def test_expiry_signal_in_each_soap_service(sim: Any, cert: dte.Certificate, docs: Docs,
                                            service: str, signal: str | None) -> None:
    c = client_for(sim, cert)
    signed = docs.dte()
    env = docs.envelope(signed)
    sent = c.upload(env)
    c.token()
    before = tokens_issued(sim)
    rule: dict[str, Any] = {"service": service, "kind": "token_expired", "count": 1}
    if signal:
        rule["signal"] = signal
    faults(sim, [rule])
    if service == "estup":
        assert c.envelope_status(sent.track_id, ISSUER).state == "accepted"
    elif service == "estdte":
        assert c.document_status(query_of(signed, env)).state == "received"
    elif service == "upload":
        again = c.upload(docs.envelope(docs.dte()))
        assert again.track_id
    else:
        assert c.claim(ISSUER, 33, signed.folio, "ACD").code == 0
    assert tokens_issued(sim) == before + 1  # exactly one renewal
    events = [e for e in admin(sim, "/_sim/state")["events"] if e["type"] == "fault"]
    assert [e["kind"] for e in events] == ["token_expired"]


def test_expiry_twice_is_an_auth_error_after_one_retry(sim: Any, cert: dte.Certificate, docs: Docs) -> None:
    c = client_for(sim, cert)
    sent = c.upload(docs.envelope(docs.dte()))
    faults(sim, [{"service": "estup", "kind": "token_expired", "count": 2, "signal": "002"}])
    with pytest.raises(SiiAuthError) as info:
        c.envelope_status(sent.track_id, ISSUER)
    assert info.value.code == "sii.token_rejected"
    state = admin(sim, "/_sim/state")
    assert [e["kind"] for e in state["events"] if e["type"] == "fault"] == ["token_expired"] * 2


def test_unregistered_signer_is_an_auth_error(kit: testkit.TestKit, cert: dte.Certificate) -> None:
    s = start_sim(kit, registered_users=["22222222-2"])
    try:
        with pytest.raises(SiiAuthError) as info:
            client_for(s, cert).token()
        assert info.value.code == "sii.auth.-07"
    finally:
        s.stop()


# ----------------------------------------------------------------------------- upload and status

def test_upload_then_status_until_final(kit: testkit.TestKit, cert: dte.Certificate, docs: Docs) -> None:
    s = start_sim(kit, step_delay_s=10)
    try:
        c = client_for(s, cert)
        a, b = docs.dte(), docs.dte()
        env = docs.envelope(a, b)
        sent = c.upload(env)
        assert sent.family == "dte" and len(sent.track_id) == 10 and sent.status == 0
        seen = []
        for _ in range(8):
            st = c.envelope_status(sent.track_id, ISSUER)
            seen.append(st.sii_state)
            if st.final:
                break
            s.advance_clock(10)
        assert seen[0] == "REC" and seen[-1] == "EPR", seen
        assert st.state == "accepted" and st.final
        assert st.counts == [sii.TypeCounts(33, 2, 2, 0, 0)]
        # Identical bytes again: SII's duplicate answer is success without a new track id.
        dup = c.upload(env)
        assert dup.duplicate and dup.status == 99 and dup.track_id == ""
        assert len(admin(s, "/_sim/state")["envelopes"]) == 1
        assert c.document_status(query_of(a, env)).sii_state == "DOK"
        assert c.document_status(query_of(b, env), advanced=True).state == "received"
        wrong = sii.DocumentQuery(**{**query_of(a, env).__dict__, "amount": 1})
        assert c.document_status(wrong).state == "data_mismatch"
    finally:
        s.stop()


def test_rejections_are_values_or_sii_rejected(kit: testkit.TestKit, cert: dte.Certificate, docs: Docs) -> None:
    s = start_sim(kit, reject_share=1.0)
    try:
        c = client_for(s, cert)
        sent = c.upload(docs.envelope(docs.dte()))
        st = c.envelope_status(sent.track_id, ISSUER)
        assert st.state == "rejected" and st.sii_state == "EPR" and st.counts[0].rejected == 1
        # A tampered envelope: signature error at upload (STATUS 8).
        env = docs.envelope(docs.dte()).replace(b"<NroResol>0</NroResol>", b"<NroResol>1</NroResol>")
        with pytest.raises(SiiRejected) as info:
            c.upload(env)
        assert info.value.sii_code == "8" and info.value.code == "sii.upload.signature"
        with pytest.raises(SiiRejected):
            c.envelope_status("9999999999", ISSUER)  # -11: not this company's / unknown
    finally:
        s.stop()


def test_boleta_flow(kit: testkit.TestKit, cert: dte.Certificate, docs: Docs) -> None:
    s = start_sim(kit, step_delay_s=5)
    try:
        c = client_for(s, cert)
        b1, b2 = docs.dte(39), docs.dte(39)
        env = docs.envelope(b1, b2)
        assert b"<EnvioBOLETA" in env
        sent = c.upload(env)
        assert sent.family == "boleta" and len(sent.track_id) == 15
        assert not c.envelope_status(sent.track_id, ISSUER, boleta=True).final
        s.advance_clock(60)
        st = c.envelope_status(sent.track_id, ISSUER, boleta=True)
        assert st.final and st.state == "accepted" and st.counts[0].informed == 2
        assert c.boleta_document_status(query_of(b1, env)).sii_state == "DOK"
        # 401 is the boleta token signal: one renewal, then success.
        before = tokens_issued(s)
        faults(s, [{"service": "boleta_status", "kind": "token_expired", "count": 1}])
        assert c.envelope_status(sent.track_id, ISSUER, boleta=True).state == "accepted"
        faults(s, [{"service": "boleta_envio", "kind": "token_expired", "count": 1}])
        assert c.upload(docs.envelope(docs.dte(39))).track_id
        assert tokens_issued(s) == before + 2
        # The boleta certification set goes through DTEUpload.
        via_upload = c.upload(docs.envelope(docs.dte(39)), force_dte_upload=True)
        assert via_upload.family == "dte" and len(via_upload.track_id) == 10
        with pytest.raises(SiiRejected):
            c.envelope_status("999999999999999", ISSUER, boleta=True)
    finally:
        s.stop()


def test_boleta_envio_to_api_host_is_refused(sim: Any, cert: dte.Certificate, docs: Docs) -> None:
    c = sii.SiiClient(cert, sii.ClientConfig("simulator", base_url=sim.url,
                                             boleta_envio_base=sim.url + "/apicert", **FAST))
    with pytest.raises(SiiRejected) as info:
        c.upload(docs.envelope(docs.dte(39)))
    assert info.value.code == "sii.boleta.access_denied"


# ----------------------------------------------------------------------------- claims

def test_claims(sim: Any, cert: dte.Certificate, docs: Docs) -> None:
    c = client_for(sim, cert)
    a, b, late = docs.dte(), docs.dte(), docs.dte()
    c.upload(docs.envelope(a, b, late))
    assert c.claim_events(ISSUER, 33, a.folio).code == 16  # no events yet
    assert c.claim(ISSUER, 33, a.folio, "ACD") == sii.ClaimResult(0, "Accion Completada OK", True)
    assert c.claim(ISSUER, 33, a.folio, "ACD").code == 7  # idempotent
    assert c.claim(ISSUER, 33, a.folio, "RCD").code == 11  # cannot claim an accepted DTE
    ev = c.claim_events(ISSUER, 33, a.folio)
    assert ev.code == 15 and [e.code for e in ev.events] == ["ACD"]
    assert ev.events[0].responsible_rut == c.signer_rut
    assert c.claim(ISSUER, 33, b.folio, "RCD").code == 0
    assert c.claim(ISSUER, 33, b.folio, "ERM").code == 6
    assert c.transferable(ISSUER, 33, b.folio).code == 24
    assert c.claim(ISSUER, 39, 1, "ACD").code in (3, 18)
    received = c.reception_date(ISSUER, 33, late.folio)
    assert len(received) == 19 and received[2] == "-" and received[10] == " "
    sim.advance_clock(9 * 86400)
    assert c.claim(ISSUER, 33, late.folio, "RCD").code == 8
    assert c.transferable(ISSUER, 33, late.folio).code == 25
    with pytest.raises(dte.errors.DteError):
        c.claim(ISSUER, 33, late.folio, "XXX")


# ----------------------------------------------------------------------------- bad answers

@pytest.mark.parametrize("kind,code", [("html", "sii.html_answer"), ("error500", "sii.error500"),
                                       ("truncated", "sii.garbled_answer"), ("http_error", "sii.http_503"),
                                       ("drop", "sii.connection_dropped"), ("soap_fault", "sii.soap_fault")])
def test_bad_answers_are_clear_transport_errors(sim: Any, cert: dte.Certificate, docs: Docs,
                                                kind: str, code: str) -> None:
    c = client_for(sim, cert, max_attempts=1)
    sent = c.upload(docs.envelope(docs.dte()))
    # libcurl itself repeats an (idempotent) query when a kept-alive connection turns out dead, so
    # drop often enough to get past that.
    faults(sim, [{"service": "estup", "kind": kind, "count": 10 if kind == "drop" else 1}])
    with pytest.raises(SiiTransportError) as info:
        c.envelope_status(sent.track_id, ISSUER)
    assert info.value.code == code, info.value
    # With retries the same fault is absorbed.
    faults(sim, [{"service": "estup", "kind": kind, "count": 1}])
    assert client_for(sim, cert).envelope_status(sent.track_id, ISSUER).state == "accepted"


def test_timeout_and_latin1(sim: Any, cert: dte.Certificate, docs: Docs) -> None:
    c = client_for(sim, cert, timeout_s=0.5, max_attempts=1)
    sent = c.upload(docs.envelope(docs.dte()))
    faults(sim, [{"service": "estup", "kind": "timeout", "seconds": 1.5, "count": 1}])
    with pytest.raises(SiiTransportError) as info:
        c.envelope_status(sent.track_id, ISSUER)
    assert info.value.code == "sii.timeout"
    faults(sim, [{"service": "estup", "kind": "latin1_glosa", "count": 1}])
    st = c.envelope_status(sent.track_id, ISSUER)
    assert st.glosa.endswith("Recepción")


class _OddSii(http.server.BaseHTTPRequestHandler):
    """Answers every POST with a well-formed QueryEstUp carrying an unknown ESTADO."""

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.endswith("CrSeed.jws"):
            inner = "<SII:RESP_HDR><ESTADO>00</ESTADO></SII:RESP_HDR><SII:RESP_BODY><SEMILLA>012</SEMILLA></SII:RESP_BODY>"
        elif self.path.endswith("GetTokenFromSeed.jws"):
            inner = "<SII:RESP_HDR><ESTADO>00</ESTADO></SII:RESP_HDR><SII:RESP_BODY><TOKEN>T</TOKEN></SII:RESP_BODY>"
        else:
            inner = "<SII:RESP_HDR><TRACKID>1</TRACKID><ESTADO>QQQ</ESTADO><GLOSA>?</GLOSA></SII:RESP_HDR>"
        xml = f'<SII:RESPUESTA xmlns:SII="http://www.sii.cl/XMLSchema">{inner}</SII:RESPUESTA>'
        esc = xml.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        body = (f'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>'
                f"<r><xReturn>{esc}</xReturn></r></soapenv:Body></soapenv:Envelope>").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_unknown_state_is_malformed_answer(cert: dte.Certificate) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _OddSii)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        c = sii.SiiClient(cert, sii.ClientConfig("simulator", base_url=f"http://127.0.0.1:{server.server_port}",
                                                 **FAST))
        with pytest.raises(SiiMalformedAnswer) as info:
            c.envelope_status("1", ISSUER)
        assert info.value.code == "sii.unknown_state" and "QQQ" in str(info.value)
    finally:
        server.shutdown()
        server.server_close()


def test_connection_refused_is_not_delivered(cert: dte.Certificate) -> None:
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    c = sii.SiiClient(cert, sii.ClientConfig("simulator", base_url=f"http://127.0.0.1:{port}",
                                             **{**FAST, "max_attempts": 2}))
    with pytest.raises(SiiTransportError) as info:
        c.token()
    assert info.value.code == "sii.connect" and info.value.maybe_delivered is False


def test_circuit_breaker_opens(sim: Any, cert: dte.Certificate, docs: Docs) -> None:
    c = client_for(sim, cert, max_attempts=1, breaker_failures=2, breaker_open_s=30)
    sent = c.upload(docs.envelope(docs.dte()))
    faults(sim, [{"service": "estup", "kind": "http_error", "status": 503}])
    for _ in range(2):
        with pytest.raises(SiiTransportError):
            c.envelope_status(sent.track_id, ISSUER)
    assert c.breaker_states()["estup"] == "open"
    faults(sim, [])
    with pytest.raises(SiiTransportError) as info:
        c.envelope_status(sent.track_id, ISSUER)
    assert info.value.code == "sii.circuit_open"


# ----------------------------------------------------------------------------- unclear uploads

@pytest.mark.parametrize("kind", ["truncated", "drop", "http_error", "error500"])
def test_unclear_upload_is_checked_before_resending(sim: Any, cert: dte.Certificate, docs: Docs, kind: str) -> None:
    c = client_for(sim, cert)
    env = docs.envelope(docs.dte(), docs.dte())
    c.token()
    faults(sim, [{"service": "upload", "kind": kind, "count": 1}])
    sent = c.upload(env)
    state = admin(sim, "/_sim/state")
    assert len(state["envelopes"]) == 1  # never twice
    if kind == "truncated":  # SII had processed it: found by QueryEstDte, not resent
        assert sent.duplicate and sent.verified and sent.track_id == ""
        assert not [e for e in state["events"] if e["type"] == "upload_duplicate"]
    else:  # not processed: resent (identical bytes) and got a track id
        assert sent.track_id == state["envelopes"][0]["trackid"] and sent.attempts == 2


# ----------------------------------------------------------------------------- batch under faults

FAULT_MIX = [
    {"service": "*", "kind": "http_error", "probability": 0.04, "status": 503},
    {"service": "*", "kind": "drop", "probability": 0.04},
    {"service": "*", "kind": "timeout", "probability": 0.02, "seconds": 1.2},
    {"service": "*", "kind": "html", "probability": 0.03},
    {"service": "*", "kind": "truncated", "probability": 0.03},
    {"service": "*", "kind": "error500", "probability": 0.02},
    {"service": "*", "kind": "token_expired", "probability": 0.03, "signal": "002"},
]


def test_batch_under_faults_ends_accepted_or_rejected_never_twice(
        kit: testkit.TestKit, cert: dte.Certificate, docs: Docs) -> None:
    s = start_sim(kit, reject_share=0.2, seed=99)
    try:
        c = client_for(s, cert, timeout_s=0.8, max_attempts=6, breaker_failures=10, breaker_open_s=0.2,
                       batch_threads=4)
        signed = [docs.dte() for _ in range(10)] + [docs.dte() for _ in range(10)] + [docs.dte() for _ in range(10)]
        envs = [docs.envelope(d) for d in signed]
        faults(s, FAULT_MIX)

        # Upload: the application retries items that failed in transport/auth (its next cron run);
        # the client's own strategy keeps every document from arriving twice.
        results: dict[int, sii.UploadResult] = {}
        for _round in range(4):
            todo = [i for i in range(len(envs)) if i not in results]
            if not todo:
                break
            for i, r in zip(todo, c.upload_many([envs[i] for i in todo])):
                if r.value is not None:
                    results[i] = r.value
                else:
                    assert r.error_kind in ("transport", "auth"), r
        assert len(results) == len(envs), "uploads still failing after 4 rounds"

        verdict: dict[int, str] = {}
        for _round in range(6):
            tracked = [i for i, r in results.items() if r.track_id and i not in verdict]
            for i, st in zip(tracked, c.status_many([(results[i].track_id, ISSUER) for i in tracked])):
                if st.value is not None and st.value.final:
                    verdict[i] = "rejected" if st.value.state == "rejected" else "accepted"
            for i, r in results.items():
                if r.track_id or i in verdict:
                    continue
                try:  # duplicate (no track id): the document itself tells
                    d = c.document_status(query_of(signed[i], envs[i]))
                    verdict[i] = "accepted" if d.state == "received" else "rejected"
                except (SiiTransportError, SiiAuthError):
                    pass
            if len(verdict) == len(envs):
                break
        faults(s, [])
        assert len(verdict) == len(envs)

        state = admin(s, "/_sim/state")
        per_folio: dict[int, list[dict[str, Any]]] = {}
        for env in state["envelopes"]:
            for d in env["docs"]:
                per_folio.setdefault(int(d["folio"]), []).append(d)
        for i, d in enumerate(signed):
            uploads = per_folio.get(d.folio, [])
            assert len(uploads) == 1, f"folio {d.folio} uploaded {len(uploads)} times"
            truth = "rejected" if uploads[0]["estado"] == "RCH" else "accepted"
            assert verdict[i] == truth, (d.folio, verdict[i], uploads[0])
        assert {"accepted", "rejected"} <= set(verdict.values())
        kinds = {e["kind"] for e in state["events"] if e["type"] == "fault"}
        assert len(kinds) >= 4, kinds
        print(f"faults met: {sorted(kinds)}; duplicates: {sum(r.duplicate for r in results.values())}, "
              f"verified: {sum(r.verified for r in results.values())}, "
              f"retried: {sum(r.attempts > 1 for r in results.values())}, "
              f"verdicts: {sorted(verdict.values()).count('accepted')} accepted / "
              f"{sorted(verdict.values()).count('rejected')} rejected; breakers {c.breaker_states()}")  # the run really met several kinds of failure
    finally:
        s.stop()


def test_unclear_outcome_is_remembered_across_calls(sim: Any, cert: dte.Certificate, docs: Docs) -> None:
    c = client_for(sim, cert, max_attempts=1)
    env = docs.envelope(docs.dte())
    c.token()
    faults(sim, [{"service": "upload", "kind": "truncated", "count": 1}])
    with pytest.raises(SiiTransportError) as info:
        c.upload(env)
    assert info.value.maybe_delivered
    # The application tries again later: the client asks SII first instead of resending.
    again = c.upload(env)
    assert again.duplicate and again.verified
    state = admin(sim, "/_sim/state")
    assert len(state["envelopes"]) == 1
    assert not [e for e in state["events"] if e["type"] in ("upload_duplicate",)]
