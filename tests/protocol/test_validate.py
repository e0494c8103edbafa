"""Safe datatype coercion against the model's signature."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

from modelport.core.errors import InvalidArgument
from modelport.core.types import InferenceRequest, ModelSignature, TensorSpec
from modelport.protocol import validate_request
from modelport.protocol.validate import check_shape, coerce


@pytest.mark.parametrize(
    ("array", "datatype", "expected"),
    [
        (np.array([1, 2], np.int32), "INT64", [1, 2]),
        (np.array([1, 2], np.int64), "INT32", [1, 2]),
        (np.array([1, 2], np.int64), "UINT8", [1, 2]),
        (np.array([1, 2**24], np.int64), "FP32", [1.0, 2.0**24]),
        (np.array([-(2**53)], np.int64), "FP64", [-(2.0**53)]),
        (np.array([0.5], np.float16), "FP32", [0.5]),
        (np.array([0.5], np.float32), "FP64", [0.5]),
        (np.array([0.1, 1e30]), "FP32", [np.float32(0.1), np.float32(1e30)]),
        (np.array([np.inf]), "FP32", [np.inf]),
        (np.array([3], np.uint8), "INT16", [3]),
        (np.array(["a", "é"]), "BYTES", [b"a", "é".encode()]),
        (np.array([1.5], ml_dtypes.bfloat16), "FP32", [1.5]),
    ],
)
def test_safe_coercions(array, datatype, expected):
    out = coerce(array, datatype)
    assert out.tolist() == expected
    assert out.dtype == np.dtype(
        {"BYTES": object, "FP32": np.float32, "FP64": np.float64}.get(datatype, datatype.lower())
    )


@pytest.mark.parametrize(
    ("array", "datatype", "match"),
    [
        (np.array([1.0]), "INT64", "got FP64 data, the model expects INT64"),
        (np.array([1.0], np.float32), "INT32", "got FP32"),
        (np.array([2**24 + 1], np.int64), "FP32", "cannot hold exactly"),
        (np.array([300], np.int64), "UINT8", "outside UINT8's range"),
        (np.array([-1], np.int64), "UINT64", "outside UINT64's range"),
        (np.array([1e39]), "FP32", "outside FP32's range"),
        (np.array([0.5], np.float32), "FP16", "got FP32"),
        (np.array([0.5], np.float32), "BF16", "got FP32"),
        (np.array([True]), "INT64", "got BOOL"),
        (np.array([1], np.int64), "BOOL", "got INT64"),
        (np.array([b"1"], dtype=object), "FP32", "got BYTES"),
        (np.array([1.0], np.float32), "BYTES", "got FP32"),
    ],
)
def test_unsafe_coercions_are_refused(array, datatype, match):
    with pytest.raises(InvalidArgument, match=match):
        coerce(array, datatype, "input 'x'")


def test_same_datatype_is_not_copied():
    a = np.ones((2, 4), np.float32)
    assert coerce(a, "FP32") is a


@pytest.mark.parametrize(
    ("shape", "spec", "ok"),
    [
        ((2, 4), (-1, 4), True),
        ((0, 4), (-1, 4), True),
        ((2, 4), (-1, -1), True),
        ((2, 3), (-1, 4), False),
        ((4,), (-1, 4), False),
        ((1, 2, 4), (-1, 4), False),
        ((), (), True),
    ],
)
def test_shapes(shape, spec, ok):
    s = TensorSpec("x", "FP32", spec)
    if ok:
        check_shape(shape, s, "input 'x'")
    else:
        with pytest.raises(InvalidArgument, match="input 'x'"):
            check_shape(shape, s, "input 'x'")


def test_validate_coerces_every_input_and_names_what_is_wrong():
    sig = ModelSignature(
        (TensorSpec("a", "FP32", (-1, 2)), TensorSpec("b", "INT64", (-1,))),
        (TensorSpec("y", "FP32", (-1,)),),
    )
    req = InferenceRequest(
        {"a": np.array([[1, 2]], np.int32), "b": np.array([5], np.int32)}, id="q"
    )
    out = validate_request(req, sig)
    assert out.inputs["a"].dtype == np.float32
    assert out.inputs["b"].dtype == np.int64
    assert out.id == "q"
    assert req.inputs["a"].dtype == np.int32  # the original request is untouched
    with pytest.raises(InvalidArgument, match="missing input 'b' \\(INT64 \\[-1\\]\\)"):
        validate_request(InferenceRequest({"a": np.ones((1, 2), np.float32)}), sig)
