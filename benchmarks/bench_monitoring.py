"""What monitoring costs on the request path, in nanoseconds per request.

Side by side: modelport's pre-bound counters versus the same five updates through
``prometheus_client``'s labelled children, then each per-request hook (drift window,
feedback store, payload-log sampling) and all of them together through
``VersionMonitor.observe``. Also the off-path costs: a ``/metrics`` scrape and a drift
evaluation over a full window.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Histogram

from modelport.core.types import ModelSignature, TensorSpec
from modelport.monitoring.config import MonitoringConfig
from modelport.monitoring.drift import build_profile
from modelport.monitoring.feedback import FeedbackStore
from modelport.monitoring.metrics import LATENCY_BUCKETS_S, ServingMetrics
from modelport.monitoring.monitor import Monitor
from modelport.monitoring.payload_log import PayloadLogger
from modelport.monitoring.profiles import ProfileStore
from modelport.monitoring.window import DriftWindow

SIG = ModelSignature(
    inputs=(TensorSpec("X", "FP32", (-1, 16)),),
    outputs=(TensorSpec("label", "INT64", (-1,)),),
)


class NullSink:
    def write(self, records: object) -> None:
        pass

    def close(self) -> None:
        pass


def ns_per_op(fn: Callable[[int], object], n: int = 200_000, repeat: int = 5) -> float:
    """Best of ``repeat`` runs of ``fn(n)`` (n operations), in ns/op: the least disturbed
    by other processes on a shared machine."""
    runs = []
    for _ in range(repeat):
        t = time.perf_counter_ns()
        fn(n)
        runs.append((time.perf_counter_ns() - t) / n)
    return min(runs)


def main() -> None:
    x = {"X": np.zeros((1, 16), np.float32)}
    out = {"label": np.array([1], np.int64)}
    results: dict[str, float] = {}

    # --- counters: prometheus_client children vs pre-bound plain counters
    reg = CollectorRegistry()
    req = Counter("r", "r", ["model", "version", "protocol", "code"], registry=reg)
    hists = [
        Histogram(f"h{i}", "h", ["model", "version"], buckets=LATENCY_BUCKETS_S, registry=reg)
        for i in range(3)
    ]
    c = req.labels("m", "1", "rest", "200")
    h0, h1, h2 = (h.labels("m", "1") for h in hists)

    def prom(n: int) -> None:
        for _ in range(n):
            c.inc()
            h0.observe(0.0012)
            h1.observe(0.0001)
            h2.observe(0.0009)

    metrics = ServingMetrics(process=False)
    rest = metrics.bind("m", "1").protocol("rest")
    observe = rest.observe

    def ours(n: int) -> None:
        for _ in range(n):
            observe(200, 1_200_000, 100_000, 900_000)

    results["prometheus_client children (4 updates)"] = ns_per_op(prom)
    results["RequestMetrics.observe (same 4)"] = ns_per_op(ours)

    # --- each hook alone
    window = DriftWindow("m", "1", 1000, high_dim=False)
    label = out["label"]

    def window_add(n: int) -> None:
        add = window.add
        for _ in range(n):
            add(x, label)

    store = FeedbackStore("m", max_predictions=100_000)
    ids = [f"req-{i}" for i in range(200_000)]

    def remember(n: int) -> None:
        rem = store.remember
        for i in range(n):
            rem(ids[i], "1", label)

    plog = PayloadLogger(NullSink(), default_rate=0.01, queue_size=1 << 20)

    def maybe_log(n: int) -> None:
        log = plog.maybe_log
        for _ in range(n):
            log("m", "1", "id", x, out, 0.001)

    results["DriftWindow.add"] = ns_per_op(window_add)
    results["FeedbackStore.remember"] = ns_per_op(remember)
    results["PayloadLogger.maybe_log (1 %)"] = ns_per_op(maybe_log)
    plog.close()

    # --- everything a request pays, through the monitor
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        rng = np.random.default_rng(0)
        ProfileStore.under_home(home).save(
            build_profile("m", "1", {"X": rng.normal(size=(5000, 16))}, rng.integers(0, 3, 5000))
        )
        mon = Monitor(
            MonitoringConfig(payload_sample_rate=0.01, payload_queue_size=1 << 20),
            home=home,
            metrics=ServingMetrics(process=False),
            sink=NullSink(),
        )
        vm = mon.attach("m", "1", SIG, {}, load_seconds=0.1)
        vrest = vm.protocol("rest")

        def full(n: int) -> None:
            observe = vm.observe
            for i in range(n):
                observe(vrest, ids[i], x, out, 200, 1_200_000, 100_000, 900_000)

        results["VersionMonitor.observe (all hooks)"] = ns_per_op(full)

        # --- off the request path (µs)
        for _ in range(100):
            vm.observe(
                vrest,
                None,
                {"X": rng.normal(size=(10, 16)).astype(np.float32)},
                {"label": rng.integers(0, 3, 10)},
                200,
                1_000_000,
            )
        t = time.perf_counter()
        for _ in range(20):
            mon.render(None)
        scrape_us = (time.perf_counter() - t) / 20 * 1e6
        mon.drift("m", "1")  # the first call imports scipy.stats
        t = time.perf_counter()
        for _ in range(5):
            mon.drift("m", "1")
        drift_ms = (time.perf_counter() - t) / 5 * 1e3
        mon.close()

    print(f"{'per request':<44}{'ns/op':>10}")
    for k, v in results.items():
        print(f"{k:<44}{v:>10.0f}")
    print(f"\n{'off the request path':<44}{'value':>10}")
    print(f"{'/metrics scrape, 1 version (µs)':<44}{scrape_us:>10.0f}")
    print(f"{'drift report, 16 features x 1000 rows (ms)':<44}{drift_ms:>10.1f}")


if __name__ == "__main__":
    main()
