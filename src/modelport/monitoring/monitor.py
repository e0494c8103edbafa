"""The monitor: one object the server builds and the data plane calls.

It owns the metrics, the payload log, a drift window and a feedback store per served
version, and a background thread that every ``evaluation_interval_s`` recomputes
drift against the stored reference profiles, publishes live accuracy, and evaluates
the alert rules.

The request path goes through a :class:`VersionMonitor`, bound once when a version is
loaded (:meth:`Monitor.attach`). Its :meth:`~VersionMonitor.observe` does, per request,
a counter update under one lock, an O(1) append to the drift window, an O(1) insert
into the feedback store and one random draw for the payload log — about a microsecond
and a half in all (``python -m benchmarks monitoring``).

Example:
    >>> import tempfile, pathlib, numpy as np
    >>> from modelport.core.types import ModelSignature, TensorSpec
    >>> sig = ModelSignature(inputs=(TensorSpec("X", "FP32", (-1, 4)),),
    ...                      outputs=(TensorSpec("label", "INT64", (-1,)),))
    >>> home = pathlib.Path(tempfile.mkdtemp())
    >>> mon = Monitor(MonitoringConfig(payload_sample_rate=0), home=home)
    >>> vm = mon.attach("iris", "1", sig, load_seconds=0.05)
    >>> rest = vm.protocol("rest")
    >>> x, y = np.zeros((1, 4), np.float32), np.array([2])
    >>> vm.observe(rest, "req-1", {"X": x}, {"label": y}, 200, 900_000, 10_000, 700_000)
    >>> mon.add_feedback("iris", [{"id": "req-1", "label": 2}])["joined"]
    1
    >>> mon.performance("iris", "1")["accuracy"]
    1.0
    >>> mon.close()
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelport.core.errors import FailedPrecondition, NotFound
from modelport.core.types import ModelSignature
from modelport.monitoring.alerts import AlertTracker, Snapshot, evaluate
from modelport.monitoring.config import MonitoringConfig
from modelport.monitoring.drift import DriftProfile, DriftReport, DriftThresholds
from modelport.monitoring.feedback import FeedbackStore
from modelport.monitoring.metrics import (
    RequestMetrics,
    ServingMetrics,
    VersionMetrics,
    quantile_from_buckets,
)
from modelport.monitoring.payload_log import JsonlSink, PayloadLogger, PayloadSink
from modelport.monitoring.profiles import ProfileStore
from modelport.monitoring.task import EXTRA_FEATURE_NAMES, TaskInfo, resolve_task
from modelport.monitoring.window import DriftWindow

log = logging.getLogger("modelport.monitoring")

Arrays = Mapping[str, Any]


class VersionMonitor:
    """Everything monitored about one loaded version, pre-bound for the request path."""

    __slots__ = (
        "_history",
        "_payload",
        "_prediction",
        "enabled",
        "feedback",
        "last_drift",
        "metrics",
        "model",
        "task",
        "version",
        "window",
    )

    def __init__(
        self,
        model: str,
        version: str,
        metrics: VersionMetrics,
        task: TaskInfo,
        window: DriftWindow,
        feedback: FeedbackStore,
        payload: PayloadLogger | None,
        enabled: bool = True,
    ) -> None:
        self.enabled = enabled
        self.model = model
        self.version = version
        self.metrics = metrics
        self.task = task
        self.window = window
        self.feedback = feedback
        self.last_drift: DriftReport | None = None
        self._payload = payload
        self._prediction = task.prediction_output
        self._history: deque[tuple[float, dict[int, int], list[int]]] = deque()

    def protocol(self, name: str) -> RequestMetrics:
        """The pre-bound request counters for one protocol (``rest``, ``grpc``, …)."""
        return self.metrics.protocol(name)

    def observe(
        self,
        counters: RequestMetrics,
        request_id: str | None,
        inputs: Arrays,
        outputs: Arrays | None,
        code: int,
        total_ns: int,
        queue_ns: int | None = None,
        compute_ns: int | None = None,
        batch_rows: int = 0,
    ) -> None:
        """Account one finished request; ``outputs`` None when it failed.

        ``outputs`` must be the model's full outputs (before a client's selection of
        outputs), so the prediction output is there for drift and feedback.
        ``batch_rows``: see :meth:`RequestMetrics.observe`.
        """
        counters.observe(code, total_ns, queue_ns, compute_ns, batch_rows)
        if outputs is None or not self.enabled:
            return
        name = self._prediction
        prediction = outputs.get(name) if name is not None else None
        self.window.add(inputs, prediction)
        if request_id is not None and prediction is not None:
            self.feedback.remember(request_id, self.version, prediction)
        if self._payload is not None:
            self._payload.maybe_log(
                self.model, self.version, request_id, inputs, outputs, total_ns / 1e9
            )


@dataclass
class _ModelState:
    feedback: FeedbackStore
    versions: dict[str, VersionMonitor] = field(default_factory=dict)


class Monitor:
    """Metrics, payload log, drift and feedback of a server, evaluated in the background."""

    def __init__(
        self,
        config: MonitoringConfig,
        *,
        home: Path,
        metrics: ServingMetrics | None = None,
        sink: PayloadSink | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.metrics = metrics or ServingMetrics()
        self.profiles = ProfileStore.under_home(home)
        self.alerts = AlertTracker(self.metrics)
        self._clock = clock
        self._models: dict[str, _ModelState] = {}
        self._profiles: dict[tuple[str, str], tuple[float, DriftProfile]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.payload_log: PayloadLogger | None = None
        rates = {m: config.sample_rate(m) for m in config.models}
        if config.enabled and (config.payload_sample_rate > 0 or any(rates.values())):
            self.payload_log = PayloadLogger(
                sink
                or JsonlSink(
                    Path(home) / "logs",
                    max_bytes=config.payload_max_bytes,
                    backups=config.payload_backups,
                ),
                default_rate=config.payload_sample_rate,
                rates=rates,
                queue_size=config.payload_queue_size,
                max_elements=config.payload_max_elements,
                on_logged=lambda m: self.metrics.payload_records.labels(m).inc(),
                on_dropped=lambda m: self.metrics.payload_dropped.labels(m).inc(),
            )

    # ------------------------------------------------------------------ versions

    def attach(
        self,
        model: str,
        version: str,
        signature: ModelSignature,
        extra: Mapping[str, Any] | None = None,
        *,
        load_seconds: float | None = None,
        memory_bytes: int | None = None,
        queue_depth: Callable[[], int] | None = None,
        inflight: Callable[[], int] | None = None,
    ) -> VersionMonitor:
        """Start monitoring a loaded version; returns its pre-bound hooks.

        ``extra`` is the version's registry ``extra`` (``task``, ``prediction_output``,
        ``feature_names`` are read from it).
        """
        extra = extra or {}
        task = resolve_task(signature, extra)
        names = extra.get(EXTRA_FEATURE_NAMES)
        if isinstance(names, list):  # one list for a model of one input
            names = {signature.inputs[0].name: names} if signature.inputs else {}
        vm_metrics = self.metrics.bind(model, version, queue_depth=queue_depth, inflight=inflight)
        with self._lock:
            state = self._models.get(model)
            if state is None:
                state = self._models[model] = _ModelState(
                    FeedbackStore(
                        model,
                        max_predictions=self.config.feedback_max_predictions,
                        ttl_s=self.config.feedback_ttl_s,
                        window=self.config.feedback_window,
                        clock=self._clock,
                    )
                )
            state.feedback.set_task(version, task)
            window = DriftWindow(
                model,
                version,
                self.config.drift_window,
                feature_names=names if isinstance(names, dict) else None,
                prediction_values=task.values,
                high_dim=any(len(t.shape) >= 3 for t in signature.inputs),
            )
            vm = VersionMonitor(
                model,
                version,
                vm_metrics,
                task,
                window,
                state.feedback,
                self.payload_log if self.config.enabled else None,
                self.config.enabled,
            )
            state.versions[version] = vm
        vm._history.append((self._clock(), {}, [0] * len(vm_metrics.queue)))
        if self.payload_log is not None and self.config.enabled:
            # series start at zero, so rate() and increase() see the first record or drop
            self.metrics.payload_records.labels(model)
            self.metrics.payload_dropped.labels(model)
        if load_seconds is not None:
            self.metrics.model_loaded(
                model, version, load_seconds=load_seconds, memory_bytes=memory_bytes
            )
        return vm

    def detach(self, model: str, version: str, *, forget: bool = False) -> None:
        """Stop monitoring an unloaded version (its metric series stay unless ``forget``)."""
        with self._lock:
            state = self._models.get(model)
            if state is not None:
                state.versions.pop(version, None)
        self.metrics.model_unloaded(model, version, forget=forget)

    def version(self, model: str, version: str) -> VersionMonitor:
        with self._lock:
            state = self._models.get(model)
            vm = state.versions.get(version) if state else None
        if vm is None:
            raise NotFound(f"model {model!r} version {version} is not monitored")
        return vm

    # ------------------------------------------------------------------ queries

    def profile(self, model: str, version: str) -> DriftProfile | None:
        """The reference profile of a version, re-read when its file changes."""
        mtime = self.profiles.mtime(model, version)
        if mtime is None:
            return None
        cached = self._profiles.get((model, version))
        if cached is not None and cached[0] == mtime:
            return cached[1]
        profile = self.profiles.load(model, version)
        if profile is not None:
            self._profiles[(model, version)] = (mtime, profile)
        return profile

    def thresholds(self) -> DriftThresholds:
        c = self.config
        return DriftThresholds(c.drift_psi_threshold, c.drift_ks_alpha, c.drift_min_rows)

    def drift(self, model: str, version: str) -> dict[str, Any]:
        """The ``/drift`` JSON of a served version, computed now (milliseconds: run it
        off the event loop)."""
        vm = self.version(model, version)
        profile = self.profile(model, version)
        if profile is None:
            raise FailedPrecondition(
                f"no drift reference for {model}:{version}; build one with "
                f"'modelport monitor reference {model}:{version} --data FILE.npz'"
            )
        report = vm.window.compare(profile, self.thresholds())
        vm.last_drift = report
        self.metrics.publish_drift(report.to_dict())
        return report.to_dict()

    def add_feedback(self, model: str, items: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
        """Join labels with remembered predictions (``POST /v2/models/{name}/feedback``)."""
        with self._lock:
            state = self._models.get(model)
        if state is None:
            raise NotFound(f"model {model!r} is not served")
        result = state.feedback.add_feedback(items)
        for outcome in ("joined", "duplicates", "unknown", "invalid"):
            if result[outcome]:
                self.metrics.feedback_items.labels(model, outcome).inc(result[outcome])
        return result

    def performance(self, model: str, version: str) -> dict[str, Any]:
        """Rolling figures of a version (``GET /v2/models/{name}/performance``)."""
        with self._lock:
            state = self._models.get(model)
        if state is None:
            raise NotFound(f"model {model!r} is not served")
        perf = state.feedback.performance(version)
        self.metrics.publish_performance(model, perf)
        return perf

    # ------------------------------------------------------------------ evaluation

    def evaluate(self) -> None:
        """Recompute drift, publish accuracy and evaluate alerts for every version."""
        now = self._clock()
        with self._lock:
            models = {m: list(s.versions.values()) for m, s in self._models.items()}
        for model, versions in models.items():
            rules = self.config.alerts_for(model)
            alerts = []
            for vm in versions:
                try:
                    alerts.extend(evaluate(self._snapshot(vm, now), rules))
                except Exception:  # one broken profile must not stop the others
                    log.exception("monitoring: evaluating %s:%s failed", model, vm.version)
            self.alerts.update(model, alerts)

    def _snapshot(self, vm: VersionMonitor, now: float) -> Snapshot:
        report = None
        profile = self.profile(vm.model, vm.version)
        if profile is not None:
            report = vm.window.compare(profile, self.thresholds())
            vm.last_drift = report
            self.metrics.publish_drift(report.to_dict())
        perf = self.performance(vm.model, vm.version)
        codes, buckets = vm.metrics.request_totals()
        hist = vm._history
        hist.append((now, codes, buckets))
        while len(hist) > 1 and now - hist[1][0] >= self.config.alert_window_s:
            hist.popleft()
        _, old_codes, old_buckets = hist[0]
        delta = [b - a for a, b in zip(old_buckets, buckets, strict=True)]
        requests = sum(codes.values()) - sum(old_codes.values())
        errors = sum(n - old_codes.get(c, 0) for c, n in codes.items() if c >= 500)
        return Snapshot(
            vm.model,
            vm.version,
            requests=requests,
            errors=errors,
            p99_latency_s=quantile_from_buckets(0.99, delta),
            max_psi=report.max_psi if report else None,
            drifted_features=tuple(f.name for f in report.features if f.drifted) if report else (),
            drift_ready=bool(report and report.enough_data),
            accuracy=perf.get("accuracy"),
            feedback_rows=int(perf.get("count") or 0),
        )

    def start(self) -> None:
        """Evaluate every ``evaluation_interval_s`` in a background thread."""
        if self._thread is not None or not self.config.enabled:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="modelport-monitor", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.config.evaluation_interval_s):
            try:
                self.evaluate()
            except Exception:
                log.exception("monitoring: evaluation failed")

    def close(self) -> None:
        """Stop the evaluation thread and flush the payload log."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self.payload_log is not None:
            self.payload_log.close()

    def render(self, accept: str | bytes | None) -> tuple[bytes, str]:
        """The ``/metrics`` body and content type."""
        return self.metrics.render(accept)
