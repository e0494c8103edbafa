"""Bounded queues, timeouts and dynamic batching with a slow real model."""

from __future__ import annotations

import concurrent.futures as cf
from pathlib import Path

import httpx
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from tests.serving.conftest import start_thread_server

from modelport.core.config import Settings
from modelport.registry import Registry
from modelport.serving.config import ModelConfig


def slow_model(path: Path, n: int = 1024, repeats: int = 6) -> Path:
    """y = x · W repeated: ~tens of ms per call on one core, batchable on axis 0."""
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((n, n)) / np.sqrt(n)).astype(np.float32)
    nodes, prev = [], "x"
    for i in range(repeats):
        nodes.append(helper.make_node("MatMul", [prev, "w"], [f"h{i}"]))
        prev = f"h{i}"
    nodes.append(helper.make_node("Identity", [prev], ["y"]))
    graph = helper.make_graph(
        nodes,
        "slow",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, n])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, n])],
        [numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save_model(model, str(path))
    return path


@pytest.fixture(scope="module")
def slow_home(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    root = tmp_path_factory.mktemp("slow")
    settings = Settings(home=root / "home")
    reg = Registry.from_settings(settings)
    reg.register(slow_model(root / "slow.onnx"), "slow")
    reg.close()
    return settings


def body(rows: int = 64, timeout_us: int | None = None) -> dict:
    x = np.ones((rows, 1024), np.float32)
    b: dict = {
        "inputs": [
            {"name": "x", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}
        ]
    }
    if timeout_us is not None:
        b["parameters"] = {"timeout": timeout_us}
    return b


def test_full_queue_is_refused_at_once_with_retry_after(slow_home: Settings):
    thread, served = start_thread_server(
        slow_home, models=[ModelConfig(ref="slow", max_queue_size=2, instances=1)]
    )
    try:
        payload = body()
        with cf.ThreadPoolExecutor(12) as pool:
            responses = list(
                pool.map(
                    lambda _: httpx.post(
                        served.url + "/v2/models/slow/infer", json=payload, timeout=60
                    ),
                    range(12),
                )
            )
        codes = sorted(r.status_code for r in responses)
        assert 200 in codes, codes
        assert 503 in codes, codes
        assert set(codes) == {200, 503}
        refused = next(r for r in responses if r.status_code == 503)
        assert refused.headers["retry-after"] == "1"
        assert "queue full" in refused.json()["error"]
        stats = httpx.get(served.url + "/v2/models/slow/stats").json()["model_stats"][0]
        assert stats["inference_stats"]["success"]["count"] == codes.count(200)
        assert (
            httpx.post(served.url + "/v2/models/slow/infer", json=payload, timeout=60).status_code
            == 200
        )
    finally:
        thread.stop()


def test_timeouts_answer_504(slow_home: Settings):
    thread, served = start_thread_server(
        slow_home, models=[ModelConfig(ref="slow", timeout_s=0.001)]
    )
    try:
        r = httpx.post(served.url + "/v2/models/slow/infer", json=body(256), timeout=60)
        assert r.status_code == 504
        assert "did not finish" in r.json()["error"]
    finally:
        thread.stop()
    thread, served = start_thread_server(slow_home, models=["slow"])
    try:
        r = httpx.post(
            served.url + "/v2/models/slow/infer", json=body(256, timeout_us=1000), timeout=60
        )
        assert r.status_code == 504
        r = httpx.post(served.url + "/v2/models/slow/infer", json=body(1, timeout_us=-5))
        assert r.status_code == 400
        assert httpx.get(served.url + "/v2/health/live").status_code == 200
    finally:
        thread.stop()


def test_dynamic_batching_merges_concurrent_requests_without_mixing(slow_home: Settings):
    thread, served = start_thread_server(
        slow_home, models=[ModelConfig(ref="slow", max_batch_size=32, max_queue_delay_us=20_000)]
    )
    try:
        rng = np.random.default_rng(1)
        xs = [rng.standard_normal((n, 1024)).astype(np.float32) for n in (1, 2, 3, 1, 4, 2, 1, 3)]

        def call(x: np.ndarray) -> np.ndarray:
            from modelport.client import Client

            with Client(served.url, timeout_s=60) as c:
                return c.infer("slow", {"x": x})["y"]

        with cf.ThreadPoolExecutor(len(xs)) as pool:
            outs = list(pool.map(call, xs))
        import onnxruntime as ort

        ref = ort.InferenceSession(str(slow_model(Path(thread.settings.home) / "ref.onnx")))
        for x, y in zip(xs, outs, strict=True):
            assert y.shape == (x.shape[0], 1024)
            np.testing.assert_allclose(y, ref.run(None, {"x": x})[0], rtol=1e-3, atol=1e-3)
        stats = httpx.get(served.url + "/v2/models/slow/stats").json()["model_stats"][0]
        assert stats["inference_count"] == sum(x.shape[0] for x in xs)
        assert stats["execution_count"] < len(xs)  # requests were merged
    finally:
        thread.stop()


def test_batcher_never_strands_a_request_arriving_as_a_batch_finishes(slow_home: Settings):
    """Waves of requests around batch completions: every one is answered."""
    thread, served = start_thread_server(
        slow_home,
        models=[ModelConfig(ref="slow", max_batch_size=4, max_queue_delay_us=200, timeout_s=20)],
    )
    try:
        payload = body(rows=1)

        def call(_: int) -> int:
            return httpx.post(
                served.url + "/v2/models/slow/infer", json=payload, timeout=30
            ).status_code

        with cf.ThreadPoolExecutor(12) as pool:
            codes = list(pool.map(call, range(240)))
        assert codes == [200] * 240
    finally:
        thread.stop()
