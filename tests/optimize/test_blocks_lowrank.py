"""Dropping repeated blocks and low-rank factorization."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from modelport.core.errors import InvalidArgument
from modelport.optimize import DropLayers, LowRank
from modelport.optimize.drop_layers import find_blocks
from modelport.optimize.low_rank import choose_rank
from modelport.optimize.measure import describe
from modelport.optimize.onnx_model import load_model
from tests.optimize.models import context, evaluate


def test_encoder_layers_are_found_as_repeated_blocks(encoder):
    blocks = find_blocks(load_model(encoder.onnx))
    assert len(blocks) == 4
    assert blocks[0].input == "tokens"
    assert all("norm2" in b.output for b in blocks)  # post-norm: each layer ends in norm2
    assert len({len(b.nodes) for b in blocks}) == 1


def test_the_least_important_layer_is_dropped(encoder, tmp_path: Path):
    ctx = context(encoder, "cosine", tmp_path)
    result = DropLayers(1).apply(encoder.onnx, ctx)
    assert result.details["dropped_blocks"] == [2]  # the layer built to add almost nothing
    candidates = result.details["steps"][0]["candidates"]
    assert max(candidates, key=candidates.get) == "2"
    assert evaluate(result.path, ctx) > 0.95
    assert describe(result.path).params < describe(encoder.onnx).params * 0.8


def test_drop_layers_needs_repeats_and_keeps_one(mlp, encoder, tmp_path: Path):
    with pytest.raises(InvalidArgument, match="no repeated blocks"):
        DropLayers(1).apply(mlp.onnx, context(mlp, "accuracy", tmp_path))
    with pytest.raises(InvalidArgument, match="at least one must stay"):
        DropLayers(4).apply(encoder.onnx, context(encoder, "cosine", tmp_path))


def test_rank_choice():
    s = np.array([4.0, 2.0, 1.0, 0.5])
    assert choose_rank(s, 0.5, None) == 2
    assert choose_rank(s, None, 0.75) == 1
    assert choose_rank(s, None, 0.95) == 3
    assert choose_rank(s, None, 0.99) == 4
    with pytest.raises(InvalidArgument):
        LowRank()
    with pytest.raises(InvalidArgument):
        LowRank(ratio=0.5, energy=0.9)


def test_low_rank_factorizes_where_it_saves_compute(mlp, tmp_path: Path):
    ctx = context(mlp, "accuracy", tmp_path)
    result = LowRank(ratio=0.25).apply(mlp.onnx, ctx)
    layers = result.details["layers"]
    assert [layer["shape"] for layer in layers] == [[64, 128], [128, 128]]  # not 128 x 10
    assert all(layer["compute_ratio"] <= 0.8 for layer in layers)
    ops = [n.op_type for n in load_model(result.path).graph.node]
    assert ops.count("MatMul") == 2
    assert describe(result.path).params < describe(mlp.onnx).params
    assert evaluate(result.path, ctx) >= evaluate(mlp.onnx, ctx) - 0.03


def test_low_rank_leaves_the_model_when_nothing_saves(cancer, tmp_path: Path):
    ctx = context(cancer, "accuracy", tmp_path)
    result = LowRank(energy=0.999).apply(cancer.onnx, ctx)
    assert result.details["layers"] == []
    assert "unchanged" in result.notes[0]
