"""The GIL is released around C++ work: signing and verifying from many Python threads at once
gives the same, correct results (correctness only; timing is for benchmarks)."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import dte_native as dte

from conftest import document


def test_sign_and_verify_in_threads(cafs: dict[int, dte.Caf], cert: dte.Certificate,
                                    keyring: dte.SiiKeyring) -> None:
    def work(folio: int) -> tuple[int, bool]:
        s = dte.sign(document(33, folio=folio), cafs[33], cert, keyring=keyring)
        return s.folio, dte.verify(s.xml, keyring=keyring).ok

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(work, range(100, 124)))
    assert results == [(f, True) for f in range(100, 124)]


def test_sign_many_in_threads(cafs: dict[int, dte.Caf], cert: dte.Certificate,
                              keyring: dte.SiiKeyring) -> None:
    def batch(start: int) -> list[int]:
        docs = [document(61, folio=f) for f in range(start, start + 8)]
        outcomes = dte.sign_many(docs, cafs[61], cert, keyring=keyring, threads=2)
        assert all(o.ok for o in outcomes), [o.error_message for o in outcomes]
        return [o.dte.folio for o in outcomes if o.dte]

    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(batch, [200, 300, 400]))
    assert results == [list(range(s, s + 8)) for s in (200, 300, 400)]


def test_validate_in_threads(signed: dict[int, dte.SignedDte]) -> None:
    if dte.schema_dir() is None:
        return
    schemas = dte.schemas()
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda t: schemas.validate(signed[t].xml).valid, [33, 34, 56, 61] * 4))
    assert all(results)
