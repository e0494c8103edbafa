"""ServingMetrics: exact counts, histogram shape, exposition formats, thread safety."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families

from modelport.monitoring.metrics import (
    LATENCY_BUCKETS_S,
    ServingMetrics,
    quantile_from_buckets,
)


def families(m: ServingMetrics) -> dict[str, object]:
    body, ctype = m.render(None)
    assert ctype.startswith("text/plain")
    return {f.name: f for f in text_string_to_metric_families(body.decode())}


def samples(m: ServingMetrics, name: str) -> dict[tuple, float]:
    fam = families(m)[name]
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for s in fam.samples  # type: ignore[attr-defined]
    }


def test_counts_and_histograms_are_exact():
    m = ServingMetrics(process=False)
    vm = m.bind("iris", "1")
    rest, grpc = vm.protocol("rest"), vm.protocol("grpc")
    rng = np.random.default_rng(0)
    latencies = rng.integers(20_000, 3_000_000_000, size=500)  # 20 µs … 3 s in ns
    for i, ns in enumerate(latencies):
        (rest if i % 2 else grpc).observe(200, int(ns), int(ns) // 10, int(ns) // 2)
    for _ in range(7):
        rest.observe(400, 50_000)  # invalid requests: never queued or computed
    s = samples(m, "modelport_requests")
    key = "modelport_requests_total"
    labels = (("model", "iris"), ("version", "1"))
    assert s[(key, tuple(sorted((*labels, ("protocol", "rest"), ("code", "200")))))] == 250
    assert s[(key, tuple(sorted((*labels, ("protocol", "grpc"), ("code", "200")))))] == 250
    assert s[(key, tuple(sorted((*labels, ("protocol", "rest"), ("code", "400")))))] == 7

    dur = samples(m, "modelport_request_duration_seconds")
    rest_labels = tuple(sorted((*labels, ("protocol", "rest"))))
    count = dur[("modelport_request_duration_seconds_count", rest_labels)]
    assert count == 257
    expected_sum = (latencies[1::2].sum() + 7 * 50_000) / 1e9
    assert dur[("modelport_request_duration_seconds_sum", rest_labels)] == pytest.approx(
        expected_sum
    )
    # cumulative buckets agree with numpy on the same latencies
    rest_lat = np.concatenate([latencies[1::2], np.full(7, 50_000)]) / 1e9
    for le in LATENCY_BUCKETS_S:
        got = dur[
            (
                "modelport_request_duration_seconds_bucket",
                tuple(sorted((*rest_labels, ("le", repr(le))))),
            )
        ]
        assert got == int(np.sum(rest_lat <= le + 1e-12)), le

    queue = samples(m, "modelport_queue_duration_seconds")
    assert queue[("modelport_queue_duration_seconds_count", tuple(sorted(labels)))] == 500
    compute = samples(m, "modelport_compute_duration_seconds")
    assert compute[("modelport_compute_duration_seconds_count", tuple(sorted(labels)))] == 500


def test_batches_inflight_queue_depth_and_rejections():
    m = ServingMetrics(process=False)
    depth = [3]
    vm = m.bind("digits", "2", queue_depth=lambda: depth[0])
    for rows in (1, 1, 8, 32, 2000):
        vm.observe_batch(rows)
    vm.enter()
    vm.enter()
    vm.leave()
    m.observe_rejected("digits", "queue_full")
    m.observe_rejected("digits", "queue_full")
    m.observe_rejected("digits", "too_large")
    lab = (("model", "digits"), ("version", "2"))
    b = samples(m, "modelport_batch_size")
    assert b[("modelport_batch_size_count", lab)] == 5
    assert b[("modelport_batch_size_sum", lab)] == 2042
    assert b[("modelport_batch_size_bucket", tuple(sorted((*lab, ("le", "1.0")))))] == 2
    assert b[("modelport_batch_size_bucket", tuple(sorted((*lab, ("le", "1024.0")))))] == 4
    assert samples(m, "modelport_inflight_requests")[("modelport_inflight_requests", lab)] == 1
    assert samples(m, "modelport_queue_depth")[("modelport_queue_depth", lab)] == 3
    depth[0] = 0
    assert samples(m, "modelport_queue_depth")[("modelport_queue_depth", lab)] == 0
    rej = samples(m, "modelport_rejected_requests")
    full = (("model", "digits"), ("reason", "queue_full"))
    assert rej[("modelport_rejected_requests_total", full)] == 2


def test_model_state_drift_performance_and_alert_series():
    m = ServingMetrics(process=False)
    m.bind("iris", "1")
    m.model_loaded("iris", "1", load_seconds=0.25, memory_bytes=1 << 20)
    m.publish_drift(
        {
            "model": "iris",
            "version": "1",
            "window": 400,
            "drifted": True,
            "features": [{"name": "X[0]", "psi": 0.4, "ks_pvalue": 0.001, "ks_stat": 0.3}],
            "prediction": {"name": "prediction", "psi": 0.05, "chi2_pvalue": 0.2},
        }
    )
    m.publish_performance("iris", {"version": "1", "count": 50, "accuracy": 0.9, "f1": 0.8})
    m.set_alert("iris", "drift", True)
    fams = families(m)
    lab = (("model", "iris"), ("version", "1"))
    assert samples(m, "modelport_model_loaded")[("modelport_model_loaded", lab)] == 1
    load = samples(m, "modelport_model_load_seconds")
    assert load[("modelport_model_load_seconds", lab)] == 0.25
    drift = samples(m, "modelport_feature_drift")
    x0_psi = tuple(sorted((*lab, ("feature", "X[0]"), ("test", "psi"))))
    assert drift[("modelport_feature_drift", x0_psi)] == 0.4
    assert samples(m, "modelport_drift_detected")[("modelport_drift_detected", lab)] == 1
    assert samples(m, "modelport_feedback_accuracy")[("modelport_feedback_accuracy", lab)] == 0.9
    assert "modelport_alert_active" in fams
    m.model_unloaded("iris", "1")
    assert samples(m, "modelport_model_loaded")[("modelport_model_loaded", lab)] == 0
    m.model_unloaded("iris", "1", forget=True)
    assert not samples(m, "modelport_model_loaded")
    assert not samples(m, "modelport_queue_duration_seconds")


def test_openmetrics_when_asked_and_process_metrics():
    m = ServingMetrics()
    m.bind("iris", "1").protocol("rest").observe(200, 1_000_000, 0, 900_000)
    body, ctype = m.render("application/openmetrics-text; version=1.0.0; charset=utf-8")
    assert ctype.startswith("application/openmetrics-text")
    names = {f.name for f in parse_om(body.decode())}
    assert {"modelport_requests", "modelport_request_duration_seconds"} <= names
    text = {f.name for f in text_string_to_metric_families(m.render("text/plain")[0].decode())}
    assert {"process_cpu_seconds", "process_resident_memory_bytes", "modelport_build_info"} <= text


def test_two_servers_do_not_share_a_registry():
    a, b = ServingMetrics(process=False), ServingMetrics(process=False)
    a.bind("x", "1").protocol("rest").observe(200, 1000)
    assert "modelport_requests_total{" not in b.render(None)[0].decode()


def test_concurrent_updates_lose_nothing():
    m = ServingMetrics(process=False)
    child = m.bind("iris", "1").protocol("rest")
    n, threads = 20_000, 4

    def work() -> None:
        for _ in range(n):
            child.observe(200, 120_000, 1_000, 100_000)

    ts = [threading.Thread(target=work) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    codes, buckets = m.bind("iris", "1").request_totals()
    assert codes == {200: n * threads}
    assert sum(buckets) == n * threads


def test_quantile_matches_promql_interpolation():
    counts = [0] * (len(LATENCY_BUCKETS_S) + 1)
    counts[0] = 90  # ≤ 50 µs
    counts[6] = 10  # (2.5 ms, 5 ms]
    # rank 99 falls 9/10 into the (2.5 ms, 5 ms] bucket
    assert quantile_from_buckets(0.99, counts) == pytest.approx(0.0025 + 0.0025 * 0.9)
    assert quantile_from_buckets(0.5, counts) == pytest.approx(0.00005 * 50 / 90)
    assert quantile_from_buckets(0.99, [0] * len(counts)) is None
    counts[-1] = 1000
    assert quantile_from_buckets(0.99, counts) == LATENCY_BUCKETS_S[-1]
