"""Prometheus metrics of a modelport server, cheap enough for the request path.

One :class:`ServingMetrics` owns one :class:`prometheus_client.CollectorRegistry` (never
the library's global one), so two servers in one process never mix their numbers.

The request path does not go through ``prometheus_client``'s labelled children: one
request would take five locks and ~3 µs there. Instead the data plane binds, once per
loaded version and protocol, a :class:`RequestMetrics` whose :meth:`~RequestMetrics.observe`
takes a single uncontended lock and bumps plain integer counters (nanosecond
durations, bucket found by ``bisect``) — well under a microsecond. A collector turns
those counters into histogram and counter families when ``/metrics`` is scraped.
Everything that changes rarely (load state, drift, accuracy, alerts) uses ordinary
``prometheus_client`` gauges and counters.

Example:
    >>> m = ServingMetrics(process=False)
    >>> rest = m.bind("iris", "1").protocol("rest")
    >>> rest.observe(200, total_ns=1_800_000, queue_ns=200_000, compute_ns=1_500_000)
    >>> body, ctype = m.render("text/plain")
    >>> b'modelport_requests_total{code="200",model="iris",protocol="rest",version="1"} 1.0' in body
    True
"""

from __future__ import annotations

import contextlib
import threading
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from modelport.core.errors import MissingDependency

try:
    from prometheus_client import (
        CollectorRegistry,
        Counter,
        Gauge,
        GCCollector,
        Info,
        PlatformCollector,
        ProcessCollector,
    )
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        Metric,
    )
    from prometheus_client.exposition import choose_encoder
except ImportError as e:  # pragma: no cover - depends on the installed extras
    raise MissingDependency.for_extra("prometheus_client", "monitor", "Prometheus metrics") from e

#: Latency buckets in seconds: 50 µs … 10 s, about three per decade.
LATENCY_BUCKETS_S: tuple[float, ...] = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
#: Batch-size buckets (rows per model execution).
BATCH_BUCKETS: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

_BOUNDS_NS: tuple[int, ...] = tuple(round(b * 1e9) for b in LATENCY_BUCKETS_S)
_N_LAT = len(_BOUNDS_NS) + 1  # the last slot is +Inf
_N_BATCH = len(BATCH_BUCKETS) + 1
_LE_LAT = [*(repr(b) for b in LATENCY_BUCKETS_S), "+Inf"]
_LE_BATCH = [*(f"{b}.0" for b in BATCH_BUCKETS), "+Inf"]


class VersionMetrics:
    """Hot-path counters of one loaded (model, version): queue, compute, batches, load.

    Bound once by :meth:`ServingMetrics.bind`; :meth:`protocol` hands out the
    per-protocol :class:`RequestMetrics` that each request updates.
    """

    __slots__ = (
        "_inflight_fn",
        "_protocols",
        "_queue_depth_fn",
        "batch",
        "batch_sum",
        "compute",
        "compute_sum",
        "inflight",
        "lock",
        "model",
        "queue",
        "queue_sum",
        "version",
    )

    def __init__(
        self,
        model: str,
        version: str,
        queue_depth: Callable[[], int] | None = None,
        inflight: Callable[[], int] | None = None,
    ) -> None:
        self.model = model
        self.version = version
        self.lock = threading.Lock()
        self.queue = [0] * _N_LAT
        self.queue_sum = 0
        self.compute = [0] * _N_LAT
        self.compute_sum = 0
        self.batch = [0] * _N_BATCH
        self.batch_sum = 0
        self.inflight = 0
        self._queue_depth_fn = queue_depth
        self._inflight_fn = inflight
        self._protocols: dict[str, RequestMetrics] = {}

    def protocol(self, name: str) -> RequestMetrics:
        """The request counters of this version for one protocol (``rest``, ``grpc``…)."""
        rm = self._protocols.get(name)
        if rm is None:
            with self.lock:
                rm = self._protocols.setdefault(name, RequestMetrics(self, name))
        return rm

    def enter(self) -> None:
        """A request for this version started (``modelport_inflight_requests`` + 1)."""
        with self.lock:
            self.inflight += 1

    def leave(self) -> None:
        """A request for this version finished, whatever its outcome."""
        with self.lock:
            self.inflight -= 1

    def observe_batch(self, rows: int) -> None:
        """One model execution over ``rows`` rows (``modelport_batch_size``)."""
        with self.lock:
            self.batch[bisect_left(BATCH_BUCKETS, rows)] += 1
            self.batch_sum += rows

    def current_inflight(self) -> int:
        return self._inflight_fn() if self._inflight_fn is not None else self.inflight

    def current_queue_depth(self) -> int:
        return self._queue_depth_fn() if self._queue_depth_fn is not None else 0

    def request_totals(self) -> tuple[dict[int, int], list[int]]:
        """Answers by status code and end-to-end latency bucket counts, all protocols."""
        codes: dict[int, int] = {}
        buckets = [0] * _N_LAT
        with self.lock:
            for rm in self._protocols.values():
                for code, n in rm.codes.items():
                    codes[code] = codes.get(code, 0) + n
                for i, n in enumerate(rm.total):
                    buckets[i] += n
        return codes, buckets


