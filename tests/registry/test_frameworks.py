"""Framework models in the registry: detection by content, trust, refusals, importers."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import modelport
from modelport.core.config import Settings
from modelport.core.errors import InvalidArgument, InvalidModel, NotFound, UnsupportedFormat
from modelport.registry import Registry
from modelport.registry.importers import (
    import_mlflow,
    import_triton,
    parse_text_proto,
    read_triton_config,
)
from modelport.runtimes.sklearn import save_skops
from modelport.runtimes.torch_tools import export_program, save_program, trace_module
from tests.runtimes import models


def blob_count(reg: Registry) -> int:
    return sum(1 for _ in reg.store.blobs())


def state(reg: Registry) -> tuple[object, int]:
    return [(m.name, m.version_count) for m in reg.list()], blob_count(reg)


@pytest.fixture
def local(tmp_path: Path) -> Iterator[Registry]:
    reg = Registry.from_settings(Settings(home=tmp_path / "home"))
    yield reg
    reg.close()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One file per format, each under a misleading name."""
    d = tmp_path_factory.mktemp("files")
    X, _ = models.digits()
    out = {
        "sklearn": save_skops(models.pipeline(), d / "pipeline.onnx"),
        "lightgbm": d / "booster.json",
        "xgboost": d / "booster.txt",
        "torchscript": d / "mlp.pt2",
        "torch-export": d / "text.pt",
    }
    models.lightgbm_booster().save_model(str(out["lightgbm"]))
    models.xgboost_booster().save_model(str(d / "x.json"))
    (d / "x.json").rename(out["xgboost"])
    trace_module(models.mlp(), {"x": X[:4]}).save(str(out["torchscript"]))
    program = export_program(models.text_model(), models.text_sample(), keywords=True)
    save_program(program, out["torch-export"])
    return out


SAMPLES = {
    "sklearn": lambda: models.cancer()[0][:8],
    "lightgbm": lambda: models.digits()[0][:8],
    "xgboost": lambda: models.cancer()[0][:8],
    "torchscript": lambda: {"x": models.digits()[0][:8]},
    "torch-export": None,
}


@pytest.mark.parametrize("fmt", list(SAMPLES))
def test_format_is_detected_from_content_not_extension(
    local: Registry, files: dict[str, Path], fmt: str
):
    assert local.detect(files[fmt]).name == fmt
    sample = SAMPLES[fmt]
    v = local.register(files[fmt], fmt, sample_input=sample() if sample else None)
    assert v.format == fmt
    assert v.trusted is False
    assert v.lineage.tool_versions["modelport"]
    assert v.signature.inputs


def test_framework_names_select_among_their_formats(local: Registry, files: dict[str, Path]):
    assert local.detect(files["torch-export"], "pytorch").name == "torch-export"
    assert local.detect(files["torchscript"], "torch").name == "torchscript"
    with pytest.raises(InvalidModel, match=r"not a torch\.export archive"):
        local.register(files["sklearn"], "x", framework="pytorch")
    with pytest.raises(UnsupportedFormat, match=r"frameworks: .*pytorch.*supported formats: onnx"):
        local.register(files["sklearn"], "x", framework="caffe")


