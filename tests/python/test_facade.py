"""The typed facade end to end, with material made at test time."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

import dte_native as dte
from dte_native import testkit

from conftest import ISSUER, all_types, document


# --- certificates ----------------------------------------------------------------------------


def test_certificate_info(cert: dte.Certificate, kit: testkit.TestKit) -> None:
    assert cert.has_private_key
    info = cert.info
    assert info.signer_rut == kit.signer_rut
    assert info.not_before < info.not_after
    assert len(info.sha256_fingerprint) == 64
    assert cert.pem.startswith("-----BEGIN CERTIFICATE-----")
    assert cert.valid_at()
    public = dte.Certificate.public_only(cert.pem)
    assert not public.has_private_key
    assert public.info.sha256_fingerprint == info.sha256_fingerprint
    assert dte.Certificate.public_only(cert.der).info.signer_rut == kit.signer_rut
    assert "PRIVATE" not in repr(cert)


def test_wrong_password_is_specific(kit: testkit.TestKit) -> None:
    with pytest.raises(dte.CertificateError) as info:
        dte.Certificate.load(kit.cert_path, "not the password")
    assert info.value.code == "cert.wrong_password"
    assert "not the password" not in str(info.value)


def test_unreadable_pkcs12() -> None:
    with pytest.raises(dte.CertificateError) as info:
        dte.Certificate.from_pkcs12(b"\x30\x03garbage", "x")
    assert info.value.code.startswith("cert.")


def test_certificate_from_pem_and_validity() -> None:
    bundle = testkit.make_certificate("11111111-1", "pw", days_valid=-1, days_offset=-10)
    old = dte.Certificate.from_pem(bundle.cert_pem, bundle.key_pem)
    assert old.has_private_key
    with pytest.raises(dte.CertificateError) as info:
        old.check_valid_at()
    assert info.value.code == "cert.expired"
    legacy = testkit.make_certificate("11111111-1", "pw", legacy_pkcs12=True)
    assert dte.Certificate.from_pkcs12(legacy.p12, "pw").info.signer_rut == "11111111-1"


# --- CAF and keyring -------------------------------------------------------------------------


def test_caf_info_and_checks(kit: testkit.TestKit, keyring: dte.SiiKeyring) -> None:
    caf = kit.caf(33)
    info = caf.info
    assert (info.issuer_rut, info.doc_type, info.folio_from, info.folio_to) == (ISSUER, 33, 1, 500)
    assert info.has_private_key and info.idk == 100
    assert info.covers(500) and not info.covers(501)
    assert "<CAF" in caf.caf_xml and "RSASK" not in caf.caf_xml
    checks = caf.check(keyring)
    assert checks and all(c.status == "pass" for c in checks), checks
    caf.verify(keyring)
    assert keyring.idks == [100]


def test_caf_not_signed_by_a_trusted_key(kit: testkit.TestKit) -> None:
    other = dte.SiiKeyring()
    other.add_pem(100, testkit.make_rsa_key().public_pem)
    with pytest.raises(dte.CafError) as info:
        kit.caf(33).verify(other)
    assert info.value.code == "caf.sii_signature"
    assert any(c.failed for c in kit.caf(33).check(other))


def test_caf_fits(kit: testkit.TestKit) -> None:
    caf = kit.caf(33)
    caf.check_fits(ISSUER, 33, 1)
    for args, code in [((("11111111-1"), 33, 1), "caf.wrong_rut"), ((ISSUER, 34, 1), "caf.wrong_type"),
                       ((ISSUER, 33, 501), "caf.folio_out_of_range")]:
        with pytest.raises(dte.CafError) as info:
            caf.check_fits(*args)
        assert info.value.code == code


def test_caf_garbage() -> None:
    with pytest.raises(dte.XmlSyntaxError):
        dte.Caf.parse(b"<AUTORIZACION><CAF>")
    with pytest.raises(dte.CafError):
        dte.Caf.parse(b"<AUTORIZACION/>")


def test_default_keyring_includes_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = testkit.make_rsa_key()
    (tmp_path / "777.pem").write_text(key.public_pem)
    monkeypatch.setenv("DTE_SII_KEYS", str(tmp_path))
    assert 777 in dte.SiiKeyring.default().idks


# --- signing ---------------------------------------------------------------------------------


@pytest.mark.parametrize("doc_type", all_types())
def test_every_type_signs_and_verifies(doc_type: int, signed: dict[int, dte.SignedDte],
                                       keyring: dte.SiiKeyring) -> None:
    s = signed[doc_type]
    assert s.id == f"T{doc_type}F1"
    assert (s.doc_type, s.folio, s.issuer_rut) == (doc_type, 1, ISSUER)
    assert s.xml.startswith(b'<?xml version="1.0" encoding="ISO-8859-1"?>')
    assert s.ted_xml.startswith("<TED")
    report = dte.verify(s.xml, keyring=keyring)
    assert report.ok, report.failures
    assert report.kind == "DTE"
    names = {c.name for c in report.checks}
    assert {"dte.signature", "ted.frmt", "ted.caf"} <= names
    assert [d.folio for d in report.documents] == [1]


def test_sign_accepts_json_text(cafs: dict[int, dte.Caf], cert: dte.Certificate,
                                keyring: dte.SiiKeyring) -> None:
    s = dte.sign(json.dumps(document(33, folio=7)), cafs[33], cert, keyring=keyring,
                 doc_id="F7T33")
    assert s.id == "F7T33" and s.folio == 7


def test_sign_checks_caf_signature_by_default(cafs: dict[int, dte.Caf], cert: dte.Certificate,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DTE_SII_KEYS", raising=False)
    # The kit's CAFs are signed by a test key that SII's real keys do not vouch for.
    with pytest.raises(dte.CafError) as info:
        dte.sign(document(33), cafs[33], cert)
    assert info.value.code in ("caf.sii_signature", "caf.unknown_idk")
    assert dte.sign(document(33), cafs[33], cert, verify_caf=False).folio == 1


def test_caf_of_another_type(cafs: dict[int, dte.Caf], cert: dte.Certificate,
                             keyring: dte.SiiKeyring) -> None:
    with pytest.raises(dte.CafError) as info:
        dte.sign(document(33), cafs[34], cert, keyring=keyring)
    assert info.value.code == "caf.wrong_type"


def test_caf_of_another_rut(kit: testkit.TestKit, cert: dte.Certificate,
                            keyring: dte.SiiKeyring) -> None:
    caf = dte.Caf.parse(testkit.make_caf("76192083-9", 33, kit.sii_private_key_path.read_text()))
    with pytest.raises(dte.CafError) as info:
        dte.sign(document(33), caf, cert, keyring=keyring)
    assert info.value.code == "caf.wrong_rut"


def test_folio_out_of_range(cafs: dict[int, dte.Caf], cert: dte.Certificate,
                            keyring: dte.SiiKeyring) -> None:
    with pytest.raises(dte.CafError) as info:
        dte.sign(document(33, folio=501), cafs[33], cert, keyring=keyring)
    assert info.value.code == "caf.folio_out_of_range"


def test_inconsistent_amounts(cafs: dict[int, dte.Caf], cert: dte.Certificate,
                              keyring: dte.SiiKeyring) -> None:
    doc = dte.normalize(document(33))
    doc["Encabezado"]["Totales"]["MntTotal"] += 1
    findings = dte.check_rules(doc, normalized=True)
    assert any(f.is_error and f.code.startswith("totals.") for f in findings), findings
    with pytest.raises(dte.DocumentError) as info:
        dte.sign(doc, cafs[33], cert, keyring=keyring)
    assert info.value.code == "rules.failed"
    errors = [f for f in dte.precheck(doc, cafs[33], cert, keyring=keyring) if f.is_error]
    assert errors


def test_bad_document_input(cafs: dict[int, dte.Caf], cert: dte.Certificate) -> None:
    with pytest.raises(dte.DocumentError) as info:
        dte.sign("{not json", cafs[33], cert, verify_caf=False)
    assert info.value.code.startswith("input.")
    bad = document(33)
    bad["Encabezado"]["IdDoc"]["TipoDTE"] = 999
    with pytest.raises(dte.DteError):
        dte.sign(bad, cafs[33], cert, verify_caf=False)


def test_precheck_clean_document(cafs: dict[int, dte.Caf], cert: dte.Certificate,
                                 keyring: dte.SiiKeyring) -> None:
    assert not [f for f in dte.precheck(document(33), cafs[33], cert, keyring=keyring) if f.is_error]


def test_sign_many(cafs: dict[int, dte.Caf], cert: dte.Certificate,
                   keyring: dte.SiiKeyring) -> None:
    docs = [document(33, folio=f) for f in range(10, 20)] + [document(33, folio=9999)]
    outcomes = dte.sign_many(docs, [cafs[33], cafs[34]], cert, keyring=keyring)
    assert [o.ok for o in outcomes] == [True] * 10 + [False]
    assert [o.dte.folio for o in outcomes[:10] if o.dte] == list(range(10, 20))
    assert outcomes[-1].dte is None and outcomes[-1].error_code
    assert dte.verify(outcomes[0].dte.xml, keyring=keyring).ok  # type: ignore[union-attr]


def test_sign_many_outcomes_match_the_dataclass_constructors(
        cafs: dict[int, dte.Caf], cert: dte.Certificate, keyring: dte.SiiKeyring) -> None:
    # The facade fills SignOutcome/SignedDte from the binding's dicts without their __init__:
    # the objects must be what the constructors make, and the key sets must stay the fields.
    from dataclasses import fields

    from dte_native import _types

    assert _types._SIGNED_KEYS == {f.name for f in fields(dte.SignedDte)}
    assert _types._OUTCOME_KEYS == {f.name for f in fields(dte.SignOutcome)}
    docs = [document(33, folio=21), document(33, folio=9999)]
    for got in dte.sign_many(docs, [cafs[33]], cert, keyring=keyring):
        signed = got.dte
        rebuilt = dte.SignOutcome(
            got.ok, None if signed is None else dte.SignedDte(
                signed.xml, signed.id, signed.doc_type, signed.folio, signed.total,
                signed.issuer_rut, signed.receiver_rut, signed.issue_date, signed.ted_xml,
                list(signed.warnings)),
            got.error_code, got.error_message)
        assert got == rebuilt and repr(got) == repr(rebuilt)
        assert vars(got).keys() == vars(rebuilt).keys()
        if signed is not None:
            assert vars(signed) == vars(rebuilt.dte)
            assert isinstance(signed.xml, bytes) and isinstance(signed.folio, int)
    # A dict of another shape (older binding, hand-made) still goes through the tolerant path.
    odd = dte.SignOutcome._from({"ok": 1, "dte": {"xml": b"<x/>", "folio": "7"}})
    assert odd.ok is True and odd.dte is not None and odd.dte.folio == 7 and odd.error_code == ""
    with pytest.raises(AttributeError):
        odd.ok = False  # type: ignore[misc]


# --- envelopes -------------------------------------------------------------------------------


def test_envelope_dte(signed: dict[int, dte.SignedDte], cert: dte.Certificate,
                      keyring: dte.SiiKeyring) -> None:
    parts = [signed[t] for t in (33, 34, 56, 61, 52)]
    data = dte.envelope(parts, cert, resolution_date="2014-08-22", resolution_number=0)
    assert b"<EnvioDTE" in data and b"60803000-K" in data
    report = dte.verify(data, keyring=keyring)
    assert report.ok, report.failures
    assert report.kind == "EnvioDTE"
    assert len(report.documents) == 5
    assert report.check("envelope.signature")[0].passed


def test_envelope_boleta(signed: dict[int, dte.SignedDte], cert: dte.Certificate,
                         keyring: dte.SiiKeyring) -> None:
    data = dte.envelope([signed[39], signed[41]], cert, resolution_date="2014-08-22")
    assert b"<EnvioBOLETA" in data
    report = dte.verify(data, keyring=keyring)
    assert report.ok, report.failures
    assert report.kind == "EnvioBOLETA"


def test_envelope_refuses_mixed_and_empty(signed: dict[int, dte.SignedDte],
                                          cert: dte.Certificate) -> None:
    with pytest.raises(dte.DocumentError) as info:
        dte.envelope([signed[33], signed[39]], cert, boleta=False)
    assert info.value.code == "envelope.mixed"
    with pytest.raises(dte.DocumentError):
        dte.envelope([], cert, issuer=ISSUER)


# --- verification of tampered and hostile input --------------------------------------------------


def test_tampered_amount_fails(signed: dict[int, dte.SignedDte], keyring: dte.SiiKeyring) -> None:
    s = signed[33]
    total = f"<MntTotal>{s.total}</MntTotal>".encode()
    assert total in s.xml
    tampered = s.xml.replace(total, f"<MntTotal>{s.total + 1}</MntTotal>".encode())
    report = dte.verify(tampered, keyring=keyring)
    assert not report.ok
    assert {"dte.signature"} <= {c.name for c in report.failures}


XXE = b"""<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<DTE xmlns="http://www.sii.cl/SiiDte" version="1.0">&x;</DTE>"""

LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
<!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">]>
<AUTORIZACION>&lol5;</AUTORIZACION>"""

