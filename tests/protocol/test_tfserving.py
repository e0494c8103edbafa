"""TF Serving REST bodies in row and columnar form, status and metadata JSON."""

from __future__ import annotations

import base64

import numpy as np
import orjson
import pytest

from modelport.core.errors import InvalidArgument, ModelExecutionError
from modelport.core.types import InferenceResponse, ModelSignature, TensorSpec
from modelport.protocol import tfserving as tf

ONE = ModelSignature((TensorSpec("x", "FP32", (-1, 2)),), (TensorSpec("y", "FP32", (-1,)),))
TWO = ModelSignature(
    (TensorSpec("a", "FP32", (-1, 2)), TensorSpec("s", "BYTES", (-1,))),
    (TensorSpec("p", "FP32", (-1, 2)), TensorSpec("k_bytes", "BYTES", (-1,))),
)


def test_row_form_single_input_bare_values():
    req, form = tf.decode_predict(b'{"instances": [[1, 2], [3, 4.5]]}', ONE)
    assert form == "row"
    np.testing.assert_array_equal(req.inputs["x"], [[1, 2], [3, 4.5]])
    assert req.inputs["x"].dtype == np.float32


def test_row_form_named_objects_with_b64():
    body = orjson.dumps(
        {
            "signature_name": "serving_default",
            "instances": [
                {"a": [1, 2], "s": {"b64": base64.b64encode(b"\xff\x00").decode()}},
                {"a": [3, 4], "s": "plain"},
            ],
        }
    )
    req, form = tf.decode_predict(body, TWO)
    assert form == "row"
    np.testing.assert_array_equal(req.inputs["a"], [[1, 2], [3, 4]])
    assert req.inputs["s"].tolist() == [b"\xff\x00", b"plain"]


def test_columnar_form_single_and_named():
    req, form = tf.decode_predict(b'{"inputs": [[1, 2]]}', ONE)
    assert form == "columnar"
    assert req.inputs["x"].shape == (1, 2)
    req, form = tf.decode_predict(b'{"inputs": {"a": [[1, 2]], "s": ["q"]}}', TWO)
    assert form == "columnar"
    assert req.inputs["s"].tolist() == [b"q"]


def test_nan_and_infinity_tokens_are_accepted_as_tf_serving_does():
    req, _ = tf.decode_predict(b'{"instances": [[NaN, Infinity], [-Infinity, 1]]}', ONE)
    x = req.inputs["x"]
    assert np.isnan(x[0, 0])
    assert x[0, 1] == np.inf
    assert x[1, 0] == -np.inf


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b'{"instances": [[1, 2]], "inputs": [[1, 2]]}', "exactly one"),
        (b"{}", "exactly one"),
        (b'{"instances": []}', "non-empty"),
        (b'{"instances": [[1, 2]], "signature_name": "other"}', "signature name"),
        (b'{"instances": [[1, 2], [3]]}', "ragged"),
        (b'{"instances": [["a", "b"]]}', "got strings"),
        (b'{"instances": [{"x": [1, 2]}, {"z": [1, 2]}]}', "other inputs"),
        (b'{"instances": [{"x": [1, 2]}, [1, 2]]}', "must be an object"),
        (b'{"instances": [{"z": [1, 2]}]}', "unknown input 'z'"),
        (b'{"inputs": {"s": [{"b64": "%%%"}], "a": [[1, 2]]}}', "base64"),
        (b'{"instances": [1, 2], "instances": [3]}', "duplicate key"),
    ],
)
def test_bad_predict_bodies(body: bytes, match: str):
    sig = TWO if b'"s"' in body else ONE
    with pytest.raises(InvalidArgument, match=match):
        tf.decode_predict(body, sig)


def test_several_inputs_need_names():
    with pytest.raises(InvalidArgument, match="naming them"):
        tf.decode_predict(b'{"instances": [[1, 2]]}', TWO)
    with pytest.raises(InvalidArgument, match="naming them"):
        tf.decode_predict(b'{"inputs": [[1, 2]]}', TWO)


def test_encode_row_and_columnar():
    p = np.array([[0.25, 0.75], [1.0, 0.0]], np.float32)
    k = np.array([b"\x01", b"ok"], dtype=object)
    resp = InferenceResponse("m", "1", {"p": p, "k_bytes": k})
    rows = orjson.loads(tf.encode_predict(resp, "row"))
    assert rows == {
        "predictions": [
            {"p": [0.25, 0.75], "k_bytes": {"b64": base64.b64encode(b"\x01").decode()}},
            {"p": [1.0, 0.0], "k_bytes": {"b64": base64.b64encode(b"ok").decode()}},
        ]
    }
    cols = orjson.loads(tf.encode_predict(resp, "columnar"))
    assert cols["outputs"]["p"] == [[0.25, 0.75], [1.0, 0.0]]
    single = InferenceResponse("m", "1", {"label": np.array([1, 0], np.int64)})
    assert orjson.loads(tf.encode_predict(single, "row")) == {"predictions": [1, 0]}
    assert orjson.loads(tf.encode_predict(single, "columnar")) == {"outputs": [1, 0]}
    text = InferenceResponse("m", "1", {"t": np.array([b"hi"], dtype=object)})
    assert orjson.loads(tf.encode_predict(text, "row")) == {"predictions": ["hi"]}


def test_rows_with_integer_labels_and_probabilities():
    resp = InferenceResponse(
        "m",
        "1",
        {
            "label": np.array([2, 0], np.longlong),  # onnxruntime's int64 dtype
            "prob": np.array([[0.1, 0.9], [1, 0]], np.float32),
        },
    )
    assert orjson.loads(tf.encode_predict(resp, "row")) == {
        "predictions": [{"label": 2, "prob": [0.1, 0.9]}, {"label": 0, "prob": [1.0, 0.0]}]
    }


def test_rows_need_a_shared_batch_dimension():
    resp = InferenceResponse("m", "1", {"a": np.zeros(2), "b": np.zeros(3)})
    with pytest.raises(ModelExecutionError, match="columnar"):
        tf.encode_predict(resp, "row")


def test_status_and_metadata():
    status = tf.model_status(
        [
            {"version": "2", "state": "READY", "reason": ""},
            {"version": 1, "state": "UNAVAILABLE", "reason": "corrupt file"},
        ]
    )
    assert status["model_version_status"][0]["state"] == "AVAILABLE"
    assert status["model_version_status"][1] == {
        "version": "1",
        "state": "END",
        "status": {"error_code": "UNKNOWN", "error_message": "corrupt file"},
    }
    md = tf.model_metadata("m", "2", TWO)
    assert md["model_spec"] == {"name": "m", "signature_name": "", "version": "2"}
    sd = md["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert sd["method_name"] == "tensorflow/serving/predict"
    assert sd["inputs"]["s"]["dtype"] == "DT_STRING"
    assert sd["outputs"]["p"]["tensor_shape"]["dim"] == [
        {"size": "-1", "name": ""},
        {"size": "2", "name": ""},
    ]
