"""V2 REST codec against the bodies tritonclient.http itself builds and reads."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
import tritonclient.http as th
from tritonclient.http._infer_result import InferResult
from tritonclient.http._utils import _get_inference_request

from modelport.core.errors import InvalidArgument
from modelport.core.types import (
    InferenceRequest,
    InferenceResponse,
    ModelSignature,
    RequestedOutput,
    TensorSpec,
)
from modelport.protocol import v2

RNG = np.random.default_rng(0)


def triton_body(inputs, outputs=None, request_id="", params=None):
    """(body, json_length) exactly as tritonclient.http sends them."""
    return _get_inference_request(
        inputs=inputs,
        request_id=request_id,
        outputs=outputs,
        sequence_id=0,
        sequence_start=False,
        sequence_end=False,
        priority=0,
        timeout=None,
        custom_parameters=params,
    )


def infer_input(name, array, datatype, binary=True):
    i = th.InferInput(name, list(array.shape), datatype)
    i.set_data_from_numpy(array, binary_data=binary)
    return i


ARRAYS = {
    "BOOL": np.array([[True, False, True]]),
    "UINT8": np.array([[0, 255, 7]], np.uint8),
    "UINT16": np.array([[0, 65535, 7]], np.uint16),
    "UINT32": np.array([[0, 2**32 - 1, 7]], np.uint32),
    "UINT64": np.array([[0, 2**64 - 1, 7]], np.uint64),
    "INT8": np.array([[-128, 127, 0]], np.int8),
    "INT16": np.array([[-(2**15), 2**15 - 1, 0]], np.int16),
    "INT32": np.array([[-(2**31), 2**31 - 1, 0]], np.int32),
    "INT64": np.array([[-(2**63), 2**63 - 1, 0]], np.int64),
    "FP32": RNG.standard_normal((2, 3)).astype(np.float32),
    "FP64": RNG.standard_normal((2, 3)),
    "BYTES": np.array([[b"", "héllo".encode(), b"a:b\x00"]], dtype=object),
}


@pytest.mark.parametrize("datatype", list(ARRAYS))
@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_request_round_trip(datatype: str, binary: bool):
    array = ARRAYS[datatype]
    if datatype == "BYTES" and not binary:
        array = np.array([["", "héllo", "a:b"]], dtype=object)
    body, json_len = triton_body([infer_input("x", array, datatype, binary)], request_id="r7")
    assert (json_len is not None) == binary
    req = v2.decode_request(body, json_len)
    got = req.inputs["x"]
    assert req.id == "r7"
    assert got.shape == array.shape
    if datatype == "BYTES":
        want = [x if isinstance(x, bytes) else x.encode() for x in array.reshape(-1)]
        assert list(got.reshape(-1)) == want
    else:
        assert got.dtype == array.dtype
        np.testing.assert_array_equal(got, array)
    # tritonclient asks for binary outputs when it lists none
    assert req.outputs is None
    assert req.binary_output is True


@pytest.mark.parametrize("shape", [(1, 4), (64, 30)])
def test_binary_fp32_is_a_zero_copy_view_of_the_body(shape):
    x = RNG.standard_normal(shape).astype(np.float32)
    body, n = triton_body([infer_input("x", x, "FP32")])
    got = v2.decode_request(body, n).inputs["x"]
    np.testing.assert_array_equal(got, x)
    assert not got.flags.writeable  # a view of the (immutable) body, not a copy
    assert np.shares_memory(got, np.frombuffer(body, np.uint8))


def test_fp16_and_bf16_travel_binary():
    h = RNG.standard_normal((2, 2)).astype(np.float16)
    b = RNG.standard_normal((3,)).astype(ml_dtypes.bfloat16)
    body, n = triton_body([infer_input("h", h, "FP16"), infer_input("b", b, "BF16")])
    req = v2.decode_request(body, n)
    np.testing.assert_array_equal(req.inputs["h"], h)
    assert req.inputs["b"].dtype == np.dtype(ml_dtypes.bfloat16)
    np.testing.assert_array_equal(req.inputs["b"].astype(np.float32), b.astype(np.float32))


@pytest.mark.parametrize("datatype", ["FP16", "BF16"])
def test_fp16_and_bf16_have_no_json_form(datatype):
    body = b'{"inputs":[{"name":"x","shape":[1],"datatype":"%s","data":[1.0]}]}' % (
        datatype.encode()
    )
    with pytest.raises(InvalidArgument, match="binary"):
        v2.decode_request(body)


def test_mixed_binary_and_json_inputs_keep_their_order():
    a = np.arange(6, dtype=np.int32).reshape(2, 3)
    b = np.array([[1.5, 2.5]], np.float32)
    c = np.array([b"xy", b"z"], dtype=object)
    inputs = [infer_input("a", a, "INT32"), infer_input("b", b, "FP32", False)]
    inputs.append(infer_input("c", c, "BYTES"))
    body, n = triton_body(inputs)
    req = v2.decode_request(body, n)
    assert list(req.inputs) == ["a", "b", "c"]
    np.testing.assert_array_equal(req.inputs["a"], a)
    np.testing.assert_array_equal(req.inputs["b"], b)
    assert list(req.inputs["c"]) == [b"xy", b"z"]


def test_nested_and_flat_json_data_are_the_same_tensor():
    nested = b'{"inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","data":[[1,2],[3,4]]}]}'
    flat = b'{"inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","data":[1,2,3,4]}]}'
    a, b = v2.decode_request(nested).inputs["x"], v2.decode_request(flat).inputs["x"]
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.float32
    assert a.shape == (2, 2)


def test_requested_outputs_and_parameters():
    x = np.ones((1, 4), np.float32)
    outs = [th.InferRequestedOutput("y", binary_data=False)]
    outs.append(th.InferRequestedOutput("p", binary_data=True, class_count=2))
    body, n = triton_body([infer_input("x", x, "FP32")], outputs=outs, params={"tag": "a"})
    req = v2.decode_request(body, n)
    assert req.parameters == {"tag": "a"}
    assert req.binary_output is False
    assert [(o.name, o.binary, o.classification) for o in req.outputs or []] == [
        ("y", False, 0),
        ("p", True, 2),
    ]


# ------------------------------------------------------------------------------ responses


def _result(body: bytes, n: int | None) -> InferResult:
    return InferResult.from_response_body(body, header_length=n)


@pytest.mark.parametrize("datatype", [d for d in ARRAYS if d != "BYTES"] + ["FP16"])
@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_reads_our_responses(datatype: str, binary: bool):
    array = ARRAYS.get(datatype, np.array([[0.5, -2.0]], np.float16))
    resp = InferenceResponse("m", "3", {"y": array}, id="r1")
    req = InferenceRequest({}, binary_output=binary)
    body, n, ctype = v2.encode_response(resp, req)
    assert (n is not None) == binary
    assert ctype == ("application/octet-stream" if binary else "application/json")
    result = _result(body, n)
    got = result.as_numpy("y")
    np.testing.assert_array_equal(got, array)
    head = result.get_response()
    assert (head["model_name"], head["model_version"], head["id"]) == ("m", "3", "r1")


def test_bytes_and_bf16_outputs_binary():
    s = np.array([[b"a", "é".encode()], [b"", b"\xff\xfe"]], dtype=object)
    bf = np.array([1.5, -2.0], dtype=ml_dtypes.bfloat16)
    resp = InferenceResponse("m", "1", {"s": s, "bf": bf})
    body, n, _ = v2.encode_response(resp, InferenceRequest({}, binary_output=True))
    result = _result(body, n)
    assert result.as_numpy("s").tolist() == s.tolist()
    np.testing.assert_array_equal(result.as_numpy("bf").astype(np.float32), [1.5, -2.0])


def test_non_utf8_bytes_output_falls_back_to_binary_in_a_json_response():
    ok = np.array([b"fine"], dtype=object)
    bad = np.array([b"\xff"], dtype=object)
    body, n, _ = v2.encode_response(InferenceResponse("m", "1", {"ok": ok, "bad": bad}))
    assert n is not None
    result = _result(body, n)
    assert result.as_numpy("ok").tolist() == ["fine"]  # JSON BYTES read back as str
    assert result.as_numpy("bad").tolist() == [b"\xff"]


def test_per_output_binary_overrides_the_request_default_and_order_follows_request():
    resp = InferenceResponse(
        "m", "1", {"a": np.arange(3, dtype=np.int64), "b": np.ones((2, 2), np.float32)}
    )
    req = InferenceRequest(
        {}, outputs=[RequestedOutput("b", binary=False), RequestedOutput("a")], binary_output=True
    )
    body, n, _ = v2.encode_response(resp, req)
    result = _result(body, n)
    head = result.get_response()
    assert [o["name"] for o in head["outputs"]] == ["b", "a"]
    assert "data" in head["outputs"][0]
    assert "binary_data_size" in head["outputs"][1]["parameters"]
    np.testing.assert_array_equal(result.as_numpy("a"), [0, 1, 2])
    np.testing.assert_array_equal(result.as_numpy("b"), np.ones((2, 2)))


def test_classification_gives_score_index_strings_per_batch_row():
    probs = np.array([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]], np.float32)
    req = InferenceRequest({}, outputs=[RequestedOutput("p", classification=2)])
    body, n, _ = v2.encode_response(InferenceResponse("m", "1", {"p": probs}), req)
    got = _result(body, n).as_numpy("p")
    assert got.shape == (2, 2)
    assert [x.decode() if isinstance(x, bytes) else x for x in got.reshape(-1)] == [
        "0.700000:1",
        "0.200000:2",
        "0.500000:0",
        "0.300000:2",
    ]


def test_client_side_round_trip():
    req = InferenceRequest(
        {"x": np.arange(4, dtype=np.float32).reshape(2, 2), "s": np.array([b"q"], dtype=object)},
        id="7",
        parameters={"k": 1},
        outputs=[RequestedOutput("y", binary=True, classification=1)],
    )
    for binary in (True, False):
        body, n = v2.encode_request(req, binary=binary)
        back = v2.decode_request(body, n)
        np.testing.assert_array_equal(back.inputs["x"], req.inputs["x"])
        assert back.inputs["s"].tolist() == [b"q"]
        assert (back.id, back.parameters) == ("7", {"k": 1})
        assert back.outputs == req.outputs


def test_raw_binary_request_uses_the_signature():
    sig = ModelSignature((TensorSpec("x", "FP32", (-1, 4)),), (TensorSpec("y", "FP32", (-1,)),))
    x = np.arange(4, dtype=np.float32)
    req = v2.decode_request(x.tobytes(), 0, signature=sig)
    assert req.inputs["x"].shape == (1, 4)
    assert req.binary_output
    with pytest.raises(InvalidArgument):
        v2.decode_request(x.tobytes(), 0)  # no signature
    with pytest.raises(InvalidArgument):
        v2.decode_request(x.tobytes()[:6], 0, signature=sig)
    sig_s = ModelSignature((TensorSpec("s", "BYTES", (1,)),), ())
    assert v2.decode_request(b"raw text", 0, signature=sig_s).inputs["s"].tolist() == [b"raw text"]
