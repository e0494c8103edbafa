"""Sample inputs, output naming and signatures derived from examples."""

from __future__ import annotations

import collections
import dataclasses
from pathlib import Path

import numpy as np
import pytest

from modelport.core.errors import InvalidArgument
from modelport.runtimes.sample import (
    as_sample,
    cast_inputs,
    check_sample_matches,
    datatype_of,
    load_sample_file,
    name_outputs,
    save_sample,
    signature_from_arrays,
    with_batch,
)


def test_single_array_gets_the_default_name_and_dicts_keep_theirs():
    assert list(as_sample(np.zeros((2, 3)), "X")) == ["X"]
    s = as_sample({"input_ids": [[1, 2]], "attention_mask": [[1, 0]]})
    assert list(s) == ["input_ids", "attention_mask"]
    assert s["input_ids"].dtype == np.int64


def test_scalars_and_python_objects_are_refused():
    with pytest.raises(InvalidArgument, match="scalar"):
        as_sample(np.float32(1.0))
    with pytest.raises(InvalidArgument, match="Python objects"):
        as_sample(np.array([object()], dtype=object))


def test_npy_and_npz_files_load_without_pickle(tmp_path: Path):
    np.save(tmp_path / "x.npy", np.ones((2, 4), np.float32))
    assert load_sample_file(tmp_path / "x.npy", "X")["X"].shape == (2, 4)
    np.savez(tmp_path / "s.npz", ids=np.zeros((1, 5), np.int64), mask=np.ones((1, 5), np.int64))
    assert sorted(load_sample_file(tmp_path / "s.npz")) == ["ids", "mask"]
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InvalidArgument, match="unpickled"):
        load_sample_file(tmp_path / "obj.npy")
    with pytest.raises(InvalidArgument, match="does not exist"):
        load_sample_file(tmp_path / "missing.npz")


def test_text_samples_round_trip_through_npz(tmp_path: Path):
    sample = as_sample({"text": np.array([["good"], ["bad"]])})
    assert sample["text"].dtype == object
    save_sample(sample, tmp_path / "t.npz")
    back = load_sample_file(tmp_path / "t.npz")
    assert [x for x in back["text"].ravel()] == [b"good", b"bad"]


@dataclasses.dataclass
class Out:
    logits: np.ndarray
    hidden: np.ndarray


def test_outputs_are_named_from_their_structure():
    a, b = np.ones((2, 3)), np.zeros((2, 4))
    assert list(name_outputs(a)) == ["output"]
    assert list(name_outputs((a, b))) == ["output_0", "output_1"]
    assert list(name_outputs({"logits": a, "hidden": b})) == ["logits", "hidden"]
    assert list(name_outputs(Out(a, b))) == ["logits", "hidden"]
    nt = collections.namedtuple("Pair", ["scores", "ids"])(a, b)
    assert list(name_outputs(nt)) == ["scores", "ids"]
    assert list(name_outputs({"enc": {"h": a}, "y": b})) == ["enc.h", "y"]
    assert list(name_outputs((a, b), names=["logits", "hidden"])) == ["logits", "hidden"]


def test_signature_marks_batch_dynamic_and_checks_samples():
    sig = signature_from_arrays(
        {"ids": np.zeros((2, 7), np.int64)},
        {"logits": np.zeros((2, 3), np.float32)},
        dynamic_inputs={"ids": (0, 1)},
    )
    assert sig.inputs[0].shape == (-1, -1)
    assert sig.outputs[0].shape == (-1, 3)
    assert sig.outputs[0].datatype == "FP32"
    check_sample_matches({"ids": np.zeros((5, 2), np.int64)}, sig)
    with pytest.raises(InvalidArgument, match="inputs are"):
        check_sample_matches({"x": np.zeros((5, 2))}, sig)
    assert cast_inputs({"ids": np.zeros((1, 2), np.int32)}, sig)["ids"].dtype == np.int64


def test_with_batch_cuts_or_repeats_rows():
    s = {"x": np.arange(6).reshape(3, 2)}
    assert with_batch(s, 1)["x"].tolist() == [[0, 1]]
    assert with_batch(s, 5)["x"][:, 0].tolist() == [0, 2, 4, 0, 2]
    assert datatype_of(np.zeros(1, np.bool_)) == "BOOL"
