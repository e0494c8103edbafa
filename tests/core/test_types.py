from __future__ import annotations

import pytest

from modelport.core.config import Settings
from modelport.core.errors import InvalidArgument, InvalidName
from modelport.core.types import ModelRef, ModelSignature, TensorSpec, validate_name


@pytest.mark.parametrize("name", ["iris", "a", "A9._-x", "model..1", "x" * 128, "1abc"])
def test_valid_names(name: str):
    assert validate_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        ".",
        "..",
        "../x",
        "a/b",
        "a\\b",
        "/etc/passwd",
        "%2e%2e%2f",
        "x\x00",
        " ..",
        "_x",
        "x" * 129,
        "ü",
    ],
)
def test_invalid_names(name: str):
    with pytest.raises(InvalidName):
        validate_name(name)


def test_refs_parse_and_print():
    assert ModelRef.parse("iris") == ModelRef("iris")
    assert ModelRef.parse("iris:12") == ModelRef("iris", version=12)
    assert ModelRef.parse("iris@prod") == ModelRef("iris", alias="prod")
    for text in ("iris", "iris:12", "iris@prod"):
        assert str(ModelRef.parse(text)) == text
    for bad in ("", "iris:", "iris:v1", "iris:0", "iris:１", "iris@", "../x:1", "a@b@c"):
        with pytest.raises(InvalidArgument):
            ModelRef.parse(bad)


def test_signature_roundtrip_and_validation():
    sig = ModelSignature((TensorSpec("x", "FP32", (-1, 4)),), (TensorSpec("y", "INT64", (-1,)),))
    assert ModelSignature.from_dict(sig.to_dict()) == sig
    assert sig.input("x").shape == (-1, 4)
    with pytest.raises(InvalidArgument):
        sig.input("z")
    with pytest.raises(InvalidArgument):
        TensorSpec("x", "FLOAT", (1,))
    with pytest.raises(InvalidArgument):
        TensorSpec("x", "FP32", (-2,))


def test_settings_read_the_modelport_prefix(monkeypatch: pytest.MonkeyPatch, tmp_path):
    monkeypatch.setenv("MODELPORT_HOME", str(tmp_path))
    monkeypatch.setenv("MODELPORT_STORE_URL", "s3://bucket/prefix")
    s = Settings()
    assert s.home == tmp_path
    assert s.resolved_registry_url() == f"sqlite:///{tmp_path}/registry.db"
    assert s.resolved_store_url() == "s3://bucket/prefix"
    monkeypatch.delenv("MODELPORT_HOME")
    assert str(Settings().home).endswith(".modelport")
