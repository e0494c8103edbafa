"""Task and prediction output: from the version's extra, else detected from real models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from modelport.core.errors import InvalidArgument
from modelport.core.types import ModelSignature, TensorSpec
from modelport.monitoring.task import TaskInfo, resolve_task
from modelport.runtimes import get_format


def signature_of(path: Path) -> ModelSignature:
    return get_format("onnx").inspect(path).signature


def test_skl2onnx_classifier_is_detected(iris_onnx: Path):
    info = resolve_task(signature_of(iris_onnx), {})
    assert info == TaskInfo("classification", "label", False, "detected")


def test_skl2onnx_regressor_is_detected(tmp_path: Path):
    from skl2onnx import to_onnx
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge

    X, y = load_diabetes(return_X_y=True)
    X = X.astype(np.float32)
    onx = to_onnx(Ridge().fit(X, y), X[:1], target_opset=17)
    path = tmp_path / "ridge.onnx"
    path.write_bytes(onx.SerializeToString())
    info = resolve_task(signature_of(path), None)
    assert (info.task, info.source) == ("regression", "detected")
    assert info.values(np.array([[1.5], [2.5]], np.float32)).tolist() == [1.5, 2.5]


def test_logits_are_classification_by_argmax():
    sig = ModelSignature(outputs=(TensorSpec("logits", "FP32", (-1, 10)),))
    info = resolve_task(sig, {})
    assert (info.task, info.prediction_output, info.argmax) == ("classification", "logits", True)
    assert info.values(np.eye(10)[[3, 7]]).tolist() == [3, 7]


def test_extra_overrides_detection(iris_onnx: Path):
    sig = signature_of(iris_onnx)
    info = resolve_task(sig, {"task": "classification", "prediction_output": "probabilities"})
    assert (info.prediction_output, info.argmax, info.source) == ("probabilities", True, "extra")
    only_task = resolve_task(sig, {"task": "classification"})
    assert only_task.prediction_output == "label"
    with pytest.raises(InvalidArgument, match="classification"):
        resolve_task(sig, {"task": "ranking"})
    with pytest.raises(InvalidArgument, match="not an output"):
        resolve_task(sig, {"prediction_output": "nope"})


def test_unknown_when_nothing_fits():
    sig = ModelSignature(outputs=(TensorSpec("a", "FP32", (-1, 4)), TensorSpec("b", "FP32", (-1,))))
    assert resolve_task(sig, {}).task is None