class RequestMetrics:
    """Counters of one (model, version, protocol); :meth:`observe` once per request."""

    __slots__ = ("codes", "owner", "protocol", "total", "total_sum")

    def __init__(self, owner: VersionMetrics, protocol: str) -> None:
        self.owner = owner
        self.protocol = protocol
        self.codes: dict[int, int] = {}
        self.total = [0] * _N_LAT
        self.total_sum = 0

    def observe(
        self,
        code: int,
        total_ns: int,
        queue_ns: int | None = None,
        compute_ns: int | None = None,
        batch_rows: int = 0,
    ) -> None:
        """Count one answered request: HTTP-style status ``code`` and its durations.

        ``queue_ns``/``compute_ns`` are None when the request never reached the model
        (rejected, invalid); it then counts in the request counter and end-to-end
        histogram only. ``batch_rows`` > 0 also counts the request's own model
        execution of that many rows (``modelport_batch_size``; unbatched models).
        """
        owner = self.owner
        with owner.lock:
            if batch_rows:
                owner.batch[bisect_left(BATCH_BUCKETS, batch_rows)] += 1
                owner.batch_sum += batch_rows
            codes = self.codes
            codes[code] = codes.get(code, 0) + 1
            self.total[bisect_left(_BOUNDS_NS, total_ns)] += 1
            self.total_sum += total_ns
            if queue_ns is not None:
                owner.queue[bisect_left(_BOUNDS_NS, queue_ns)] += 1
                owner.queue_sum += queue_ns
            if compute_ns is not None:
                owner.compute[bisect_left(_BOUNDS_NS, compute_ns)] += 1
                owner.compute_sum += compute_ns


