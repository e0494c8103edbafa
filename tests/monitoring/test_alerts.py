"""Alert rules as pure functions, and the monitor evaluating them end to end."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from modelport.core.errors import FailedPrecondition, NotFound
from modelport.core.types import ModelSignature, TensorSpec
from modelport.monitoring.alerts import AlertTracker, Snapshot, evaluate
from modelport.monitoring.config import AlertRules, MonitoringConfig
from modelport.monitoring.drift import build_profile
from modelport.monitoring.metrics import ServingMetrics
from modelport.monitoring.monitor import Monitor
from modelport.monitoring.profiles import ProfileStore

SIG = ModelSignature(
    inputs=(TensorSpec("X", "FP32", (-1, 4)),),
    outputs=(TensorSpec("label", "INT64", (-1,)), TensorSpec("probabilities", "FP32", (-1, 3))),
)
ALL = AlertRules(drift_psi=0.2, accuracy_floor=0.9, p99_latency_s=0.05, error_rate=0.05)


def states(snapshot: Snapshot, rules: AlertRules = ALL) -> dict[str, bool]:
    return {a.name: a.active for a in evaluate(snapshot, rules)}


def test_each_rule_fires_on_its_threshold():
    healthy = Snapshot(
        "m",
        "1",
        requests=1000,
        errors=10,
        p99_latency_s=0.01,
        max_psi=0.05,
        drift_ready=True,
        accuracy=0.95,
        feedback_rows=500,
    )
    assert states(healthy) == dict.fromkeys(
        ("drift", "accuracy", "latency_p99", "error_rate"), False
    )
    from dataclasses import replace

    assert states(replace(healthy, max_psi=0.2))["drift"] is True
    assert states(replace(healthy, accuracy=0.89))["accuracy"] is True
    assert states(replace(healthy, p99_latency_s=0.051))["latency_p99"] is True
    assert states(replace(healthy, errors=51))["error_rate"] is True
    assert states(replace(healthy, errors=50))["error_rate"] is False  # 5 % is not above 5 %


def test_rules_wait_for_enough_data():
    thin = Snapshot(
        "m",
        "1",
        requests=5,
        errors=5,
        p99_latency_s=9.0,
        max_psi=3.0,
        accuracy=0.0,
        feedback_rows=3,
    )
    assert not any(states(thin).values())
    alerts = {a.name: a for a in evaluate(thin, ALL)}
    assert alerts["error_rate"].value is None


def test_disabled_rules_are_not_evaluated():
    rules = AlertRules(drift_psi=None, error_rate=None)
    assert evaluate(Snapshot("m", "1", requests=100, errors=100), rules) == []


def test_per_model_overrides_replace_only_what_they_name():
    cfg = MonitoringConfig.model_validate(
        {"alerts": {"error_rate": 0.01}, "models": {"fraud": {"alerts": {"accuracy_floor": 0.97}}}}
    )
    fraud, other = cfg.alerts_for("fraud"), cfg.alerts_for("iris")
    assert (fraud.accuracy_floor, fraud.error_rate) == (0.97, 0.01)
    assert (other.accuracy_floor, other.error_rate) == (None, 0.01)
    with pytest.raises(ValueError, match="extra"):
        MonitoringConfig.model_validate({"models": {"x": {"alerts": {"nope": 1}}}})


def test_tracker_logs_changes_once_and_sets_the_gauge(caplog: pytest.LogCaptureFixture):
    metrics = ServingMetrics(process=False)
    tracker = AlertTracker(metrics)
    bad = Snapshot("iris", "2", requests=100, errors=40)
    good = Snapshot("iris", "1", requests=100, errors=0)
    text = lambda: metrics.render(None)[0].decode()  # noqa: E731
    with caplog.at_level(logging.INFO, logger="modelport.monitoring"):
        tracker.update("iris", [*evaluate(good, ALL), *evaluate(bad, ALL)])
        tracker.update("iris", [*evaluate(good, ALL), *evaluate(bad, ALL)])
        assert 'modelport_alert_active{alert="error_rate",model="iris"} 1.0' in text()
        assert 'modelport_alert_active{alert="drift",model="iris"} 0.0' in text()
        tracker.update("iris", [*evaluate(good, ALL), *evaluate(good, ALL)])
    firing = [r for r in caplog.records if "FIRING" in r.message]
    resolved = [r for r in caplog.records if "resolved" in r.message]
    assert len(firing) == 1
    assert "version 2" in firing[0].message
    assert firing[0].levelno == logging.WARNING
    assert len(resolved) == 1
    assert 'modelport_alert_active{alert="error_rate",model="iris"} 0.0' in text()


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_monitor_end_to_end_drift_accuracy_latency_errors(tmp_path: Path):
    rng = np.random.default_rng(0)
    ref = rng.normal(5, 1, size=(2000, 4)).astype(np.float32)
    ProfileStore.under_home(tmp_path).save(build_profile("iris", "1", {"X": ref}))
    clock = Clock()
    cfg = MonitoringConfig(
        payload_sample_rate=0.0,
        drift_min_rows=100,
        alert_window_s=60,
        alerts=AlertRules(drift_psi=0.2, accuracy_floor=0.8, p99_latency_s=0.02, error_rate=0.1),
    )
    mon = Monitor(cfg, home=tmp_path, metrics=ServingMetrics(process=False), clock=clock)
    vm = mon.attach("iris", "1", SIG, {}, load_seconds=0.1)
    rest = vm.protocol("rest")
    for i in range(300):
        x = rng.normal(5, 1, size=(1, 4)).astype(np.float32)
        x[0, 2] += 3.0  # feature 2 drifts
        code = 500 if i % 5 == 0 else 200  # 20 % errors
        outputs = (
            None if code == 500 else {"label": np.array([i % 3]), "probabilities": np.zeros((1, 3))}
        )
        vm.observe(rest, f"r{i}", {"X": x}, outputs, code, 30_000_000, 1_000, 29_000_000)
    labels = [{"id": f"r{i}", "label": 0} for i in range(300) if i % 5]  # a third right
    assert mon.add_feedback("iris", labels)["joined"] == 240
    clock.t = 30.0
    mon.evaluate()
    active = mon.alerts.active()
    assert set(active) == {("iris", a) for a in ("drift", "accuracy", "latency_p99", "error_rate")}
    report = mon.drift("iris", "1")
    assert [f["name"] for f in report["features"] if f["drifted"]] == ["X[2]"]
    perf = mon.performance("iris", "1")
    assert perf["accuracy"] == pytest.approx(80 / 240)
    text = mon.render("text/plain")[0].decode()
    assert 'modelport_feature_drift{feature="X[2]",model="iris",test="psi",version="1"}' in text
    assert 'modelport_feedback_accuracy{model="iris",version="1"}' in text
    assert (
        'modelport_requests_total{code="500",model="iris",protocol="rest",version="1"} 60.0' in text
    )
    # a quiet alert window later, latency and errors resolve; drift and accuracy stay
    clock.t = 200.0
    for i in range(50):
        vm.observe(rest, None, {"X": ref[i : i + 1]}, {"label": np.array([0])}, 200, 1_000_000)
    clock.t = 230.0
    mon.evaluate()
    assert set(mon.alerts.active()) == {("iris", "drift"), ("iris", "accuracy")}
    mon.close()


def test_monitor_errors_name_what_is_missing(tmp_path: Path):
    mon = Monitor(MonitoringConfig(payload_sample_rate=0), home=tmp_path)
    mon.attach("iris", "1", SIG)
    with pytest.raises(FailedPrecondition, match="modelport monitor reference iris:1"):
        mon.drift("iris", "1")
    with pytest.raises(NotFound):
        mon.drift("iris", "2")
    with pytest.raises(NotFound):
        mon.add_feedback("digits", [])
    mon.detach("iris", "1")
    with pytest.raises(NotFound):
        mon.drift("iris", "1")
    mon.close()


def test_monitor_writes_the_payload_log_under_home(tmp_path: Path):
    cfg = MonitoringConfig(payload_sample_rate=0.0, models={"iris": {"payload_sample_rate": 1.0}})
    mon = Monitor(cfg, home=tmp_path, metrics=ServingMetrics(process=False))
    vm = mon.attach("iris", "1", SIG)
    x = np.zeros((1, 4), np.float32)
    vm.observe(vm.protocol("grpc"), "a", {"X": x}, {"label": np.array([1])}, 200, 2_000_000)
    mon.close()
    lines = (tmp_path / "logs" / "payloads.jsonl").read_text().splitlines()
    assert len(lines) == 1
    assert '"id":"a"' in lines[0]