def test_unknown_and_corrupt_files_leave_the_registry_unchanged(
    local: Registry, files: dict[str, Path], tmp_path: Path
):
    local.register(files["lightgbm"], "digits")
    before = state(local)
    notes = tmp_path / "notes.txt"
    notes.write_text("hello\n")
    with pytest.raises(UnsupportedFormat, match=r"unrecognised .*supported: onnx, sklearn"):
        local.register(notes, "digits")
    for fmt in ("sklearn", "lightgbm", "xgboost", "torch-export"):
        data = files[fmt].read_bytes()
        cut = tmp_path / f"cut-{fmt}"
        cut.write_bytes(data[: len(data) // 2])
        with pytest.raises((InvalidModel, UnsupportedFormat)):
            local.register(cut, "digits", framework=fmt)
    assert state(local) == before
    assert local.check().ok


def test_malicious_pickle_never_runs_and_leaves_no_trace(registry: Registry, tmp_path: Path):
    """Both backends: refused without trust, the payload's canary never appears."""
    canary = tmp_path / "canary"
    before = state(registry)
    for path in (
        models.malicious_joblib(tmp_path / "model.joblib", canary),
        models.malicious_pickle(tmp_path / "model.pkl", canary),
        models.malicious_torch_pickle(tmp_path / "model.pth", canary),
    ):
        with pytest.raises(InvalidModel, match="--trust"):
            registry.register(path, "evil", sample_input=np.zeros((1, 30), np.float32))
        assert not canary.exists()
    with pytest.raises(InvalidModel, match="--trust"):
        registry.register(tmp_path / "model.joblib", "evil", framework="sklearn")
    assert not canary.exists()
    assert state(registry) == before


def test_trust_is_recorded_only_where_it_was_needed(local: Registry, tmp_path: Path):
    import joblib

    X, _ = models.cancer()
    joblib.dump(models.forest(), tmp_path / "rf.joblib")
    v = local.register(tmp_path / "rf.joblib", "rf", sample_input=X[:5], trust=True)
    assert (v.format, v.trusted, v.extra["requires_trust"]) == ("sklearn-pickle", True, True)
    safe = local.register_object(models.forest(), "rf", sample_input=X[:5])
    assert (safe.format, safe.trusted) == ("sklearn", False)
    assert local.register(tmp_path / "rf.joblib", "rf", sample_input=X[:5], trusted=True).trusted


def test_live_objects_need_a_known_framework_and_torch_needs_a_sample(local: Registry):
    with pytest.raises(InvalidArgument, match="supported: scikit-learn"):
        modelport.register({"weights": [1, 2]}, name="dict", registry=local)
    with pytest.raises(InvalidArgument, match="sample_input"):
        local.register_object(models.mlp(), "mlp")
    assert local.list() == []


def test_top_level_register_takes_paths_too(local: Registry, files: dict[str, Path]):
    v = modelport.register(files["xgboost"], name="xgb", registry=local)
    assert (v.ref, v.format) == ("xgb:1", "xgboost")


# ----------------------------------------------------------------------------- MLflow


def _mlmodel(directory: Path, flavors: dict[str, object], **extra: object) -> Path:
    import yaml

    directory.mkdir(parents=True, exist_ok=True)
    meta = {"artifact_path": "model", "flavors": flavors, "run_id": "abc123", **extra}
    (directory / "MLmodel").write_text(yaml.safe_dump(meta))
    return directory


def test_mlflow_onnx_and_skops_flavors(local: Registry, iris_onnx: Path, tmp_path: Path):
    d = _mlmodel(tmp_path / "onnx_model", {"onnx": {"data": "model.onnx"}})
    shutil.copy(iris_onnx, d / "model.onnx")
    v = import_mlflow(local, d, name="iris")
    assert (v.format, v.tags["mlflow.run_id"]) == ("onnx", "abc123")
    assert v.lineage.operation == "import"
    assert v.lineage.params["flavor"] == "onnx"

    spec = json.dumps([{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 30]}}])
    d = _mlmodel(
        tmp_path / "skops_model",
        {"sklearn": {"pickled_model": "model.skops", "serialization_format": "skops"}},
        signature={"inputs": spec},
    )
    save_skops(models.pipeline(), d / "model.skops")
    v = import_mlflow(local, d, name="cancer")
    assert v.format == "sklearn"
    assert [(t.name, t.shape) for t in v.signature.inputs] == [("X", (-1, 30))]


def test_mlflow_pickled_flavors_need_trust(local: Registry, tmp_path: Path):
    import joblib
    import torch

    d = _mlmodel(
        tmp_path / "sk",
        {"sklearn": {"pickled_model": "model.pkl", "serialization_format": "cloudpickle"}},
        signature={"inputs": json.dumps([{"type": "double", "name": f"f{i}"} for i in range(30)])},
    )
    joblib.dump(models.forest(), d / "model.pkl")
    with pytest.raises(InvalidModel, match="--trust"):
        import_mlflow(local, d, name="rf")
    assert local.list() == []
    v = import_mlflow(local, d, name="rf", trust=True)
    assert (v.format, v.trusted) == ("sklearn-pickle", True)

    spec = json.dumps([{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 64]}}])
    d = _mlmodel(tmp_path / "pt", {"pytorch": {"model_data": "data"}}, signature={"inputs": spec})
    (d / "data").mkdir()
    torch.save(models.mlp(), str(d / "data" / "model.pth"))
    with pytest.raises(InvalidModel, match="--trust"):
        import_mlflow(local, d, name="mlp")
    v = import_mlflow(local, d, name="mlp", trust=True)
    assert v.format == "torch-pickle"
    assert v.signature.inputs[0].shape == (-1, 64)


def test_mlflow_paths_may_not_leave_the_model_directory(local: Registry, tmp_path: Path):
    d = _mlmodel(tmp_path / "m", {"onnx": {"data": "../outside.onnx"}})
    (tmp_path / "outside.onnx").write_bytes(b"x")
    with pytest.raises(InvalidModel, match="outside the model directory"):
        import_mlflow(local, d, name="m")
    with pytest.raises(NotFound, match="no MLmodel"):
        import_mlflow(local, tmp_path, name="m")


