"""Certification ("set de pruebas") made easy: parse SII's sets, build and sign every case's
document with the references SII wants, the books, the simulation batch, the exchange answers
and the printed samples, then send everything to SII or the local simulator.

>>> from dte_native import certify
>>> s = certify.parse_set("001-basico.txt")  # doctest: +SKIP
>>> [c.doc_type for c in s.cases]  # doctest: +SKIP
[33, 33, 33, 33, 61, 61, 61, 56]

See docs/CERTIFY.md for the step-by-step guide and ``dte certify --help``.
"""
from __future__ import annotations

from .builder import Company, Issued, build_case
from .parser import BoletaCase, Case, Line, PurchaseEntry, SetError, TestSet, parse_set
from .runner import Options, Result, Upload, load_company, run

__all__ = ["BoletaCase", "Case", "Company", "Issued", "Line", "Options", "PurchaseEntry", "Result",
           "SetError", "TestSet", "Upload", "build_case", "load_company", "parse_set", "run"]
