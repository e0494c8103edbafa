"""gRPC messages built and read by tritonclient.grpc itself."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
import tritonclient.grpc as tg
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc._infer_result import InferResult
from tritonclient.grpc._utils import _get_inference_request

from modelport.core.errors import InvalidArgument
from modelport.core.types import InferenceRequest, InferenceResponse, RequestedOutput
from modelport.protocol import grpc_codec as gc

ARRAYS = {
    "BOOL": np.array([[True, False]]),
    "UINT8": np.array([[0, 255]], np.uint8),
    "UINT16": np.array([[0, 65535]], np.uint16),
    "UINT32": np.array([[0, 2**32 - 1]], np.uint32),
    "UINT64": np.array([[0, 2**64 - 1]], np.uint64),
    "INT8": np.array([[-128, 127]], np.int8),
    "INT16": np.array([[-(2**15), 2**15 - 1]], np.int16),
    "INT32": np.array([[-(2**31), 2**31 - 1]], np.int32),
    "INT64": np.array([[-(2**63), 2**63 - 1]], np.int64),
    "FP16": np.array([[0.5, -2.0]], np.float16),
    "BF16": np.array([[0.5, -2.0]], ml_dtypes.bfloat16),
    "FP32": np.array([[0.25, -1e30]], np.float32),
    "FP64": np.array([[0.1, 1e300]]),
    "BYTES": np.array([[b"", "é".encode()]], dtype=object),
}


def triton_request(inputs, outputs=None, params=None):
    return _get_inference_request(
        model_name="m",
        inputs=inputs,
        model_version="2",
        request_id="r1",
        outputs=outputs,
        sequence_id=0,
        sequence_start=False,
        sequence_end=False,
        priority=0,
        timeout=None,
        parameters=params,
    )


@pytest.mark.parametrize("datatype", list(ARRAYS))
def test_raw_contents_from_tritonclient(datatype: str):
    array = ARRAYS[datatype]
    i = tg.InferInput("x", list(array.shape), datatype)
    i.set_data_from_numpy(array)
    msg = triton_request([i], params={"tag": "t"})
    assert len(msg.raw_input_contents) == 1  # tritonclient sends raw by default
    req = gc.request_from_grpc(msg)
    assert (msg.model_name, msg.model_version, req.id) == ("m", "2", "r1")
    assert req.parameters == {"tag": "t"}
    got = req.inputs["x"]
    assert got.shape == array.shape
    if datatype == "BYTES":
        assert got.tolist() == array.tolist()
    else:
        assert got.dtype == array.dtype
        np.testing.assert_array_equal(got.astype(np.float64), array.astype(np.float64))


@pytest.mark.parametrize("datatype", [d for d in ARRAYS if d not in ("FP16", "BF16")])
def test_typed_contents(datatype: str):
    array = ARRAYS[datatype]
    msg = gc.request_to_grpc("m", None, InferenceRequest({"x": array}), raw=False)
    assert not msg.raw_input_contents
    assert msg.inputs[0].HasField("contents")
    got = gc.request_from_grpc(msg).inputs["x"]
    assert got.tolist() == array.tolist()
    assert got.dtype == array.dtype


@pytest.mark.parametrize("datatype", list(ARRAYS))
def test_tritonclient_reads_our_raw_outputs(datatype: str):
    array = ARRAYS[datatype]
    msg = gc.response_to_grpc(InferenceResponse("m", "2", {"y": array}, id="r9"))
    result = InferResult(pb.ModelInferResponse.FromString(msg.SerializeToString()))
    got = result.as_numpy("y")
    assert got.shape == array.shape
    if datatype == "BYTES":
        assert got.tolist() == array.tolist()
    else:
        np.testing.assert_array_equal(got.astype(np.float64), array.astype(np.float64))
    assert result.get_response().id == "r9"


def test_requested_outputs_and_classification():
    o = tg.InferRequestedOutput("p", class_count=2)
    x = tg.InferInput("x", [1, 1], "FP32")
    x.set_data_from_numpy(np.ones((1, 1), np.float32))
    req = gc.request_from_grpc(triton_request([x], outputs=[o, tg.InferRequestedOutput("q")]))
    assert [(r.name, r.classification) for r in req.outputs or []] == [("p", 2), ("q", 0)]
    probs = np.array([[0.2, 0.5, 0.3]], np.float32)
    resp = InferenceResponse("m", "1", {"p": probs, "q": np.zeros(1), "unwanted": np.zeros(1)})
    msg = gc.response_to_grpc(resp, req)
    result = InferResult(msg)
    assert [t.name for t in msg.outputs] == ["p", "q"]
    assert result.as_numpy("p").tolist() == [[b"0.500000:1", b"0.300000:2"]]


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda m: m.raw_input_contents.append(b"\0" * 4), "raw_input_contents for"),
        (lambda m: m.inputs[0].contents.fp32_contents.append(1.0), "typed contents"),
        (
            lambda m: (
                m.inputs.add(name="x", datatype="FP32", shape=[1]),
                m.raw_input_contents.append(b"\0" * 4),
            ),
            "more than once",
        ),
        (lambda m: m.inputs[0].shape.append(-3), "negative"),
        (lambda m: m.inputs[0].shape.extend([2**32, 2**32, 4]), "elements"),
        (lambda m: setattr(m.inputs[0], "datatype", "FP8"), "unknown datatype"),
        (lambda m: m.raw_input_contents.__setitem__(0, b"\0" * 4), "4 bytes of data"),
        (lambda m: setattr(m.inputs[0], "name", ""), "needs a name"),
    ],
)
def test_bad_raw_requests(mutate, match: str):
    msg = gc.request_to_grpc("m", None, InferenceRequest({"x": np.ones(2, np.float32)}))
    mutate(msg)
    with pytest.raises(InvalidArgument, match=match):
        gc.request_from_grpc(msg)


@pytest.mark.parametrize(
    ("datatype", "field", "values", "match"),
    [
        ("FP32", "fp32_contents", [1.0], "1 values in fp32_contents for shape \\[2\\]"),
        ("INT8", "int_contents", [1, 300], "out of INT8 range"),
        ("UINT8", "uint_contents", [1, 256], "out of UINT8 range"),
        ("FP16", "fp32_contents", [1.0, 2.0], "raw_input_contents"),
        ("INT64", "fp32_contents", [1.0, 2.0], "0 values in int64_contents"),
    ],
)
def test_bad_typed_requests(datatype, field, values, match):
    msg = pb.ModelInferRequest(model_name="m")
    t = msg.inputs.add(name="x", datatype=datatype, shape=[2])
    getattr(t.contents, field).extend(values)
    with pytest.raises(InvalidArgument, match=match):
        gc.request_from_grpc(msg)


def test_parameters_both_ways():
    params = {"b": True, "i": -3, "u": 2**63 + 1, "d": 0.5, "s": "x"}
    msg = pb.ModelInferRequest()
    for k, v in params.items():
        msg.parameters[k].CopyFrom(gc.parameter_to_grpc(v))
    assert gc.parameters_from_grpc(msg.parameters) == params
    with pytest.raises(InvalidArgument):
        gc.parameter_to_grpc([1])
    with pytest.raises(InvalidArgument):
        gc.parameter_to_grpc(2**64)


def test_client_side_round_trip():
    req = InferenceRequest(
        {"x": np.arange(4, dtype=np.float32).reshape(2, 2)},
        id="z",
        parameters={"k": 1},
        outputs=[RequestedOutput("y", classification=1)],
    )
    back = gc.request_from_grpc(gc.request_to_grpc("m", "3", req))
    np.testing.assert_array_equal(back.inputs["x"], req.inputs["x"])
    assert (back.id, back.parameters, back.outputs) == ("z", {"k": 1}, req.outputs)
    resp = InferenceResponse("m", "3", {"y": np.array([b"a"], dtype=object)}, parameters={"n": 2})
    again = gc.response_from_grpc(gc.response_to_grpc(resp))
    assert again.outputs["y"].tolist() == [b"a"]
    assert again.parameters == {"n": 2}
