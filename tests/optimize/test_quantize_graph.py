"""Quantization (dynamic, static with each calibration method, fp16) and graph passes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from modelport.core.errors import InvalidArgument
from modelport.optimize import GraphOptimize, Quantize
from modelport.optimize.measure import describe, predict_all
from modelport.optimize.onnx_model import load_model
from tests.optimize.models import context, evaluate


def test_dynamic_int8_shrinks_the_encoder_and_keeps_its_embeddings(encoder, tmp_path: Path):
    ctx = context(encoder, "cosine", tmp_path, data="none")
    result = Quantize("dynamic").apply(encoder.onnx, ctx)
    # The graph itself (shape arithmetic) is a large share of this tiny model's file.
    assert describe(result.path).size_bytes < 0.65 * describe(encoder.onnx).size_bytes
    assert result.details["quantized_ops"]["DynamicQuantizeLinear"] > 0
    assert evaluate(result.path, ctx) > 0.99


@pytest.mark.parametrize("method", ["minmax", "entropy", "percentile"])
def test_static_qdq_int8_on_the_cnn_with_each_calibration_method(cnn, tmp_path: Path, method):
    ctx = context(cnn, "accuracy", tmp_path)
    result = Quantize("static", calibration_method=method, per_channel=True).apply(cnn.onnx, ctx)
    ops = {n.op_type for n in load_model(result.path).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert result.details["calibration_rows"] == 200
    parent = evaluate(cnn.onnx, ctx)
    assert evaluate(result.path, ctx) >= parent - 0.03


def test_static_needs_calibration_data(mlp, tmp_path: Path):
    ctx = context(mlp, "accuracy", tmp_path, data="none")
    with pytest.raises(InvalidArgument, match="--calibration-data"):
        Quantize("static").apply(mlp.onnx, ctx)


def test_excluded_nodes_stay_in_float_and_unknown_names_are_refused(mlp, tmp_path: Path):
    ctx = context(mlp, "accuracy", tmp_path)
    first = next(n.name for n in load_model(mlp.onnx).graph.node if n.op_type == "Gemm")
    result = Quantize("dynamic", exclude_nodes=(first,)).apply(mlp.onnx, ctx)
    layer = [n.op_type for n in load_model(result.path).graph.node if n.name.startswith(first)]
    assert layer
    assert "MatMulInteger" not in layer
    assert result.details["quantized_ops"]["MatMulInteger"] == 2
    with pytest.raises(InvalidArgument, match="no node named"):
        Quantize("dynamic", exclude_nodes=("nope",)).apply(mlp.onnx, ctx)
    with pytest.raises(InvalidArgument, match="choose"):
        Quantize("int4")


def test_fp16_halves_the_weights_and_keeps_float32_io(mlp, tmp_path: Path):
    ctx = context(mlp, "accuracy", tmp_path)
    result = Quantize("fp16").apply(mlp.onnx, ctx)
    assert describe(result.path).size_bytes < 0.6 * describe(mlp.onnx).size_bytes
    out = predict_all(result.path, ctx.validation)
    assert out["logits"].dtype == np.float32
    np.testing.assert_allclose(out["logits"], ctx.reference["logits"], atol=0.05)


def test_graph_optimization_keeps_outputs(cnn, tmp_path: Path):
    ctx = context(cnn, "accuracy", tmp_path, data="none")
    result = GraphOptimize("extended").apply(cnn.onnx, ctx)
    assert result.details["nodes_after"] <= result.details["nodes_before"]
    np.testing.assert_allclose(
        predict_all(result.path, ctx.validation)["logits"], ctx.reference["logits"], atol=1e-4
    )


@pytest.mark.parametrize("mode", ["dynamic", "static"])
def test_int8_on_a_scikit_learn_pipeline_with_ml_operators(cancer, tmp_path: Path, mode):
    ctx = context(cancer, "accuracy", tmp_path)
    result = Quantize(mode).apply(cancer.onnx, ctx)
    assert result.details["quantized_ops"]
    assert evaluate(result.path, ctx) >= evaluate(cancer.onnx, ctx) - 0.02