# ----------------------------------------------------------------------------- Triton

IRIS_CONFIG = """
name: "iris"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [ { name: "X" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [
  { name: "label" data_type: TYPE_INT64 dims: [ ] },
  { name: "probabilities" data_type: TYPE_FP32 dims: [ 3 ] }
]
"""


def test_triton_repository_versions_and_config(
    local: Registry, iris_onnx: Path, iris_onnx_b: Path, tmp_path: Path
):
    repo = tmp_path / "repo"
    for version, src in (("1", iris_onnx), ("2", iris_onnx_b)):
        (repo / "iris" / version).mkdir(parents=True)
        shutil.copy(src, repo / "iris" / version / "model.onnx")
    (repo / "iris" / "config.pbtxt").write_text(IRIS_CONFIG)
    (repo / "cnn" / "1").mkdir(parents=True)
    trace_module(models.cnn(), {"x": models.digits()[0][:4].reshape(-1, 1, 8, 8)}).save(
        str(repo / "cnn" / "1" / "model.pt")
    )
    (repo / "cnn" / "config.pbtxt").write_text(
        'platform: "pytorch_libtorch"\nmax_batch_size: 16\n'
        'input [{ name: "INPUT__0" data_type: TYPE_FP32 dims: [1, 8, 8] }]\n'
        'output [{ name: "OUTPUT__0" data_type: TYPE_FP32 dims: [10] }]\n'
    )
    versions = import_triton(local, repo)
    assert [v.ref for v in versions] == ["cnn:1", "iris:1", "iris:2"]
    cnn, iris = versions[0], versions[1]
    assert cnn.format == "torchscript"
    assert [(t.name, t.shape) for t in cnn.signature.inputs] == [("INPUT__0", (-1, 1, 8, 8))]
    assert iris.extra["max_batch_size"] == 8
    assert iris.lineage.params["triton_version"] == 1
    assert [(t.name, t.shape) for t in iris.signature.outputs] == [
        ("label", (-1,)),
        ("probabilities", (-1, 3)),
    ]


def test_triton_config_that_contradicts_the_model_registers_nothing(
    local: Registry, iris_onnx: Path, tmp_path: Path
):
    repo = tmp_path / "repo"
    (repo / "iris" / "1").mkdir(parents=True)
    shutil.copy(iris_onnx, repo / "iris" / "1" / "model.onnx")
    (repo / "iris" / "config.pbtxt").write_text(
        IRIS_CONFIG.replace("TYPE_FP32 dims: [ 4 ]", "TYPE_INT32 dims: [ 4 ]")
    )
    with pytest.raises(InvalidModel, match="'X' is INT32, the model says FP32"):
        import_triton(local, repo)
    (repo / "iris" / "config.pbtxt").write_text(IRIS_CONFIG.replace("dims: [ 4 ]", "dims: [ 5 ]"))
    with pytest.raises(InvalidModel, match="shape"):
        import_triton(local, repo, model="iris")
    assert local.list() == []


def test_pbtxt_parsers_agree(tmp_path: Path):
    path = tmp_path / "config.pbtxt"
    path.write_text(IRIS_CONFIG + "# a comment\ndefault_model_filename: 'model.onnx'\n")
    parsed = parse_text_proto(path.read_text())
    assert parsed["max_batch_size"] == ["8"]
    assert parsed["input"][0]["dims"] == ["4"]
    config = read_triton_config(path)
    assert config["name"] == "iris"
    assert int(config["max_batch_size"]) == 8
    assert [int(d) for d in config["input"][0]["dims"]] == [4]
    assert config["output"][1]["data_type"] == "TYPE_FP32"


def test_stored_sample_is_keyed_and_checked_like_the_signature(
    local: Registry, files: dict[str, Path], iris_onnx: Path
):
    from modelport.runtimes.sample import load_sample_file

    ids, mask = models.text_sample().values()
    v = local.register(files["torch-export"], "text", sample_input={"a": ids, "b": mask})
    stored = load_sample_file(local.open(v) / "sample_input.npz")
    assert list(stored) == ["input_ids", "attention_mask"]
    v = local.register(iris_onnx, "iris", sample_input=np.zeros((3, 4), np.float32))
    assert "sample_input.npz" in {f.path for f in v.files}
    with pytest.raises(InvalidArgument, match=r"shape \[3, 5\]"):
        local.register(iris_onnx, "iris", sample_input=np.zeros((3, 5), np.float32))
    assert [x.version for x in local.versions("iris")] == [1]