DEEP = b"<a>" * 5000 + b"</a>" * 5000


@pytest.mark.parametrize("payload", [XXE, LAUGHS, DEEP, b"<DTE><unclosed>", b"", b"\xff\xfe\x00"],
                         ids=["xxe", "billion-laughs", "deep", "malformed", "empty", "binary"])
def test_hostile_xml(payload: bytes, keyring: dte.SiiKeyring) -> None:
    report = dte.verify(payload, keyring=keyring)
    assert not report.ok
    assert report.check("xml") and report.check("xml")[0].failed
    # Not even XML: a syntax error; empty or binary input may also be refused as no CAF at all.
    expected: tuple[type[Exception], ...] = (dte.XmlSyntaxError,) if payload.strip(b"\xff\xfe\x00") \
        else (dte.XmlSyntaxError, dte.CafError)
    with pytest.raises(expected):
        dte.Caf.parse(payload)
    if dte.schema_dir() is not None:
        with pytest.raises(dte.XmlSyntaxError):
            dte.schemas().validate(payload)


def test_xxe_never_reads_files(keyring: dte.SiiKeyring) -> None:
    report = dte.verify(XXE, keyring=keyring)
    assert "root:" not in json.dumps(report.to_dict())


# --- schemas, barcode, seed, examples ------------------------------------------------------------


