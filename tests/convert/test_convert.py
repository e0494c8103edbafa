"""Every framework through the Python API: register, run natively, convert, prove parity."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import modelport
from modelport.convert import ParityFailed, Tolerance, convert
from modelport.core.config import Settings
from modelport.core.errors import InvalidArgument, UnsupportedFormat
from modelport.registry import ModelVersion, Registry
from modelport.runtimes import LoadSpec, load_runtime
from tests.runtimes import models
from tests.runtimes.models import CASES, Case


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    reg = Registry.from_settings(Settings(home=tmp_path_factory.mktemp("home")))
    yield reg
    reg.close()


def run(reg: Registry, v: ModelVersion, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    spec = LoadSpec(reg.open(v), v.entry, v.signature, v.extra, v.trusted)
    rt = load_runtime(v.format, spec)
    try:
        return rt.predict(inputs)
    finally:
        rt.close()


def native_reference(case: Case, sample: dict[str, np.ndarray]) -> np.ndarray:
    """What the framework object itself predicts (labels, or logits for torch)."""
    model = case.model()
    if case.framework == "sklearn":
        return np.asarray(model.predict(sample["X"]))
    if case.framework == "lightgbm":
        return np.asarray(model.predict(sample["X"])).argmax(axis=1)
    if case.framework == "xgboost":
        import xgboost as xgb

        return (model.predict(xgb.DMatrix(sample["X"])) > 0.5).astype(np.int64)
    import torch

    with torch.no_grad():
        out = model(*(torch.from_numpy(a) for a in sample.values()))
    return (out["logits"] if isinstance(out, dict) else out).numpy()


TABULAR_AND_VISION = [c for c in CASES if c.name != "text"]  # text: its own test below


@pytest.mark.parametrize("case", TABULAR_AND_VISION, ids=[c.name for c in TABULAR_AND_VISION])
def test_register_run_convert_with_parity(registry: Registry, case: Case):
    v1 = modelport.register(
        case.model(), name=case.name, sample_input=case.inputs(), registry=registry
    )
    assert v1.framework == case.framework
    assert v1.lineage.params["source"] == "python-object"
    assert "sample_input.npz" in {f.path for f in v1.files}
    sample = {k: np.asarray(a) for k, a in models_sample(case, v1).items()}

    native = run(registry, v1, sample)
    reference = native_reference(case, sample)
    if case.framework == "pytorch":
        key = "logits" if "logits" in native else "output"
        np.testing.assert_allclose(native[key], reference, atol=1e-5)
    else:
        np.testing.assert_array_equal(native["label"], reference)

    result = convert(registry, v1.ref, to="onnx")
    v2 = result.version
    assert (v2.name, v2.version, v2.format) == (case.name, v1.version + 1, "onnx")
    assert result.parity.passed, result.parity.summary()
    assert v2.lineage.operation == "convert"
    assert v2.lineage.parent == v1.ref
    assert v2.lineage.params["parity"]["passed"] is True
    assert v2.lineage.params["opset"] == v2.extra["opset"].get("ai.onnx")
    assert "onnx" in v2.lineage.tool_versions
    assert v2.metrics["parity_max_abs_error"] < 1e-3
    assert [t.name for t in v2.signature.inputs] == [t.name for t in v1.signature.inputs]
    assert [t.name for t in v2.signature.outputs] == [t.name for t in v1.signature.outputs]
    converted = run(registry, v2, sample)
    for name, value in native.items():
        if value.dtype.kind == "f":
            np.testing.assert_allclose(converted[name], value, atol=1e-4, rtol=1e-3)
        else:
            np.testing.assert_array_equal(converted[name], value)
    if case.framework == "pytorch":
        ts = convert(registry, v1.ref, to="torchscript")
        assert ts.version.format == "torchscript"
        assert ts.parity.passed
        assert ts.parity.max_abs_error < 1e-5
        assert ts.version.signature.inputs[0].shape[0] == -1


def models_sample(case: Case, v: ModelVersion) -> dict[str, np.ndarray]:
    from modelport.runtimes.sample import as_sample

    return as_sample(case.inputs(), v.signature.inputs[0].name)


def test_text_model_keeps_a_dynamic_sequence_axis_in_onnx_and_torchscript(registry: Registry):
    """Token ids + attention mask as a dict sample; sequences of any length afterwards."""
    v1 = modelport.register(
        models.text_model(), name="text", sample_input=models.text_sample(), registry=registry
    )
    assert v1.format == "torch-export"
    assert [t.shape for t in v1.signature.inputs] == [(-1, -1), (-1, -1)]
    assert [t.name for t in v1.signature.outputs] == ["logits", "pooled"]
    s = models.text_sample(rows=3, length=20)
    np.testing.assert_allclose(
        run(registry, v1, s)["logits"], native_reference(CASES[-1], s), atol=1e-5
    )
    onnx_result = convert(registry, v1.ref, to="onnx")
    assert onnx_result.parity.passed, onnx_result.parity.summary()
    assert onnx_result.version.lineage.params["opset"] == 18
    onnx_v = onnx_result.version
    assert [t.shape for t in onnx_v.signature.inputs] == [(-1, -1), (-1, -1)]
    ts = convert(registry, v1.ref, to="torchscript")
    assert ts.version.format == "torchscript"
    assert any("axis 1" in b for b in ts.parity.batches)  # a shorter sequence was checked
    for length in (3, 64):
        s = models.text_sample(rows=2, length=length)
        want = run(registry, v1, s)["logits"]
        np.testing.assert_allclose(run(registry, onnx_v, s)["logits"], want, atol=1e-4)
        np.testing.assert_allclose(run(registry, ts.version, s)["logits"], want, atol=1e-5)


def test_failed_parity_registers_nothing_unless_forced(registry: Registry, tmp_path: Path):
    X, _ = models.cancer()
    v1 = registry.register_object(models.pipeline(), "strict", sample_input=X[:30])
    exact = Tolerance(atol=0.0, rtol=0.0)
    with pytest.raises(ParityFailed, match="nothing was registered") as failure:
        convert(registry, v1.ref, to="onnx", tolerance=exact)
    assert not failure.value.report.passed
    assert [v.version for v in registry.versions("strict")] == [1]
    forced = convert(registry, v1.ref, to="onnx", tolerance=exact, force=True)
    assert forced.version.version == 2
    assert forced.version.tags["parity"] == "failed"
    assert forced.version.lineage.params["forced"] is True
    assert forced.version.metrics["parity_passed"] == 0.0


def test_validation_data_and_opset_are_honoured(registry: Registry, tmp_path: Path):
    X, _ = models.cancer()
    v1 = registry.register_object(models.forest(), "forest-val", sample_input=X[:10])
    np.savez(tmp_path / "val.npz", X=X, y=np.zeros(len(X)))  # extra arrays are ignored
    result = convert(registry, v1.ref, to="onnx", opset=15, validation_data=tmp_path / "val.npz")
    assert result.parity.rows == 10 + len(X) + 1  # sample, all of X, a batch of one
    assert result.version.lineage.params["opset"] == 15
    assert result.version.extra["opset"]["ai.onnx"] == 15
    assert result.version.extra["classes"] == [0, 1]


def test_unsupported_routes_and_options_are_refused(registry: Registry):
    X, _ = models.digits()
    v = registry.register_object(models.lightgbm_booster(), "lgb-routes", sample_input=X[:5])
    with pytest.raises(UnsupportedFormat, match="converts to: onnx"):
        convert(registry, v.ref, to="torchscript")
    with pytest.raises(InvalidArgument, match="up to opset 15"):
        convert(registry, v.ref, to="onnx", opset=18)
    with pytest.raises(InvalidArgument, match="cannot convert to"):
        convert(registry, v.ref, to="tflite")
    onnx_v = convert(registry, v.ref).version
    with pytest.raises(UnsupportedFormat, match="converts to: none"):
        convert(registry, onnx_v.ref)
