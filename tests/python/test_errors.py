"""Every C++ exception class reaches Python as its own class, with its code, catchable both as
DteError and as the fitting builtin."""
from __future__ import annotations

import pickle

import pytest

import dte_native as dte
from dte_native import _core

MAPPING = [
    ("xml", dte.XmlSyntaxError, ValueError),
    ("rut", dte.RutError, ValueError),
    ("cert", dte.CertificateError, ValueError),
    ("caf", dte.CafError, ValueError),
    ("signature", dte.SignatureError, RuntimeError),
    ("document", dte.DocumentError, ValueError),
    ("schema", dte.SchemaError, RuntimeError),
]


@pytest.mark.parametrize("kind,cls,builtin", MAPPING)
def test_each_class_is_translated(kind: str, cls: type, builtin: type) -> None:
    with pytest.raises(cls) as info:
        _core._raise_for_test(kind, f"{kind}.some_code")
    assert isinstance(info.value, dte.DteError)
    assert isinstance(info.value, builtin)
    assert info.value.code == f"{kind}.some_code"
    assert str(info.value) == kind


def test_base_class_for_other_codes() -> None:
    with pytest.raises(dte.DteError) as info:
        _core._raise_for_test("other", "unimplemented")
    assert type(info.value) is dte.DteError
    assert info.value.code == "unimplemented"


def test_errors_pickle_with_their_code() -> None:
    e = dte.CafError("CAF of another RUT", "caf.wrong_rut")
    back = pickle.loads(pickle.dumps(e))
    assert type(back) is dte.CafError and back.code == "caf.wrong_rut"
    assert back.message == "CAF of another RUT"


def test_rut_helpers() -> None:
    assert dte.rut_normalize("76.192.083-9") == "76192083-9"
    assert dte.rut_format("761920839") == "76.192.083-9"
    assert dte.rut_check_digit(60803000) == "K"
    assert dte.rut_is_valid("60803000-k")
    assert not dte.rut_is_valid("76192083-1")
    with pytest.raises(dte.RutError) as info:
        dte.rut_normalize("76192083-1")
    assert info.value.code == "rut.check_digit"
