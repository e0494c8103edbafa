"""The shipped Prometheus rules and Grafana dashboard: valid, tested, and built only on
metric names modelport exports.

promtool comes with Debian's ``prometheus`` package (``apt-get install prometheus``;
.ci/run installs it). Without it these tests skip with that reason, unless
``MODELPORT_TEST_REQUIRE_PROMETHEUS=1``, which makes them fail.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from modelport.monitoring.metrics import ServingMetrics

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
RULES_TEST = ROOT / "deploy" / "prometheus" / "alerts_test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "modelport.json"
REQUIRE = os.environ.get("MODELPORT_TEST_REQUIRE_PROMETHEUS") == "1"
METRIC_NAME = re.compile(r"\b((?:modelport|process)_[a-z0-9_]+)\b")


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        msg = f"{name} not installed (Debian: apt-get install prometheus)"
        if REQUIRE:
            pytest.fail(msg + " and MODELPORT_TEST_REQUIRE_PROMETHEUS=1")
        pytest.skip(msg)
    return path


def exported_names(text: str) -> set[str]:
    """Every sample name in an exposition (counters with _total, histograms' series)."""
    return {s.name for f in text_string_to_metric_families(text) for s in f.samples}


def every_series() -> str:
    """An exposition in which every modelport metric has at least one series."""
    m = ServingMetrics()
    vm = m.bind("iris", "1", queue_depth=lambda: 0)
    vm.protocol("rest").observe(200, 1_000_000, 10_000, 900_000)
    vm.observe_batch(4)
    m.observe_rejected("iris", "queue_full")
    m.model_loaded("iris", "1", load_seconds=0.1, memory_bytes=1024)
    m.model_load_failed("iris")
    m.publish_drift(
        {
            "model": "iris",
            "version": "1",
            "window": 10,
            "drifted": False,
            "features": [{"name": "X[0]", "psi": 0.0, "ks_pvalue": 1.0, "ks_stat": 0.0}],
            "prediction": {"psi": 0.0, "chi2_pvalue": 1.0},
        }
    )
    perf = {"version": "1", "count": 1, "accuracy": 1, "precision": 1, "recall": 1, "f1": 1}
    m.publish_performance("iris", {**perf, "mae": 0.0, "rmse": 0.0})
    m.feedback_items.labels("iris", "joined").inc()
    m.payload_records.labels("iris").inc()
    m.payload_dropped.labels("iris").inc()
    m.set_alert("iris", "drift", False)
    return m.render(None)[0].decode()


def referenced_names(text: str) -> set[str]:
    return set(METRIC_NAME.findall(text))


def rule_expressions() -> list[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [r["expr"] for g in groups for r in g["rules"]]


def dashboard_expressions() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    for v in dash["templating"]["list"]:
        if "definition" in v:
            exprs.append(v["definition"])
    return exprs


def test_rules_and_dashboard_use_only_exported_metric_names():
    exported = exported_names(every_series())
    for where, exprs in (
        ("alerts.yml", rule_expressions()),
        ("dashboard", dashboard_expressions()),
    ):
        names = set().union(*(referenced_names(e) for e in exprs))
        assert names, where
        assert names - exported == set(), f"{where} uses metrics nobody exports"


def test_dashboard_is_well_formed():
    dash = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for p in dash["panels"]:
        assert {"h", "w", "x", "y"} <= set(p["gridPos"])
        for t in p.get("targets", []):
            assert t["datasource"]["uid"] == "${datasource}"
    variables = {v["name"] for v in dash["templating"]["list"]}
    assert {"datasource", "job", "model", "version"} <= variables


def test_promtool_check_rules():
    out = subprocess.run(
        [tool("promtool"), "check", "rules", str(RULES)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS: 10 rules found" in out.stdout


def test_promtool_test_rules():
    out = subprocess.run(
        [tool("promtool"), "test", "rules", RULES_TEST.name],
        cwd=RULES_TEST.parent,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout
