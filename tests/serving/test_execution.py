"""How a version runs: instances, and a big request cut across them."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import onnxruntime as ort
import pytest
from tests.serving.conftest import start_thread_server
from tests.serving.test_backpressure import body, slow_home, slow_model  # noqa: F401

from modelport.core.config import Settings
from modelport.serving.batcher import SOLO_AFTER, SPLIT_MIN_ROWS, BatchingConfig, Executor
from modelport.serving.config import ModelConfig


class Recorder:
    """A run function that sleeps per call (releasing the GIL) and records overlap."""

    def __init__(self, out: str = "rows") -> None:
        self.out = out
        self.calls: list[int] = []
        self.running = self.peak = 0
        self._lock = threading.Lock()

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = inputs["x"]
        with self._lock:
            self.calls.append(len(x))
            self.running += 1
            self.peak = max(self.peak, self.running)
        time.sleep(0.05)
        with self._lock:
            self.running -= 1
        if self.out == "rows":
            return {"y": x * 2, "n": np.arange(len(x))}
        return {"total": np.asarray(x.sum())}  # no batch axis: rows cannot be joined


def run(executor: Executor, x: np.ndarray) -> tuple[dict[str, np.ndarray], int]:
    async def go():
        out, timing = await executor.submit({"x": x})
        return out, timing.batch_size

    return asyncio.run(go())


@pytest.fixture
def pool():
    with ThreadPoolExecutor(4) as p:
        yield p


def test_a_big_request_is_cut_across_instances_and_joined_in_order(pool):
    rec = Recorder()
    ex = Executor(rec, BatchingConfig(instances=3), pool, split=True)
    x = np.arange(100 * 2, dtype=np.float32).reshape(100, 2)
    out, rows = run(ex, x)
    np.testing.assert_array_equal(out["y"], x * 2)
    # each part numbers its own rows: the joined output keeps the parts in order
    np.testing.assert_array_equal(out["n"], np.concatenate([np.arange(n) for n in (33, 33, 34)]))
    assert sorted(rec.calls) == [33, 33, 34]
    assert rows == 100
    assert rec.peak == 3  # the parts ran at once


def test_small_requests_and_unsplit_executors_run_whole(pool):
    rec = Recorder()
    ex = Executor(rec, BatchingConfig(instances=4), pool, split=True)
    run(ex, np.ones((2 * SPLIT_MIN_ROWS - 1, 2), np.float32))  # too few rows for two parts
    run(ex, np.ones((2 * SPLIT_MIN_ROWS, 2), np.float32))  # two parts of the minimum
    assert rec.calls == [2 * SPLIT_MIN_ROWS - 1, SPLIT_MIN_ROWS, SPLIT_MIN_ROWS]
    assert not Executor(rec, BatchingConfig(instances=1), pool, split=True).split
    assert not Executor(rec, BatchingConfig(instances=4), pool, inline=True, split=True).split
    rec.calls.clear()
    run(Executor(rec, BatchingConfig(instances=4), pool), np.ones((64, 2), np.float32))
    assert rec.calls == [64]


def test_an_output_without_a_batch_axis_stops_splitting(pool):
    rec = Recorder(out="total")
    ex = Executor(rec, BatchingConfig(instances=2), pool, split=True)
    x = np.ones((64, 2), np.float32)
    out, _ = run(ex, x)
    assert float(out["total"]) == 128.0  # the whole request's answer, not a part's
    assert not ex.split
    rec.calls.clear()
    run(ex, x)
    assert rec.calls == [64]


def test_instances_bound_concurrent_runs(pool):
    rec = Recorder()
    ex = Executor(rec, BatchingConfig(instances=2), pool)

    async def go():
        await asyncio.gather(*(ex.submit({"x": np.ones((1, 2), np.float32)}) for _ in range(6)))

    asyncio.run(go())
    assert rec.peak == 2
    assert len(rec.calls) == 6


def test_one_client_at_a_time_gets_the_solo_copy_and_any_overlap_the_instances(pool):
    rec, solo = Recorder(), Recorder()
    ex = Executor(rec, BatchingConfig(instances=2), pool, split=True, run_solo=solo)
    one = np.ones((1, 2), np.float32)
    for _ in range(SOLO_AFTER + 2):  # one request at a time
        out, _ = run(ex, one)
        np.testing.assert_array_equal(out["y"], one * 2)
    assert (len(rec.calls), len(solo.calls)) == (SOLO_AFTER, 2)

    async def together(n: int) -> None:
        await asyncio.gather(*(ex.submit({"x": one}) for _ in range(n)))

    asyncio.run(together(3))  # the first still found it empty; the others overlap
    assert (len(rec.calls), len(solo.calls)) == (SOLO_AFTER + 2, 3)
    run(ex, one)  # after an overlap, lone requests start counting again
    assert (len(rec.calls), len(solo.calls)) == (SOLO_AFTER + 3, 3)
    run(ex, np.ones((2 * SPLIT_MIN_ROWS, 2), np.float32))  # rows to share: cut, not solo
    assert rec.calls[-2:] == [SPLIT_MIN_ROWS, SPLIT_MIN_ROWS]
    assert len(solo.calls) == 3


def test_queued_rows_are_shared_among_idle_instances(pool):
    """32 queued rows with two idle instances: two batches of 16 run at once, not one of 32."""
    rec = Recorder()
    cfg = BatchingConfig(max_batch_size=32, max_queue_delay_us=1000, instances=2)
    ex = Executor(rec, cfg, pool)
    xs = [np.full((1, 2), i, np.float32) for i in range(32)]

    async def go():
        return await asyncio.gather(*(ex.submit({"x": x}) for x in xs))

    results = asyncio.run(go())
    assert sorted(rec.calls) == [16, 16]
    assert rec.peak == 2
    for x, (out, timing) in zip(xs, results, strict=True):
        np.testing.assert_array_equal(out["y"], x * 2)  # each request gets its own rows
        assert timing.batch_size == 16
    # one instance: the whole queue is one batch
    rec = Recorder()
    ex = Executor(rec, dataclasses.replace(cfg, instances=1), pool)
    asyncio.run(go())
    assert rec.calls == [32]


def test_inputs_with_different_row_counts_are_never_cut_or_merged(pool):
    """A variable first dimension that is not a batch axis: the request runs whole."""
    seen: list[tuple[int, int]] = []

    def two(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        seen.append((len(inputs["x"]), len(inputs["w"])))
        return {"y": inputs["x"] * 2}

    x, w = np.ones((32, 2), np.float32), np.ones((3, 2), np.float32)
    ex = Executor(two, BatchingConfig(instances=2), pool, split=True)
    asyncio.run(ex.submit({"x": x, "w": w}))
    assert seen == [(32, 3)]
    seen.clear()
    batched = Executor(
        two, BatchingConfig(max_batch_size=64, max_queue_delay_us=20_000, instances=1), pool
    )

    async def go():
        return await asyncio.gather(
            batched.submit({"x": x, "w": w}),
            batched.submit({"x": x[:3], "w": w}),  # same rows in both inputs: mergeable
            batched.submit({"x": x[:3], "w": w}),
        )

    results = asyncio.run(go())
    assert sorted(seen) == [(6, 6), (32, 3)]
    np.testing.assert_array_equal(results[0][0]["y"], x * 2)


def test_served_model_splits_big_requests_with_the_same_answers(slow_home: Settings):  # noqa: F811
    thread, served = start_thread_server(slow_home, threads=2, models=[ModelConfig(ref="slow")])
    try:
        cfg = httpx.get(served.url + "/v2/models/slow/config").json()
        assert cfg["instance_group"][0]["count"] == 2  # instances 0 → one per pool thread
        from modelport.client import Client

        x = np.random.default_rng(3).standard_normal((64, 1024)).astype(np.float32)
        with Client(served.url, timeout_s=60) as c:
            y = c.infer("slow", {"x": x})["y"]
        ref = ort.InferenceSession(str(slow_model(thread.settings.home / "ref.onnx")))
        np.testing.assert_allclose(y, ref.run(None, {"x": x})[0], rtol=1e-3, atol=1e-3)
        stats = httpx.get(served.url + "/v2/models/slow/stats").json()["model_stats"][0]
        assert stats["inference_count"] == 64
        (loaded,) = served.handle.app.manager.models["slow"].versions.values()
        assert loaded.solo is None  # under a millisecond at batch 1: no second copy
    finally:
        thread.stop()
    thread, served = start_thread_server(
        slow_home, threads=2, models=[ModelConfig(ref="slow", instances=1)]
    )
    try:
        cfg = httpx.get(served.url + "/v2/models/slow/config").json()
        assert cfg["instance_group"][0]["count"] == 1
    finally:
        thread.stop()


def test_a_heavy_model_keeps_a_copy_with_all_threads_for_lone_requests(
    slow_home: Settings,  # noqa: F811
):
    from modelport.client import Client
    from modelport.registry import Registry

    path = slow_model(slow_home.home.parent / "heavy.onnx", n=2048, repeats=12)
    reg = Registry.from_settings(slow_home)
    reg.register(path, "heavy")
    reg.close()
    thread, served = start_thread_server(slow_home, threads=2, models=[ModelConfig(ref="heavy")])
    try:
        (loaded,) = served.handle.app.manager.models["heavy"].versions.values()
        assert loaded.solo is not None  # milliseconds at batch 1 on one thread
        x = np.random.default_rng(4).standard_normal((3, 2048)).astype(np.float32)
        ref = ort.InferenceSession(str(path)).run(None, {"x": x})[0]
        with Client(served.url, timeout_s=60) as c:
            for k in range(SOLO_AFTER + 3):  # the last ones run on the solo copy
                y = c.infer("heavy", {"x": x[k % 3 : k % 3 + 1]})["y"]
                np.testing.assert_allclose(y, ref[k % 3 : k % 3 + 1], rtol=1e-3, atol=1e-3)
    finally:
        thread.stop()


def test_a_solo_copy_that_fails_to_load_leaves_the_version_serving(
    slow_home: Settings,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
):
    from modelport.client import Client
    from modelport.registry import Registry
    from modelport.runtimes import RuntimeOptions
    from modelport.serving import manager

    path = slow_model(slow_home.home.parent / "heavy-nosolo.onnx", n=2048, repeats=12)
    reg = Registry.from_settings(slow_home)
    reg.register(path, "heavy-nosolo")
    reg.close()
    real = manager.load_runtime

    def no_spinning_copy(fmt: str, spec: object, options: RuntimeOptions) -> object:
        if options.spinning:
            raise MemoryError("no room for a second copy")
        return real(fmt, spec, options)

    monkeypatch.setattr(manager, "load_runtime", no_spinning_copy)
    thread, served = start_thread_server(
        slow_home, threads=2, models=[ModelConfig(ref="heavy-nosolo")]
    )
    try:
        (loaded,) = served.handle.app.manager.models["heavy-nosolo"].versions.values()
        assert loaded.solo is None
        x = np.ones((1, 2048), np.float32)
        with Client(served.url, timeout_s=60) as c:
            for _ in range(SOLO_AFTER + 2):
                assert c.infer("heavy-nosolo", {"x": x})["y"].shape == (1, 2048)
    finally:
        thread.stop()