def test_validate_signed(signed: dict[int, dte.SignedDte], xsd_dir: Path) -> None:
    result = dte.validate(signed[33].xml)
    assert result.valid, result.errors
    assert result.schema == "DTE_v10.xsd"
    assert dte.schemas().dir == xsd_dir


def test_validate_invalid(signed: dict[int, dte.SignedDte], xsd_dir: Path) -> None:
    broken = signed[33].xml.replace(b"<Folio>1</Folio>", b"<Folio>uno</Folio>")
    result = dte.validate(broken)
    assert not result.valid and result.errors
    assert all(e.line > 0 for e in result.errors)


def test_schema_dir_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DTE_XSD_DIR", str(tmp_path / "nowhere"))
    assert dte.schema_dir() == tmp_path / "nowhere"
    with pytest.raises(dte.SchemaError):
        dte.schemas().validate(b"<DTE/>")


def test_barcode(signed: dict[int, dte.SignedDte]) -> None:
    png = dte.barcode_png(signed[33])
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert "<svg" in dte.barcode_svg(signed[33])
    payload = dte.ted_payload(signed[33])
    assert payload.startswith(b"<TED") and b"\n" not in payload


def test_sign_seed(cert: dte.Certificate) -> None:
    body = dte.sign_seed("012345678901", cert)
    assert "getToken" in body and "012345678901" in body and "SignatureValue" in body


def test_examples() -> None:
    types = dte.example_types()
    assert {str(t) for t in dte.supported_types()} <= set(types)
    assert dte.example(33)["Encabezado"]["IdDoc"]["TipoDTE"] == 33
    with pytest.raises(dte.DocumentError):
        dte.example("../etc/passwd")
    with pytest.raises(dte.DocumentError):
        dte.example(999)


def test_normalize_fills_totals() -> None:
    doc = dte.normalize(document(33))
    totals = doc["Encabezado"]["Totales"]
    assert totals["MntTotal"] == totals.get("MntNeto", 0) + totals.get("MntExe", 0) + totals.get("IVA", 0)
    original = document(33)
    dte.normalize(original)
    assert original == document(33)  # the input is not modified
    assert copy.deepcopy(doc) == dte.normalize(doc)  # idempotent
