"""Profiles: measured with the real runtime, stored next to the registry, scaled, imported."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from modelport.core.config import Settings
from modelport.core.errors import InvalidArgument
from modelport.core.types import ModelSignature, TensorSpec
from modelport.deploy.fleet import build_problem, parse_deployments, parse_fleet
from modelport.deploy.profile import (
    SERVER_OVERHEAD_MS,
    ModelProfile,
    ProfileStore,
    import_profile,
    measure,
    sample_inputs,
)
from modelport.registry import Registry


@pytest.fixture
def registry(tmp_path: Path, iris_onnx: Path):
    reg = Registry.from_settings(Settings(home=tmp_path / "home"))
    reg.register(iris_onnx, name="iris")
    yield reg
    reg.close()


@pytest.fixture
def measured(registry) -> ModelProfile:
    return measure(
        registry.open("iris:1"), batch_sizes=(1, 16), threads=(1, 2), duration_s=0.05, min_runs=10
    )


def test_measure_records_every_batch_size_and_thread_count(measured: ModelProfile):
    assert (measured.model, measured.version, measured.node_class) == ("iris", 1, "default")
    assert [(m.threads, m.batch_size) for m in measured.measurements] == [
        (1, 1),
        (1, 16),
        (2, 1),
        (2, 16),
    ]
    for m in measured.measurements:
        assert m.runs >= 10
        assert 0 < m.p50_ms <= m.p95_ms <= m.p99_ms
        assert m.rows_per_s == pytest.approx(m.requests_per_s * m.batch_size)
    assert measured.memory_mb > 10
    assert measured.model_memory_mb >= 0
    assert measured.machine["cpus"] >= 1
    r = measured.replica_profile()
    best = measured.best(1)
    assert r.cpu == best.threads
    assert r.latency_ms == pytest.approx(best.p99_ms + SERVER_OVERHEAD_MS)
    assert r.rps_per_replica < best.requests_per_s  # the server's own cost is counted


def test_fixed_batch_dimension_is_noted(tmp_path: Path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "fixed",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    path = tmp_path / "fixed.onnx"
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # what every onnxruntime release loads
    onnx.save_model(model, path)
    reg = Registry.from_settings(Settings(home=tmp_path / "h"))
    try:
        reg.register(path, name="fixed")
        p = measure(reg.open("fixed:1"), batch_sizes=(1, 8), duration_s=0.02, min_runs=5)
    finally:
        reg.close()
    assert [m.batch_size for m in p.measurements] == [1]
    assert "batch 8: skipped" in p.notes[0]


def test_store_keeps_node_classes_next_to_the_registry(tmp_path: Path, measured: ModelProfile):
    settings = Settings(home=tmp_path / "home")
    store = ProfileStore.from_settings(settings)
    path = store.save(measured)
    assert path == settings.home / "profiles" / "iris" / "1.json"
    store.save(measured.scaled("jetson", 2.0))
    loaded = store.load("iris", 1)
    assert set(loaded) == {"default", "jetson"}
    for a, b in zip(loaded["default"].measurements, measured.measurements, strict=True):
        assert a.p99_ms == pytest.approx(b.p99_ms, abs=1e-6)
        assert a.requests_per_s == pytest.approx(b.requests_per_s, abs=1e-3)
    fast = loaded["jetson"]
    assert (fast.source, fast.speed, fast.scaled_from) == ("scaled", 2.0, "default")
    assert fast.best(1).p99_ms == pytest.approx(measured.best(1).p99_ms / 2, rel=1e-3)
    doc = json.loads(path.read_text())
    assert doc["schema"] == "modelport.profile/v1"
    assert store.load("iris", 2) == {}


def test_imported_profiles(measured: ModelProfile):
    bare = import_profile(
        {"cpu": 0.5, "memory_mb": 300, "rps_per_replica": 40, "latency_ms": 25},
        "iris",
        1,
        "edge-arm",
    )
    r = bare.replica_profile()
    assert (r.cpu, r.memory_mb, r.rps_per_replica, r.latency_ms) == (0.5, 300, 40, 25)
    full = import_profile(measured.to_dict(), "iris", 1, "gpu")
    assert (full.node_class, full.source) == ("gpu", "imported")
    with pytest.raises(InvalidArgument, match="not iris:2"):
        import_profile(measured.to_dict(), "iris", 2, "gpu")
    with pytest.raises(InvalidArgument, match="needs cpu, memory_mb"):
        import_profile({"cpu": 1}, "iris", 1, "x")


def test_sample_inputs_follow_the_signature():
    sig = ModelSignature(
        (
            TensorSpec("f", "FP16", (-1, 3)),
            TensorSpec("i", "INT64", (-1, -1)),
            TensorSpec("b", "BOOL", (-1,)),
            TensorSpec("s", "BYTES", (-1, 1)),
        )
    )
    x = sample_inputs(sig, 4, dims={"i": (7,)})
    assert x["f"].dtype == np.float16
    assert x["f"].shape == (4, 3)
    assert x["i"].shape == (4, 7)
    assert x["b"].dtype == bool
    assert x["s"].dtype == object


def test_stored_profiles_feed_placement(tmp_path: Path, measured: ModelProfile):
    store = ProfileStore(tmp_path / "profiles")
    store.save(measured)
    store.save(measured.scaled("slow", 0.01))
    fleet = parse_fleet(
        {
            "nodes": [
                {
                    "name": "n1",
                    "kind": "edge",
                    "cpu": 2,
                    "memory_mb": 4096,
                    "site": "s",
                    "node_class": "slow",
                }
            ]
        }
    )
    deps = parse_deployments({"deployments": [{"name": "iris", "model": "iris@prod"}]})
    problem = build_problem(fleet, deps, store.lookup(lambda ref: ("iris", 1)))
    d = problem.deployments[0]
    assert d.profile.latency_ms == pytest.approx(measured.replica_profile().latency_ms, abs=1e-5)
    slow = problem.profile_on(d, problem.nodes[0])  # the node's class, measured or scaled
    want = measured.best(1).p99_ms / 0.01 + SERVER_OVERHEAD_MS
    assert slow.latency_ms == pytest.approx(want, rel=1e-3)
