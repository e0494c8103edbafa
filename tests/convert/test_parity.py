"""The parity check on toy models whose differences are known exactly."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from modelport.convert.parity import (
    Tolerance,
    check_parity,
    parity_batches,
    shape_variants,
    synthesise,
)
from modelport.core.errors import InvalidArgument
from modelport.core.types import ModelSignature, TensorSpec

SIG = ModelSignature(
    (TensorSpec("x", "FP32", (-1, 3)),),
    (TensorSpec("label", "INT64", (-1,)), TensorSpec("probabilities", "FP32", (-1, 2))),
)


class FunctionModel:
    """A Runtime computing label + probabilities from x with a chosen function."""

    def __init__(self, fn: Callable[[np.ndarray], np.ndarray], sig: ModelSignature = SIG) -> None:
        self.fn = fn
        self._sig = sig

    @property
    def signature(self) -> ModelSignature:
        return self._sig

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        p1 = self.fn(inputs["x"].astype(np.float64))
        probs = np.stack([1 - p1, p1], axis=1).astype(np.float32)
        return {"label": (p1 > 0.5).astype(np.int64), "probabilities": probs}

    def close(self) -> None:
        pass


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x.sum(axis=1)))


X = np.random.default_rng(0).standard_normal((50, 3)).astype(np.float32)


def test_identical_models_pass_with_zero_error():
    r = check_parity(FunctionModel(sigmoid), FunctionModel(sigmoid), [("s", {"x": X})])
    assert r.passed
    assert r.max_abs_error == 0.0
    assert r.label_agreement == 1.0
    assert r.metrics()["parity_passed"] == 1.0


def test_small_float_differences_are_measured_and_judged_by_dtype():
    shifted = FunctionModel(lambda x: sigmoid(x) + 5e-5)
    r = check_parity(FunctionModel(sigmoid), shifted, [("s", {"x": X})])
    assert r.passed  # within FP32's atol 1e-4
    assert r.max_abs_error == pytest.approx(5e-5, rel=0.05)
    strict = check_parity(
        FunctionModel(sigmoid), shifted, [("s", {"x": X})], Tolerance(atol=1e-6, rtol=0)
    )
    assert not strict.passed
    probs = next(o for o in strict.outputs if o.name == "probabilities")
    assert probs.out_of_tolerance == 100
    assert "FAILED" in strict.summary()


def test_label_flips_count_against_agreement_unless_they_are_ties():
    flipped = FunctionModel(lambda x: 1 - sigmoid(x))
    r = check_parity(FunctionModel(sigmoid), flipped, [("s", {"x": X})])
    label = next(o for o in r.outputs if o.name == "label")
    assert label.agreement < 0.1
    assert not r.passed
    # a row whose source probabilities tie at 0.5 may flip: it is a tie, not a disagreement
    tie = np.zeros((4, 3), np.float32)
    nudged = FunctionModel(lambda x: sigmoid(x) + 1e-6)
    r = check_parity(FunctionModel(sigmoid), nudged, [("ties", {"x": tie})])
    label = next(o for o in r.outputs if o.name == "label")
    assert label.ties == 4
    assert r.passed
    relaxed = check_parity(
        FunctionModel(sigmoid), flipped, [("s", {"x": X})], Tolerance(label_agreement=0.0)
    )
    assert next(o for o in relaxed.outputs if o.name == "label").passed


def test_missing_outputs_and_shape_changes_fail():
    other = ModelSignature(SIG.inputs, (TensorSpec("score", "FP32", (-1,)),))

    class Renamed(FunctionModel):
        def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            return {"score": sigmoid(inputs["x"])}

    r = check_parity(FunctionModel(sigmoid), Renamed(sigmoid, other), [("s", {"x": X})])
    assert not r.passed
    assert all("missing" in (o.problem or "") for o in r.outputs)

    class Flat(FunctionModel):
        def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            out = super().predict(inputs)
            return {**out, "probabilities": out["probabilities"].reshape(-1)}

    r = check_parity(FunctionModel(sigmoid), Flat(sigmoid), [("s", {"x": X})])
    assert "shape" in (next(o for o in r.outputs if o.name == "probabilities").problem or "")


def test_batches_cover_sample_validation_chunks_and_dynamic_axes():
    sig = ModelSignature(
        (TensorSpec("ids", "INT64", (-1, -1)), TensorSpec("mask", "INT64", (-1, -1))), ()
    )
    sample = {"ids": np.ones((4, 6), np.int64), "mask": np.ones((4, 6), np.int64)}
    labels = [label for label, _ in parity_batches(sig, sample)]
    assert labels == ["sample", "batch of 1", "axis 1 of ids/mask at 5"]
    validation = {"ids": np.ones((2500, 6), np.int64), "mask": np.ones((2500, 6), np.int64)}
    labels = [label for label, _ in parity_batches(sig, None, validation)]
    assert labels[:3] == ["validation[0:1024]", "validation[1024:2048]", "validation[2048:2500]"]
    with pytest.raises(InvalidArgument, match="lacks input"):
        parity_batches(sig, None, {"ids": validation["ids"]})
    synth = synthesise(sig)
    assert synth["ids"].shape == (16, 8)
    assert set(np.unique(synth["ids"])) <= {0, 1}
    assert [label for label, _ in shape_variants(SIG, {"x": X})] == ["batch of 1"]


def test_tolerance_parsing():
    t = Tolerance.parse({"atol": "1e-3", "rtol": "0", "labels": "0.98"})
    assert t.for_types("FP32") == (1e-3, 0.0)
    assert Tolerance().for_types("FP16", "FP32") == (1e-2, 1e-2)
    with pytest.raises(InvalidArgument, match="unknown tolerance"):
        Tolerance.parse({"precision": "1"})
    with pytest.raises(InvalidArgument, match="out of range"):
        Tolerance.parse({"labels": "2"})
