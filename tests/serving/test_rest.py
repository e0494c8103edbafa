"""REST conformance: the real tritonclient.http client, TF Serving requests, error cases."""

from __future__ import annotations

import gzip
import json

import httpx
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as th
from tests.serving.conftest import IRIS_X, Served
from tritonclient.utils import InferenceServerException


@pytest.fixture
def tc(server: Served):
    """The real tritonclient HTTP client against the test server."""
    client = th.InferenceServerClient(server.url.removeprefix("http://"))
    yield client
    client.close()


def reference(model_path: str, x: np.ndarray) -> list[np.ndarray]:
    return ort.InferenceSession(model_path).run(None, {"X": x})


def test_health_and_server_metadata(server: Served):
    assert httpx.get(server.url + "/v2/health/live").json() == {"live": True}
    assert httpx.get(server.url + "/v2/health/ready").json() == {"ready": True}
    meta = httpx.get(server.url + "/v2").json()
    assert meta["name"] == "modelport"
    for ext in ("binary_tensor_data", "model_repository", "statistics", "model_configuration"):
        assert ext in meta["extensions"]
    assert httpx.get(server.url + "/v2/models").json() == {"models": ["iris", "iris-batched"]}


def test_tritonclient_metadata_config_and_binary_infer(server: Served, tc, model_files):
    c = tc
    assert c.is_server_live()
    assert c.is_server_ready()
    assert c.is_model_ready("iris")
    meta = c.get_model_metadata("iris")
    assert meta["name"] == "iris"
    assert meta["versions"] == ["2"]
    assert meta["inputs"] == [{"name": "X", "datatype": "FP32", "shape": [-1, 4]}]
    config = c.get_model_config("iris-batched")
    assert config["max_batch_size"] == 16
    assert config["input"][0]["data_type"] == "TYPE_FP32"
    inp = th.InferInput("X", list(IRIS_X.shape), "FP32")
    inp.set_data_from_numpy(IRIS_X)  # binary by default
    result = c.infer("iris", [inp])
    label, probs = reference(str(model_files["iris_b"]), IRIS_X)
    np.testing.assert_array_equal(result.as_numpy("label"), label)
    np.testing.assert_allclose(result.as_numpy("probabilities"), probs, rtol=1e-6)
    assert result.get_response()["model_version"] == "2"
    # JSON in, one JSON output requested
    inp = th.InferInput("X", list(IRIS_X.shape), "FP32")
    inp.set_data_from_numpy(IRIS_X, binary_data=False)
    out = th.InferRequestedOutput("label", binary_data=False)
    result = c.infer("iris", [inp], outputs=[out], request_id="req-7")
    np.testing.assert_array_equal(result.as_numpy("label"), label)
    assert result.get_response()["id"] == "req-7"
    assert [o["name"] for o in result.get_response()["outputs"]] == ["label"]


def test_versions_and_aliases_in_the_path(server: Served, tc, model_files):
    c = tc
    inp = th.InferInput("X", list(IRIS_X.shape), "FP32")
    inp.set_data_from_numpy(IRIS_X)
    assert c.infer("iris", [inp], model_version="2").get_response()["model_version"] == "2"
    with pytest.raises(InferenceServerException) as e:
        c.infer("iris", [inp], model_version="1")  # not loaded: the server follows latest
    assert e.value.status() == "404"
    r = httpx.get(server.url + "/v2/models/iris/versions/production")
    assert r.status_code == 404  # production → 1, which this server does not hold


def test_compression_both_ways(server: Served, tc):
    c = tc
    inp = th.InferInput("X", list(IRIS_X.shape), "FP32")
    inp.set_data_from_numpy(IRIS_X)
    for algo in ("gzip", "deflate"):
        r = c.infer(
            "iris", [inp], request_compression_algorithm=algo, response_compression_algorithm=algo
        )
        assert r.as_numpy("label").shape == (3,)


def test_statistics_count_requests(server: Served):
    before = httpx.get(server.url + "/v2/models/iris-batched/stats").json()
    n0 = before["model_stats"][0]["inference_count"]
    body = {
        "inputs": [
            {"name": "X", "shape": [3, 4], "datatype": "FP32", "data": IRIS_X.ravel().tolist()}
        ]
    }
    for _ in range(5):
        assert (
            httpx.post(server.url + "/v2/models/iris-batched/infer", json=body).status_code == 200
        )
    stats = httpx.get(server.url + "/v2/models/iris-batched/stats").json()["model_stats"][0]
    assert stats["inference_count"] == n0 + 15
    assert stats["inference_stats"]["success"]["count"] >= 5
    assert stats["batch_stats"], "batched executions are reported per batch size"
    all_stats = httpx.get(server.url + "/v2/models/stats").json()
    assert {s["name"] for s in all_stats["model_stats"]} == {"iris", "iris-batched"}


def test_tf_serving_row_and_columnar(server: Served, model_files):
    label, probs = reference(str(model_files["iris_b"]), IRIS_X)
    r = httpx.post(server.url + "/v1/models/iris:predict", json={"instances": IRIS_X.tolist()})
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    assert [p["label"] for p in preds] == label.tolist()
    r = httpx.post(server.url + "/v1/models/iris:predict", json={"inputs": IRIS_X.tolist()})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(r.json()["outputs"]["probabilities"], probs, rtol=1e-5)
    r = httpx.post(
        server.url + "/v1/models/iris/versions/2:predict",
        json={"instances": [{"X": row} for row in IRIS_X.tolist()]},
    )
    assert r.status_code == 200, r.text
    status = httpx.get(server.url + "/v1/models/iris").json()
    assert status["model_version_status"][0]["state"] == "AVAILABLE"
    meta = httpx.get(server.url + "/v1/models/iris/metadata").json()
    assert meta["model_spec"]["name"] == "iris"


