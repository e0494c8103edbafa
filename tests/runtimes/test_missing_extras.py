"""A missing framework package fails with the pip command that installs it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from modelport.core.errors import MissingDependency
from modelport.core.types import ModelSignature, TensorSpec
from modelport.runtimes import formats, get_format
from modelport.runtimes.sklearn import save_skops
from tests.runtimes import models


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("extras")
    models.lightgbm_booster().save_model(str(d / "m.txt"))
    models.xgboost_booster().save_model(str(d / "x.json"))
    return {
        "lightgbm": d / "m.txt",
        "xgboost": d / "x.json",
        "sklearn": save_skops(models.forest(), d / "rf.skops"),
    }


@pytest.mark.parametrize(
    ("fmt", "module", "extra"),
    [
        ("lightgbm", "lightgbm", "lightgbm"),
        ("xgboost", "xgboost", "xgboost"),
        ("sklearn", "skops.io", "sklearn"),
    ],
)
def test_runtime_names_its_extra(
    files: dict[str, Path], monkeypatch: pytest.MonkeyPatch, fmt: str, module: str, extra: str
):
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError
    path = files[fmt]
    assert [f.name for f in formats() if f.sniff(path)] == [fmt]  # recognised all the same
    with pytest.raises(MissingDependency, match=rf"pip install 'modelport\[{extra}\]'"):
        get_format(fmt).inspect(path)


def test_converters_name_their_extra(monkeypatch: pytest.MonkeyPatch):
    from modelport.convert.boosters import booster_to_onnx
    from modelport.convert.sklearn import sklearn_to_onnx

    sig = ModelSignature((TensorSpec("X", "FP32", (-1, 30)),), ())
    monkeypatch.setitem(sys.modules, "onnxmltools", None)
    with pytest.raises(MissingDependency, match=r"modelport\[xgboost\]"):
        booster_to_onnx("xgboost", models.xgboost_booster(), sig, None)
    monkeypatch.setitem(sys.modules, "skl2onnx", None)
    with pytest.raises(MissingDependency, match=r"modelport\[sklearn\]"):
        sklearn_to_onnx(models.forest(), sig, None)


def test_torch_formats_name_the_torch_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import zipfile

    path = tmp_path / "m.pt"
    with zipfile.ZipFile(path, "w") as z:  # a TorchScript archive's layout
        z.writestr("m/data.pkl", b"\x80\x02.")
        z.writestr("m/code/__torch__/m.py", "")
    monkeypatch.setitem(sys.modules, "torch", None)
    assert get_format("torchscript").sniff(path)
    with pytest.raises(MissingDependency, match=r"pip install 'modelport\[torch\]'"):
        get_format("torchscript").inspect(path, sample_input={"x": models.digits()[0][:2]})
