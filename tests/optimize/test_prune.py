"""Magnitude and structured pruning on ONNX graphs, and on PyTorch modules before export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from modelport.core.errors import InvalidArgument
from modelport.optimize import Prune, Quantize, prune_module
from modelport.optimize.measure import describe
from modelport.optimize.onnx_model import GraphIndex, load_model
from modelport.optimize.prune import find_chains
from tests.optimize.models import context, evaluate, export


def _weights(path: Path, op: str) -> list[tuple[int, ...]]:
    model = load_model(path)
    g = GraphIndex(model)
    return [g.require_const(n.input[1]).shape for n in model.graph.node if n.op_type == op]


def test_magnitude_pruning_zeroes_weights_without_shrinking(mlp, tmp_path: Path):
    ctx = context(mlp, "accuracy", tmp_path)
    result = Prune(0.5).apply(mlp.onnx, ctx)
    before, after = describe(mlp.onnx), describe(result.path)
    assert after.params == before.params
    assert after.nonzero_params < 0.6 * before.nonzero_params
    assert all(s >= 0.5 for s in result.details["sparsity"].values())
    assert "zeros only" in result.notes[0]
    assert evaluate(result.path, ctx) >= evaluate(mlp.onnx, ctx) - 0.05


def test_structured_pruning_halves_the_mlp_hidden_layers(mlp, tmp_path: Path):
    ctx = context(mlp, "accuracy", tmp_path)
    result = Prune(0.5, structured=True).apply(mlp.onnx, ctx)
    # torch's Linear exports as Gemm with transB=1: weights are (out, in)
    assert _weights(result.path, "Gemm") == [(64, 64), (64, 64), (10, 64)]
    assert describe(result.path).params < 0.4 * describe(mlp.onnx).params
    assert [layer["refit"] for layer in result.details["layers"]] == ["refitted", "refitted"]
    assert evaluate(result.path, ctx) >= evaluate(mlp.onnx, ctx) - 0.015


def test_structured_pruning_removes_cnn_channels_through_pool_and_flatten(cnn, tmp_path: Path):
    ctx = context(cnn, "accuracy", tmp_path)
    chains = find_chains(load_model(cnn.onnx))
    assert [(c.producer.op_type, c.consumer.op_type, c.group) for c in chains] == [
        ("Conv", "Conv", 1),
        ("Conv", "Gemm", 16),
    ]
    result = Prune(0.5, structured=True).apply(cnn.onnx, ctx)
    assert _weights(result.path, "Conv") == [(8, 1, 3, 3), (16, 8, 3, 3)]
    assert _weights(result.path, "Gemm") == [(10, 256)]
    assert evaluate(result.path, ctx) >= evaluate(cnn.onnx, ctx) - 0.03


def test_structured_pruning_of_a_scikit_learn_mlp_keeps_its_labels(cancer, tmp_path: Path):
    ctx = context(cancer, "accuracy", tmp_path)
    result = Prune(0.5, structured=True).apply(cancer.onnx, ctx)
    assert _weights(result.path, "MatMul") == [(30, 32), (32, 16), (16, 1)]
    assert evaluate(result.path, ctx) >= evaluate(cancer.onnx, ctx) - 0.02


def test_structured_pruning_of_transformer_feed_forward_blocks(encoder, tmp_path: Path):
    ctx = context(encoder, "cosine", tmp_path)
    result = Prune(0.5, structured=True).apply(encoder.onnx, ctx)
    assert len(result.details["layers"]) == 4  # one feed-forward chain per layer
    assert evaluate(result.path, ctx) > 0.97


def test_a_quantized_model_has_nothing_to_prune(mlp, tmp_path: Path):
    ctx = context(mlp, "accuracy", tmp_path)
    quantized = Quantize("dynamic").apply(mlp.onnx, ctx).path
    with pytest.raises(InvalidArgument, match="put --prune before --quantize"):
        Prune(0.5, structured=True).apply(quantized, ctx)
    with pytest.raises(InvalidArgument, match="between 0 and 1"):
        Prune(1.5)


@pytest.mark.parametrize("which", ["mlp", "cnn"])
def test_pytorch_modules_are_pruned_before_export(which, request, tmp_path: Path):
    import torch

    built = request.getfixturevalue(which)
    cal, val = np.load(built.calibration), np.load(built.validation)
    module = built.module
    small = prune_module(module, 0.5, data=torch.from_numpy(cal["X"]))
    big_params = sum(p.numel() for p in module.parameters())
    assert sum(p.numel() for p in small.parameters()) < 0.45 * big_params

    def accuracy(m) -> float:
        with torch.no_grad():
            return float((m(torch.from_numpy(val["X"])).argmax(1).numpy() == val["y"]).mean())

    assert accuracy(small) >= accuracy(module) - 0.03
    onnx_path = export(small, torch.from_numpy(val["X"][:1]), tmp_path / "small.onnx", "x", "y")
    assert describe(onnx_path).params == sum(p.numel() for p in small.parameters())
    no_data = prune_module(module, 0.5, example=torch.from_numpy(val["X"][:2]))
    assert [p.shape for p in no_data.parameters()] == [p.shape for p in small.parameters()]