class ServingMetrics:
    """All metrics of one server, in its own registry; :meth:`render` for ``/metrics``.

    Example:
        >>> m = ServingMetrics(process=False)
        >>> vm = m.bind("iris", "1")
        >>> m.model_loaded("iris", "1", load_seconds=0.12, memory_bytes=4096)
        >>> vm.observe_batch(8)
        >>> m.observe_rejected("iris", "queue_full")
        >>> text = m.render(None)[0].decode()
        >>> "modelport_model_loaded" in text and "modelport_batch_size_bucket" in text
        True
    """

    def __init__(self, registry: CollectorRegistry | None = None, *, process: bool = True) -> None:
        from modelport import __version__

        self.registry = registry if registry is not None else CollectorRegistry()
        self._versions: dict[tuple[str, str], VersionMetrics] = {}
        self._lock = threading.Lock()
        r = self.registry
        if process:
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)
            GCCollector(registry=r)
        Info("modelport_build", "modelport's version.", registry=r).info({"version": __version__})
        r.register(_HotPathCollector(self))
        mv = ["model", "version"]
        self.rejected = Counter(
            "modelport_rejected_requests",
            "Requests refused before running (queue full, too large, deadline, auth…).",
            ["model", "reason"],
            registry=r,
        )
        self.loaded = Gauge(
            "modelport_model_loaded", "1 while the version is loaded and serving.", mv, registry=r
        )
        self.load_seconds = Gauge(
            "modelport_model_load_seconds", "How long the last load took.", mv, registry=r
        )
        self.load_failures = Counter(
            "modelport_model_load_failures", "Loads that failed.", ["model"], registry=r
        )
        self.memory_bytes = Gauge(
            "modelport_model_memory_bytes",
            "Memory a loaded version holds (its resident-set growth at load time).",
            mv,
            registry=r,
        )
        self.feature_drift = Gauge(
            "modelport_feature_drift",
            "Drift of one input feature against the reference profile, by test "
            "(psi; ks and chi2 are p-values; ks_stat the KS distance).",
            [*mv, "feature", "test"],
            registry=r,
        )
        self.prediction_drift = Gauge(
            "modelport_prediction_drift",
            "Drift of the predictions against the reference profile, by test.",
            [*mv, "test"],
            registry=r,
        )
        self.drift_detected = Gauge(
            "modelport_drift_detected", "1 when any feature drifted.", mv, registry=r
        )
        self.drift_window_rows = Gauge(
            "modelport_drift_window_rows", "Served rows in the drift window.", mv, registry=r
        )
        self.performance: dict[str, Gauge] = {
            k: Gauge(f"modelport_feedback_{k}", doc, mv, registry=r)
            for k, doc in _PERFORMANCE_DOCS.items()
        }
        self.feedback_items = Counter(
            "modelport_feedback_items",
            "Feedback items received, by outcome (joined, duplicate, unknown, invalid).",
            ["model", "outcome"],
            registry=r,
        )
        self.payload_records = Counter(
            "modelport_payload_log_records",
            "Requests written to the payload log.",
            ["model"],
            registry=r,
        )
        self.payload_dropped = Counter(
            "modelport_payload_log_dropped",
            "Payload-log records dropped because the writer's queue was full.",
            ["model"],
            registry=r,
        )
        self.alert_active = Gauge(
            "modelport_alert_active",
            "1 while the alert (drift, accuracy, latency_p99, error_rate) is firing.",
            ["model", "alert"],
            registry=r,
        )

    # ------------------------------------------------------------------ hot path

    def bind(
        self,
        model: str,
        version: str,
        *,
        queue_depth: Callable[[], int] | None = None,
        inflight: Callable[[], int] | None = None,
    ) -> VersionMetrics:
        """The pre-bound counters of a version (created once; the same object later).

        ``queue_depth``/``inflight`` are read at scrape time when given (e.g. the
        executor's pending count), so the request path pays nothing for them.
        """
        key = (model, version)
        with self._lock:
            vm = self._versions.get(key)
            if vm is None:
                vm = self._versions[key] = VersionMetrics(model, version, queue_depth, inflight)
            return vm

    @staticmethod
    def observe_request(
        child: RequestMetrics,
        code: int,
        total_ns: int,
        queue_ns: int | None = None,
        compute_ns: int | None = None,
    ) -> None:
        """Same as ``child.observe(...)``; kept for callers that hold the metrics object."""
        child.observe(code, total_ns, queue_ns, compute_ns)

    def versions(self) -> list[VersionMetrics]:
        with self._lock:
            return list(self._versions.values())

    # ------------------------------------------------------------------ slow path

    def observe_rejected(self, model: str, reason: str) -> None:
        """A request refused before it ran; ``reason`` is a short word (queue_full…)."""
        self.rejected.labels(model, reason).inc()

    def model_loaded(
        self, model: str, version: str, *, load_seconds: float, memory_bytes: int | None = None
    ) -> None:
        self.loaded.labels(model, version).set(1)
        self.load_seconds.labels(model, version).set(load_seconds)
        if memory_bytes is not None:
            self.memory_bytes.labels(model, version).set(memory_bytes)

    def model_load_failed(self, model: str) -> None:
        self.load_failures.labels(model).inc()

    def model_unloaded(self, model: str, version: str, *, forget: bool = False) -> None:
        """Mark a version unloaded; ``forget`` also drops its series from ``/metrics``."""
        self.loaded.labels(model, version).set(0)
        _remove(self.memory_bytes, model, version)
        if forget:
            with self._lock:
                self._versions.pop((model, version), None)
            for g in (self.loaded, self.load_seconds, self.drift_detected, self.drift_window_rows):
                _remove(g, model, version)
            for g in self.performance.values():
                _remove(g, model, version)

    def publish_drift(self, report: Mapping[str, Any]) -> None:
        """Export a drift report (the dict of :meth:`DriftReport.to_dict`)."""
        model, version = str(report["model"]), str(report["version"])
        self.drift_window_rows.labels(model, version).set(report["window"])
        self.drift_detected.labels(model, version).set(1 if report["drifted"] else 0)
        for f in report["features"]:
            for test, key in _DRIFT_TESTS:
                value = f.get(key)
                if value is not None:
                    self.feature_drift.labels(model, version, f["name"], test).set(value)
        pred = report.get("prediction")
        if pred:
            for test, key in _DRIFT_TESTS:
                value = pred.get(key)
                if value is not None:
                    self.prediction_drift.labels(model, version, test).set(value)

    def publish_performance(self, model: str, perf: Mapping[str, Any]) -> None:
        """Export rolling feedback figures (the dict of ``FeedbackStore.performance``)."""
        version = str(perf["version"])
        for key, gauge in self.performance.items():
            value = perf.get(key)
            if value is not None:
                gauge.labels(model, version).set(value)

    def set_alert(self, model: str, alert: str, active: bool) -> None:
        self.alert_active.labels(model, alert).set(1 if active else 0)

    # ------------------------------------------------------------------ exposition

    def render(self, accept: str | bytes | None) -> tuple[bytes, str]:
        """The ``/metrics`` body and content type: OpenMetrics when ``accept`` (the
        request's Accept header, as text or raw bytes) asks for it.

        Example:
            >>> m = ServingMetrics(process=False)
            >>> m.render("application/openmetrics-text; version=1.0.0")[1].split(";")[0]
            'application/openmetrics-text'
        """
        if isinstance(accept, bytes):
            accept = accept.decode("latin-1")
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type


