"""Real SII samples (read in place from ../shared/sii, skipped when absent): the ones that
verify do, and each tampered copy fails with the check that names its defect."""
from __future__ import annotations

import pytest

import dte_native as dte

from conftest import SHARED, shared_sample

# Production CAFs are signed with IDK 300, the SII example with IDK 100; both keys ship in the
# wheel (or come from $DTE_SII_KEYS). The signers' certificates have long expired, so validity
# at signing time is what counts; the real checks here are signatures, TED and CAF.
VERIFYING = [
    "DTE--76354771-K--33--170--cleaned.xml",
    "DTE--76399752-9--33--25568--cleaned.xml",
    "DTE--60910000-1--33--2336600.xml",
    "DTE--96670340-7--61--110616.xml",
]


@pytest.fixture(scope="module")
def sii_keys() -> dte.SiiKeyring:
    ring = dte.SiiKeyring.default()
    if 300 not in ring.idks:
        certs = SHARED / "certs"
        if not (certs / "sii-caf-idk300.cer").is_file():
            pytest.skip("SII's CAF key IDK 300 is neither shipped nor in ../shared")
        ring = dte.SiiKeyring()
        ring.add_pem(100, (certs / "sii-caf-idk100.cer").read_bytes())
        ring.add_pem(300, (certs / "sii-caf-idk300.cer").read_bytes())
    return ring


def _checks(name: str, sii_keys: dte.SiiKeyring, **kw: bool) -> dte.VerifyReport:
    return dte.verify(shared_sample(name).read_bytes(), keyring=sii_keys, **kw)


@pytest.mark.parametrize("name", VERIFYING)
def test_real_sample_verifies(name: str, sii_keys: dte.SiiKeyring) -> None:
    report = _checks(name, sii_keys, check_schema=False)
    failures = [c for c in report.failures if c.name != "cert.validity"]
    assert not failures, failures
    for check in ("dte.signature", "ted.frmt", "ted.caf"):
        assert any(c.passed for c in report.check(check)), (check, report.checks)


def test_sii_official_example_envelope(sii_keys: dte.SiiKeyring) -> None:
    report = _checks("F60T33-ejemplo-oficial-SII.xml", sii_keys, check_schema=False)
    assert report.kind == "EnvioDTE"
    assert report.check("envelope.signature")[0].passed
    assert any(c.passed for c in report.check("ted.frmt"))


BROKEN = [
    ("DTE--76354771-K--33--170--cleaned-mod-changed-monto.xml", {"dte.signature", "ted.frmt"}),
    ("DTE--76354771-K--33--170--cleaned-mod-replaced-cert.xml", {"dte.signature"}),
    ("DTE--76354771-K--33--170--cleaned-mod-removed-signature.xml", {"dte.signature"}),
    ("DTE--76354771-K--33--170--cleaned-mod-empty-emails.xml", {"dte.signature"}),
]


@pytest.mark.parametrize("name,expected", BROKEN, ids=[b[0].split("mod-")[1] for b in BROKEN])
def test_broken_sample_fails_with_the_right_check(name: str, expected: set[str],
                                                   sii_keys: dte.SiiKeyring) -> None:
    report = _checks(f"broken/{name}", sii_keys, check_schema=False)
    assert not report.ok
    failed = {c.name for c in report.failures}
    assert expected <= failed, report.failures


def test_bad_cert_sample_fails_key_match(sii_keys: dte.SiiKeyring) -> None:
    # The signature verifies with RSAKeyValue, but X509Certificate no longer holds that key.
    report = _checks("broken/DTE--76354771-K--33--170--cleaned-mod-bad-cert.xml", sii_keys,
                     check_schema=False)
    assert not report.ok
    assert "cert.key_match" in {c.name for c in report.failures}, report.checks


def test_schema_invalid_sample(sii_keys: dte.SiiKeyring) -> None:
    if dte.schema_dir() is None:
        pytest.skip("no XSDs")
    path = shared_sample("broken/DTE--76354771-K--33--170--cleaned-mod-bad-cert-no-base64.xml")
    assert not dte.validate(path.read_bytes()).valid
    assert dte.validate(shared_sample(VERIFYING[0]).read_bytes()).valid


def test_public_only_caf_from_sample(sii_keys: dte.SiiKeyring) -> None:
    path = SHARED / "caf" / "CAF-public-only--from-DTE--76354771-K--33--170.xml"
    if not path.is_file():
        pytest.skip(f"{path} absent")
    caf = dte.Caf.load(path)
    assert not caf.info.has_private_key and caf.info.idk == 300
    caf.verify(sii_keys)