@pytest.mark.parametrize(
    ("path", "body", "headers", "status"),
    [
        ("/v2/models/ghost/infer", b"{}", {}, 404),
        ("/v2/models/iris/infer", b"{not json", {}, 400),
        (
            "/v2/models/iris/infer",
            b'{"inputs": [{"name": "X", "shape": [1, 4], '
            b'"datatype": "BYTES", "data": ["a", "b", "c", "d"]}]}',
            {},
            400,
        ),
        (
            "/v2/models/iris/infer",
            b'{"inputs": [{"name": "X", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}',
            {},
            400,
        ),
        (
            "/v2/models/iris/infer",
            b'{"inputs": [{"name": "Z", "shape": [1, 4], '
            b'"datatype": "FP32", "data": [1, 2, 3, 4]}]}',
            {},
            400,
        ),
        (
            "/v2/models/iris/infer",
            b'{"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3]}]}',
            {},
            400,
        ),
        (
            "/v2/models/iris/infer",
            b'{"inputs": []}' + b"x" * 100,
            {"Inference-Header-Content-Length": "999999"},
            400,
        ),
        (
            "/v2/models/iris/infer",
            b'{"inputs": [{"name": "X", "shape": [1, 4], '
            b'"datatype": "FP32", "parameters": {"binary_data_size": 64}}]}',
            {"Inference-Header-Content-Length": "92"},
            400,
        ),
        ("/v2/models/iris/infer", b"x" * (1 << 20), {"Content-Type": "application/x-pickle"}, 415),
        ("/v2/models/..%2Fetc/infer", b"{}", {}, 400),
        ("/v2/models/iris/infer", b"[" * 100_000 + b"]" * 100_000, {}, 400),
    ],
)
def test_bad_requests_get_exact_statuses(server: Served, path, body, headers, status):
    r = httpx.post(server.url + path, content=body, headers=headers)
    assert r.status_code == status, r.text
    assert set(r.json()) == {"error"}
    assert "Traceback" not in r.text
    assert httpx.get(server.url + "/v2/health/live").status_code == 200


def test_oversize_and_gzip_bomb_get_413(serving_home):
    from tests.serving.conftest import start_thread_server

    thread, served = start_thread_server(
        serving_home, models=["iris"], grpc_port=None, max_body_bytes=64 << 10
    )
    try:
        r = httpx.post(served.url + "/v2/models/iris/infer", content=b"0" * (128 << 10))
        assert r.status_code == 413
        bomb = gzip.compress(b" " * (8 << 20))
        r = httpx.post(
            served.url + "/v2/models/iris/infer", content=bomb, headers={"Content-Encoding": "gzip"}
        )
        assert r.status_code == 413
        ok = httpx.post(
            served.url + "/v2/models/iris/infer",
            json={
                "inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]
            },
        )
        assert ok.status_code == 200
    finally:
        thread.stop()


def test_unknown_routes_and_methods(server: Served):
    assert httpx.get(server.url + "/nope").status_code == 404
    assert httpx.get(server.url + "/v2/models/iris/infer").status_code == 405
    assert httpx.post(server.url + "/v2/health/live").status_code == 405


def test_openapi_describes_every_route(server: Served):
    doc = httpx.get(server.url + "/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    assert "/v2/models/{model_name}/infer" in doc["paths"]
    assert "/v1/models/{model_name}:predict" in doc["paths"]
    assert "modelport" in httpx.get(server.url + "/docs").text


def test_model_ready_and_repository(server: Served):
    r = httpx.get(server.url + "/v2/models/iris/ready")
    assert r.json() == {"name": "iris", "ready": True}
    index = httpx.post(server.url + "/v2/repository/index", json={}).json()
    assert {(m["name"], m["state"]) for m in index} == {
        ("iris", "READY"),
        ("iris-batched", "READY"),
    }
    assert json.loads(httpx.get(server.url + "/v2/models/ghost/ready").text)["ready"] is False


def test_remembered_infer_routes_follow_model_control(server: Served):
    """An infer path is parsed once and remembered; model control still applies to it."""
    url = server.url + "/v2/models/iris-batched/infer"
    body = {"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [5, 3, 1, 0]}]}
    assert httpx.post(url, json=body).status_code == 200  # remembered from here on
    assert httpx.post(url, json=body).status_code == 200
    assert httpx.get(url).status_code == 405
    assert httpx.post(url, content=b"{").status_code == 400
    encoded = server.url + "/v2/models/iris-batched/%69nfer"
    assert httpx.post(encoded, json=body).status_code == 200
    repo = server.url + "/v2/repository/models/iris-batched"
    assert httpx.post(repo + "/unload").status_code == 200
    try:
        gone = httpx.post(url, json=body)
        never_seen = httpx.post(server.url + "/v2/models/iris-batched/infe%72", json=body)
        assert gone.status_code == never_seen.status_code
        assert gone.status_code in (404, 503)
    finally:
        assert httpx.post(repo + "/load").status_code == 200
    assert httpx.post(url, json=body).status_code == 200