_PERFORMANCE_DOCS = {
    "accuracy": "Rolling accuracy from labelled feedback (0-1).",
    "precision": "Rolling precision from labelled feedback (binary, or macro over classes).",
    "recall": "Rolling recall from labelled feedback (binary, or macro over classes).",
    "f1": "Rolling F1 from labelled feedback (binary, or macro over classes).",
    "mae": "Rolling mean absolute error from labelled feedback.",
    "rmse": "Rolling root mean squared error from labelled feedback.",
    "count": "Labelled rows the rolling figures cover.",
}
_DRIFT_TESTS = (
    ("psi", "psi"),
    ("ks", "ks_pvalue"),
    ("ks_stat", "ks_stat"),
    ("chi2", "chi2_pvalue"),
)


def _remove(metric: Gauge, *labels: str) -> None:
    with contextlib.suppress(KeyError):
        metric.remove(*labels)


def _histogram(
    family: HistogramMetricFamily,
    labels: list[str],
    counts: list[int],
    total: float,
    les: list[str],
) -> None:
    cumulative, buckets = 0, []
    for le, n in zip(les, counts, strict=True):
        cumulative += n
        buckets.append((le, cumulative))
    family.add_metric(labels, buckets, total)


class _HotPathCollector:
    """Turns the plain counters of every bound version into metric families at scrape."""

    def __init__(self, metrics: ServingMetrics) -> None:
        self._metrics = metrics

    def describe(self) -> Iterable[Metric]:
        return list(self._families())

    def _families(self) -> tuple[Any, ...]:
        mv, mvp = ["model", "version"], ["model", "version", "protocol"]
        return (
            CounterMetricFamily(
                "modelport_requests",
                "Inference requests answered, by status code (HTTP numbering for all protocols).",
                labels=[*mvp, "code"],
            ),
            HistogramMetricFamily(
                "modelport_request_duration_seconds",
                "End-to-end request latency inside the server.",
                labels=mvp,
            ),
            HistogramMetricFamily(
                "modelport_queue_duration_seconds",
                "Time a request waited for a batch or an execution slot.",
                labels=mv,
            ),
            HistogramMetricFamily(
                "modelport_compute_duration_seconds",
                "Model execution time of the batch a request ran in.",
                labels=mv,
            ),
            HistogramMetricFamily("modelport_batch_size", "Rows per model execution.", labels=mv),
            GaugeMetricFamily(
                "modelport_inflight_requests", "Requests being processed.", labels=mv
            ),
            GaugeMetricFamily(
                "modelport_queue_depth", "Requests waiting in the version's queue.", labels=mv
            ),
        )

    def collect(self) -> Iterator[Metric]:
        requests, duration, queue, compute, batch, inflight, depth = self._families()
        for vm in self._metrics.versions():
            mv = [vm.model, vm.version]
            with vm.lock:
                q, qs = list(vm.queue), vm.queue_sum
                c, cs = list(vm.compute), vm.compute_sum
                b, bs = list(vm.batch), vm.batch_sum
                protocols = [
                    (rm.protocol, dict(rm.codes), list(rm.total), rm.total_sum)
                    for rm in vm._protocols.values()
                ]
            for protocol, codes, total, total_sum in protocols:
                for code, n in sorted(codes.items()):
                    requests.add_metric([*mv, protocol, str(code)], n)
                _histogram(duration, [*mv, protocol], total, total_sum / 1e9, _LE_LAT)
            _histogram(queue, mv, q, qs / 1e9, _LE_LAT)
            _histogram(compute, mv, c, cs / 1e9, _LE_LAT)
            _histogram(batch, mv, b, float(bs), _LE_BATCH)
            inflight.add_metric(mv, vm.current_inflight())
            depth.add_metric(mv, vm.current_queue_depth())
        yield from (requests, duration, queue, compute, batch, inflight, depth)


