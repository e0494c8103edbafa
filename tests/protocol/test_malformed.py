"""Every malformed body of threats §5 rows 1–6 is an InvalidArgument, never a crash."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from modelport.core.errors import InvalidArgument, PayloadTooLarge
from modelport.core.types import InferenceRequest, ModelSignature, RequestedOutput, TensorSpec
from modelport.protocol import v2, validate_request
from modelport.protocol.validate import check_body_size

GOOD = b'{"inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","data":[1,2]}]}'
SIG = ModelSignature(
    (TensorSpec("x", "FP32", (-1, 2)),),
    (TensorSpec("y", "FP32", (-1,)), TensorSpec("label", "INT64", (-1,))),
)


def bad(body: bytes, header_length: int | None = None, match: str | None = None) -> str:
    with pytest.raises(InvalidArgument, match=match) as e:
        v2.decode_request(body, header_length)
    return str(e.value)


def test_the_good_body_is_good():
    assert v2.decode_request(GOOD).inputs["x"].shape == (1, 2)


# -------------------------------------------------------------- row 1: malformed JSON


@pytest.mark.parametrize(
    "body",
    [
        GOOD[:-5],  # truncated
        GOOD + b" xx",  # trailing bytes
        GOOD + b"{}",
        GOOD.replace(b'"x"', b'"\xff\xfe"'),  # invalid UTF-8
        GOOD.replace(b"[1,2]}", b"[NaN,2]}"),
        GOOD.replace(b"[1,2]}", b"[Infinity,2]}"),
        b"",
        b"null",
        b"[]",
        b'"inputs"',
    ],
)
def test_malformed_json(body: bytes):
    bad(body)


@pytest.mark.parametrize(
    "body",
    [
        b'{"inputs":[],"inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","data":[1,2]}]}',
        b'{"inputs":[{"name":"x","name":"y","shape":[1,2],"datatype":"FP32","data":[1,2]}]}',
        b'{"inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","data":[1,2],"data":[3,4]}]}',
        b'{"parameters":{"a":1,"a":2},'
        b'"inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","data":[1,2]}]}',
    ],
)
def test_duplicate_keys(body: bytes):
    bad(body, match="duplicate key")


def test_colons_inside_strings_are_not_mistaken_for_duplicate_keys():
    body = (
        b'{"id":"a:b","inputs":[{"name":"s","shape":[2],"datatype":"BYTES","data":["k:v","\\":"]}]}'
    )
    req = v2.decode_request(body)
    assert req.id == "a:b"
    assert req.inputs["s"].tolist() == [b"k:v", b'":']


# ------------------------------------------------------------------- row 2: nesting depth


def test_nesting_1e5_deep_in_data():
    deep = b"[" * 100_000 + b"1" + b"]" * 100_000
    body = b'{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":' + deep + b"}]}"
    bad(body, match="nesting depth > 100")


@pytest.mark.parametrize("depth", [101, 500, 1100])
def test_nesting_anywhere_in_the_body(depth: int):
    deep = b"[" * depth + b"]" * depth
    body = GOOD[:-1] + b',"extra":' + deep + b"}"
    bad(body, match="nesting depth > 100")


def test_data_deeper_than_its_rank_is_refused():
    deep = b"[" * 80 + b"1" + b"]" * 80  # within the JSON limit, past numpy's 64 dimensions
    body = b'{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":' + deep + b"}]}"
    bad(body)


# --------------------------------------------------------------------- row 3: wrong dtype


def json_body(datatype: str, data: str, shape: str = "[2]") -> bytes:
    return b'{"inputs":[{"name":"x","shape":%s,"datatype":"%s","data":%s}]}' % (
        shape.encode(),
        datatype.encode(),
        data.encode(),
    )


@pytest.mark.parametrize(
    ("datatype", "data", "match"),
    [
        ("FP32", '["1.5","2"]', "expected FP32 numbers, got strings"),
        ("FP32", '[1, "2"]', "got strings"),
        ("FP32", "[true, false]", "got booleans"),
        ("FP32", "[1, true]", "got booleans"),
        ("INT64", "[true, false]", "got booleans"),
        ("INT64", "[1, true]", "got booleans"),
        ("INT64", "[1.5, 2]", "fractional"),
        ("INT64", '["1", "2"]', "got strings"),
        ("UINT8", "[1, 256]", "out of UINT8 range"),
        ("UINT8", "[-1, 2]", "out of UINT8 range"),
        ("INT64", "[9223372036854775808, 1]", "out of INT64 range"),
        ("FP32", "[1e39, 1]", "out of FP32 range"),
        ("BOOL", "[1, 0]", "expected BOOL"),
        ("BYTES", "[1, 2]", "BYTES elements must be strings"),
        ("FP32", "[null, 1]", "mixed or null"),
        ("FP32", '[{"a": 1}, 1]', "mixed or null"),
        ("COMPLEX", "[1, 2]", "unknown datatype"),
    ],
)
def test_wrong_dtype(datatype: str, data: str, match: str):
    msg = bad(json_body(datatype, data), match=match)
    assert "input 'x'" in msg or "datatype" in msg


def test_integral_floats_are_accepted_for_integer_inputs():
    got = v2.decode_request(json_body("INT64", "[1.0, 9007199254740992]")).inputs["x"]
    assert got.dtype == np.int64
    assert got.tolist() == [1, 2**53]
    big = v2.decode_request(json_body("UINT64", "[0, 18446744073709551615]")).inputs["x"]
    assert big.tolist() == [0, 2**64 - 1]  # exact, not via float64


def test_bytes_sent_to_a_numeric_model_is_refused_by_validation():
    req = v2.decode_request(json_body("BYTES", '["1", "2"]', "[1,2]"))
    with pytest.raises(InvalidArgument, match="got BYTES data, the model expects FP32"):
        validate_request(req, SIG)


def test_bool_sent_to_a_numeric_model_is_refused_by_validation():
    req = v2.decode_request(json_body("BOOL", "[true, false]", "[1,2]"))
    with pytest.raises(InvalidArgument, match="got BOOL data, the model expects FP32"):
        validate_request(req, SIG)


# --------------------------------------------------------------------- row 4: wrong shape


@pytest.mark.parametrize(
    ("shape", "data", "match"),
    [
        ("[3]", "[1, 2]", "2 elements of data for shape \\[3\\]"),
        ("[1, 2]", "[1, 2, 3]", "3 elements"),
        ("[-1, 2]", "[1, 2]", "negative dimension"),
        ("[4294967296, 4294967296, 2]", "[1, 2]", "elements"),
        ("[9223372036854775807, 9223372036854775807]", "[1]", "elements"),
        ("[1.5]", "[1]", "integers"),
        ("[true]", "[1]", "integers"),
        ('"2"', "[1, 2]", "shape must be a list"),
        ("[[1, 2], [3]]", "[1, 2]", "integers"),
    ],
)
def test_wrong_shape(shape: str, data: str, match: str):
    bad(json_body("FP32", data, shape), match=match)


def test_overflowing_shape_in_binary_is_refused_before_allocation():
    head = b'{"inputs":[{"name":"x","shape":[4294967296,4294967296,2],"datatype":"FP32",'
    head += b'"parameters":{"binary_data_size":8}}]}'
    bad(head + b"\0" * 8, len(head), match="has more than")


def test_shape_against_the_signature():
    req = v2.decode_request(json_body("FP32", "[1, 2, 3]", "[1, 3]"))
    with pytest.raises(
        InvalidArgument, match=r"shape \[1, 3\] does not match the model's \[-1, 2\]"
    ):
        validate_request(req, SIG)
    req = v2.decode_request(json_body("FP32", "[1, 2]", "[2]"))
    with pytest.raises(InvalidArgument, match="does not match"):
        validate_request(req, SIG)


def test_element_limit():
    req = InferenceRequest({"x": np.zeros((1000, 2), np.float32)})
    with pytest.raises(PayloadTooLarge, match="limit"):
        validate_request(req, SIG, max_elements=1000)


def test_body_size_helper():
    check_body_size(100, 100)
    check_body_size(None, 100)
    with pytest.raises(PayloadTooLarge):
        check_body_size(101, 100)


# ----------------------------------------------------------------------- row 5: names


def test_missing_unknown_and_duplicate_names():
    with pytest.raises(InvalidArgument, match="missing input 'x'"):
        validate_request(InferenceRequest({}), SIG)
    req = InferenceRequest({"x": np.zeros((1, 2), np.float32), "z": np.zeros(1, np.float32)})
    with pytest.raises(InvalidArgument, match="unknown input 'z'"):
        validate_request(req, SIG)
    dup = GOOD.replace(b"]}", b"]},{" + GOOD[12:-3] + b"}", 1)
    bad(dup, match="more than once")
    outs = b'{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]}],'
    bad(outs + b'"outputs":[{"name":"y"},{"name":"y"}]}', match="requested more than once")


def test_requested_outputs_against_the_signature():
    x = np.zeros((1, 2), np.float32)
    with pytest.raises(InvalidArgument, match="unknown output 'nope'"):
        validate_request(InferenceRequest({"x": x}, outputs=[RequestedOutput("nope")]), SIG)
    twice = [RequestedOutput("y"), RequestedOutput("y")]
    with pytest.raises(InvalidArgument, match="more than once"):
        validate_request(InferenceRequest({"x": x}, outputs=twice), SIG)
    ok = validate_request(InferenceRequest({"x": x}, outputs=[RequestedOutput("label")]), SIG)
    assert ok.inputs["x"] is x  # nothing to coerce: no copy


@pytest.mark.parametrize(
    "body",
    [
        b'{"inputs":[{"shape":[1],"datatype":"FP32","data":[1]}]}',
        b'{"inputs":[{"name":"","shape":[1],"datatype":"FP32","data":[1]}]}',
        b'{"inputs":[{"name":7,"shape":[1],"datatype":"FP32","data":[1]}]}',
        b'{"inputs":[{"name":"x","shape":[1],"datatype":"FP32"}]}',
        b'{"inputs":[{"name":"x","shape":[1],"data":[1]}]}',
        b'{"inputs":[]}',
        b'{"inputs":{}}',
        b'{"inputs":[1]}',
        b'{"id":5,"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]}]}',
        b'{"parameters":{"a":[1]},"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]}]}',
        b'{"parameters":[],"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]}]}',
        b'{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]}],"outputs":{}}',
        b'{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]}],"outputs":[{}]}',
        b'{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]}],'
        b'"outputs":[{"name":"y","parameters":{"classification":-1}}]}',
        b'{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]}],'
        b'"outputs":[{"name":"y","parameters":{"binary_data":"yes"}}]}',
        b'{"parameters":{"binary_data_output":1},'
        b'"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]}]}',
    ],
)
def test_schema_violations(body: bytes):
    bad(body)


# ------------------------------------------------------------ row 6: binary framing


def binary_body(size_param: object, payload: bytes, datatype: str = "FP32", shape: str = "[2]"):
    head = (
        b'{"inputs":[{"name":"x","shape":%s,"datatype":"%s","parameters":{"binary_data_size":%s}}]}'
        % (shape.encode(), datatype.encode(), str(size_param).encode())
    )
    return head + payload, len(head)


@pytest.mark.parametrize(
    ("size", "payload", "match"),
    [
        (-8, b"\0" * 8, "non-negative integer"),
        (8.0, b"\0" * 8, "non-negative integer"),
        ('"8"', b"\0" * 8, "non-negative integer"),
        ("true", b"\0" * 8, "non-negative integer"),
        (16, b"\0" * 8, "exceeds the 8 bytes left"),
        (8, b"\0" * 12, "4 bytes after the last binary tensor"),
        (4, b"\0" * 4, "4 bytes of data for shape \\[2\\] FP32, which needs 8"),
    ],
)
def test_binary_sizes(size: object, payload: bytes, match: str):
    body, n = binary_body(size, payload)
    bad(body, n, match=match)


def test_binary_size_and_data_together():
    head = b'{"inputs":[{"name":"x","shape":[2],"datatype":"FP32","data":[1,2],'
    head += b'"parameters":{"binary_data_size":8}}]}'
    bad(head + b"\0" * 8, len(head), match="both")


@pytest.mark.parametrize("n", [-1, 10**10])
def test_header_length_outside_the_body(n: int):
    bad(GOOD, n, match="outside the body")


@pytest.mark.parametrize("value", ["abc", "-1", "1e3", "99999999999", "2147483648", " ", "+5"])
def test_header_length_header_parsing(value: str):
    with pytest.raises(InvalidArgument):
        v2.parse_header_length(value, 10**12)


def test_header_length_larger_than_the_body():
    with pytest.raises(InvalidArgument, match="larger than the body"):
        v2.parse_header_length("71", 70)
    assert v2.parse_header_length(None, 5) is None
    assert v2.parse_header_length(b" 70 ", 70) == 70


def test_header_length_cutting_the_json_short():
    bad(GOOD, len(GOOD) - 3)


@pytest.mark.parametrize(
    "payload",
    [
        struct.pack("<I", 1000) + b"ab",  # length prefix beyond the tensor
        struct.pack("<I", 2) + b"ab" + b"\x01\x00",  # truncated second prefix
        struct.pack("<I", 1) + b"a" + struct.pack("<I", 1) + b"b" + b"zz",  # bytes left over
    ],
)
def test_lying_bytes_length_prefixes(payload: bytes):
    body, n = binary_body(len(payload), payload, "BYTES", "[2]")
    bad(body, n)


def test_bool_bytes_other_than_0_or_1():
    body, n = binary_body(2, b"\x01\x02", "BOOL")
    bad(body, n, match="0 or 1")
