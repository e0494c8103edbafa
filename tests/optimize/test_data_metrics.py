"""Datasets bound to signatures, and the metric functions (pure, no models)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from modelport.core.errors import InvalidArgument, NotFound
from modelport.core.types import ModelSignature, TensorSpec
from modelport.optimize import load_dataset, save_dataset
from modelport.optimize.metrics import (
    METRICS,
    f1_macro,
    get_metric,
    metric_drop,
    parity,
    predicted_labels,
    score,
)

SIG = ModelSignature(
    inputs=(TensorSpec("input", "FP32", (-1, 4)),), outputs=(TensorSpec("y", "FP32", (-1, 3)),)
)


def test_single_input_model_reads_X_and_casts_to_the_signature(tmp_path: Path):
    path = save_dataset(tmp_path / "d.npz", {"X": np.ones((5, 4))}, np.arange(5))
    ds = load_dataset(path, SIG, need_labels=True)
    assert list(ds.inputs) == ["input"]
    assert ds.inputs["input"].dtype == np.float32
    assert ds.n == 5
    assert ds.batch_of(12)["input"].shape == (12, 4)
    assert [b["input"].shape[0] for b in ds.batches(2)] == [2, 2, 1]


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"other": np.ones((2, 4))}, "missing array"),
        ({"X": np.ones((2, 4, 1))}, "rank 2"),
        ({"X": np.ones((2, 5))}, "dimension 1 is 5"),
        ({"X": np.array([["a"] * 4] * 2)}, "the model takes float32"),
        ({"input": np.ones((2, 4)), "extra": np.ones(2)}, "match no model input"),
    ],
)
def test_mismatching_data_is_refused_with_a_reason(tmp_path: Path, arrays, message):
    path = tmp_path / "d.npz"
    np.savez(path, **arrays)
    with pytest.raises(InvalidArgument, match=message):
        load_dataset(path, SIG)


def test_labels_required_and_missing_file(tmp_path: Path):
    path = save_dataset(tmp_path / "d.npz", {"X": np.ones((2, 4))})
    with pytest.raises(InvalidArgument, match="needs labels"):
        load_dataset(path, SIG, need_labels=True)
    with pytest.raises(NotFound):
        load_dataset(tmp_path / "nope.npz", SIG)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(InvalidArgument, match="not a readable"):
        load_dataset(tmp_path / "bad.npz", SIG)


def test_classification_metrics_use_the_label_output_or_the_argmax():
    scores = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]], np.float32)
    truth = np.array([0, 1, 1, 1])
    assert score(METRICS["accuracy"], {"p": scores}, {}, truth) == 0.75
    with_labels = {"label": np.array([0, 1, 1, 1], np.int64), "p": scores}
    assert predicted_labels(with_labels).tolist() == [0, 1, 1, 1]
    assert score(METRICS["accuracy"], with_labels, {}, truth) == 1.0
    assert f1_macro(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1])) == pytest.approx(0.7333, 1e-3)
    assert predicted_labels({"p": np.array([[0.2], [0.7]])}).tolist() == [0, 1]
    with pytest.raises(InvalidArgument, match="needs labels"):
        score(METRICS["f1"], {"p": scores}, {}, None)


def test_regression_and_similarity_metrics_and_their_direction():
    parent = {"emb": np.array([[1.0, 0.0], [0.0, 2.0]], np.float32)}
    child = {"emb": np.array([[1.0, 0.1], [0.0, 2.0]], np.float32)}
    assert score(METRICS["cosine"], parent, parent, None) == 1.0
    assert 0.99 < score(METRICS["cosine"], child, parent, None) < 1.0
    assert score(METRICS["mse"], child, parent, None) == pytest.approx(0.0025)
    assert score(METRICS["mae"], child, parent, np.array([[1.0, 0.0], [0.0, 2.0]])) == (
        pytest.approx(0.025)
    )
    assert metric_drop(METRICS["accuracy"], 0.9, 0.8) == pytest.approx(0.1)
    assert metric_drop(METRICS["mse"], 0.1, 0.3) == pytest.approx(0.2)
    with pytest.raises(InvalidArgument, match="unknown metric"):
        get_metric("auc")


def test_parity_reports_differences_and_label_agreement():
    ref = {"label": np.array([0, 1]), "p": np.array([[0.9, 0.1], [0.3, 0.7]], np.float32)}
    out = {"label": np.array([0, 0]), "p": np.array([[0.8, 0.2], [0.6, 0.4]], np.float32)}
    p = parity(out, ref)
    assert p["output"] == "p"
    assert p["max_abs_diff"] == pytest.approx(0.3, abs=1e-6)
    assert p["label_agreement"] == 0.5
    assert "label_agreement" not in parity({"e": ref["p"]}, {"e": ref["p"]})