def resident_bytes() -> int | None:
    """This process's resident set size in bytes (Linux ``/proc``; else psutil; else None).

    The server reads it before and after loading a version: the growth is the
    version's memory (approximate when two loads overlap).

    Example:
        >>> (resident_bytes() or 1) > 0
        True
    """
    try:
        with open("/proc/self/statm", "rb") as f:
            pages = int(f.read().split()[1])
        import os

        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil
    except ImportError:
        return None
    return int(psutil.Process().memory_info().rss)


def quantile_from_buckets(q: float, counts: list[int]) -> float | None:
    """The ``q`` quantile (seconds) of latency bucket counts, like PromQL's
    ``histogram_quantile`` (linear inside a bucket; the top finite bound past it).

    Example:
        >>> counts = [0] * (len(LATENCY_BUCKETS_S) + 1)
        >>> counts[4] = 100   # all in (0.5 ms, 1 ms]
        >>> round(quantile_from_buckets(0.5, counts), 6)
        0.00075
    """
    total = sum(counts)
    if total == 0:
        return None
    rank = q * total
    cumulative = 0
    for i, n in enumerate(counts):
        if cumulative + n >= rank and n > 0:
            if i >= len(LATENCY_BUCKETS_S):
                return LATENCY_BUCKETS_S[-1]
            lower = LATENCY_BUCKETS_S[i - 1] if i > 0 else 0.0
            upper = LATENCY_BUCKETS_S[i]
            return lower + (upper - lower) * (rank - cumulative) / n
        cumulative += n
    return LATENCY_BUCKETS_S[-1]
