"""Distillation into PyTorch and tree students that keep the teacher's interface."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from modelport.core.errors import InvalidArgument
from modelport.optimize import Distill
from modelport.optimize.measure import describe, predict_all
from modelport.optimize.students import parse_student
from modelport.runtimes.onnx import OnnxFormat
from tests.optimize.models import context, evaluate


def _signature(path: Path):
    return OnnxFormat().inspect(path).signature


def test_mlp_student_learns_the_digits_mlp(mlp, tmp_path: Path):
    ctx = context(mlp, "accuracy", tmp_path, data="train")
    result = Distill("mlp:32", epochs=15).apply(mlp.onnx, ctx)
    assert _signature(result.path) == _signature(mlp.onnx)  # a drop-in replacement
    assert describe(result.path).params < 0.15 * describe(mlp.onnx).params
    assert result.details["teacher_outputs"] == "logits"
    assert evaluate(result.path, ctx) >= 0.9


def test_cnn_student_on_images(cnn, tmp_path: Path):
    ctx = context(cnn, "accuracy", tmp_path, data="train")
    result = Distill("cnn:4,8", epochs=10).apply(cnn.onnx, ctx)
    assert _signature(result.path) == _signature(cnn.onnx)
    assert evaluate(result.path, ctx) >= 0.85


@pytest.mark.parametrize("student", ["tree:depth=4", "forest:n=10,depth=4"])
def test_tree_students_mimic_a_tabular_classifier(cancer, tmp_path: Path, student):
    ctx = context(cancer, "accuracy", tmp_path, data="train")
    result = Distill(student, alpha=0.3).apply(cancer.onnx, ctx)
    assert _signature(result.path) == _signature(cancer.onnx)
    out = predict_all(result.path, ctx.validation)
    assert out["label"].dtype == ctx.reference["label"].dtype
    assert set(np.unique(out["label"])) <= {0, 1}
    np.testing.assert_allclose(out["probabilities"].sum(axis=1), 1.0, atol=1e-5)
    assert evaluate(result.path, ctx) >= 0.85


def test_distillation_needs_training_data_and_a_valid_student(mlp, tmp_path: Path):
    with pytest.raises(InvalidArgument, match="--train-data"):
        Distill("mlp:8").apply(mlp.onnx, context(mlp, "accuracy", tmp_path))
    with pytest.raises(InvalidArgument, match="student kind"):
        Distill("svm:3")
    with pytest.raises(InvalidArgument, match="unknown option"):
        parse_student("tree:leaves=4")
    with pytest.raises(InvalidArgument, match="image inputs"):
        Distill("cnn:4", epochs=1).apply(mlp.onnx, context(mlp, "accuracy", tmp_path, data="train"))
