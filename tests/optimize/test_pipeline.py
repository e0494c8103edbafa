"""The whole run against a real registry: passes, measurement, gate, lineage, report, --auto."""

from __future__ import annotations

import json

import numpy as np
import pytest

from modelport.optimize import (
    AccuracyGateFailed,
    DropLayers,
    MeasureSettings,
    OptimizeOptions,
    Prune,
    Quantize,
    auto_optimize,
    optimize,
)
from modelport.registry import Lineage, Registry
from modelport.runtimes.onnx import OnnxRuntime
from tests.optimize.conftest import QUICK


def publisher(reg: Registry):
    def publish(c) -> str:
        lineage = Lineage.from_dict(c.lineage)
        return reg.register(c.path, c.name, metrics=c.metrics, lineage=lineage, extra=c.extra).ref

    return publish


def test_a_chain_becomes_a_new_version_with_lineage_metrics_and_report(reg, mlp, tmp_path):
    reg.register(mlp.onnx, "digits")
    opts = OptimizeOptions(
        mlp.validation,
        "accuracy",
        0.02,
        calibration=mlp.calibration,
        report_dir=tmp_path / "report",
        measure=QUICK,
    )
    chain = [Prune(0.5, structured=True), Quantize("dynamic")]
    outcome = optimize(reg, "digits:1", chain, opts, publish=publisher(reg))
    assert outcome.registered == "digits:2"

    v = reg.get("digits:2")
    assert v.lineage.operation == "optimize"
    assert v.lineage.parent == "digits:1"
    assert [p["name"] for p in v.lineage.params["passes"]] == ["prune", "quantize"]
    assert v.lineage.params["passes"][0]["sparsity"] == 0.5
    assert {"onnxruntime", "onnx", "modelport"} <= set(v.lineage.tool_versions)
    assert v.metrics["accuracy_parent"] - v.metrics["accuracy"] <= 0.02
    assert v.metrics["size_ratio"] < 0.3
    assert {"latency_ms_b1", "latency_ms_b8", "speedup_b1", "speedup_b8"} <= set(v.metrics)
    assert v.extra["optimization"]["gate"]["passed"] is True

    report = json.loads(outcome.files["json"].read_text())
    parent, candidate = report["versions"]
    assert candidate["params"] < parent["params"]
    assert set(candidate["latency_ms"]) == {"1", "8"}
    assert candidate["parity"]["label_agreement"] > 0.95
    assert report["registered"] == "digits:2"
    assert outcome.files["plot"].read_bytes().startswith(b"\x89PNG")
    assert "<img" in outcome.files["html"].read_text()
    assert "digits:2" in outcome.files["markdown"].read_text()

    rt = OnnxRuntime.from_path(reg.open("digits:2") / v.entry)
    x = np.load(mlp.validation)["X"][:4]
    assert rt.predict({"input": x})["logits"].shape == (4, 10)


def test_the_gate_refuses_an_over_aggressive_setting(reg, cnn, tmp_path):
    reg.register(cnn.onnx, "cnn")
    opts = OptimizeOptions(
        cnn.validation, "accuracy", 0.01, report_dir=tmp_path / "rejected", measure=QUICK
    )
    with pytest.raises(AccuracyGateFailed, match="nothing registered") as err:
        optimize(reg, "cnn", [Prune(0.9, structured=True)], opts, publish=publisher(reg))
    assert err.value.exit_code == 5
    assert [v.version for v in reg.versions("cnn")] == [1]
    report = json.loads((tmp_path / "rejected" / "report.json").read_text())
    assert report["gate"]["passed"] is False
    assert report["registered"] is None
    assert report["versions"][1]["metric_drop"] > 0.01


def test_cosine_against_the_parent_needs_no_labels(reg, encoder, tmp_path):
    reg.register(encoder.onnx, "enc")
    opts = OptimizeOptions(encoder.validation, "cosine", 0.01, measure=QUICK)
    outcome = optimize(reg, "enc", [Quantize("dynamic")], opts, publish=publisher(reg))
    v = reg.get(outcome.registered or "")
    assert v.metrics["cosine"] > 0.99
    assert v.metrics["cosine_parent"] == 1.0
    assert outcome.files == {}  # no report directory asked for


def test_auto_registers_the_fastest_passing_candidate(reg, encoder, tmp_path):
    reg.register(encoder.onnx, "enc")
    opts = OptimizeOptions(
        encoder.validation,
        "cosine",
        0.02,
        calibration=encoder.calibration,
        report_dir=tmp_path / "auto",
        # More samples than QUICK: the choice depends on which candidates beat the parent.
        measure=MeasureSettings(batch_sizes=(1, 32), repeats=5, warmup=1, min_sample_s=0.005),
    )
    outcome = auto_optimize(reg, "enc:1", opts, publish=publisher(reg))
    report = outcome.report
    assert report.mode == "auto"
    tried = [v.passes for v in report.versions[1:]]
    assert [DropLayers(1).describe()] in tried
    assert ["quantize dynamic"] in tried
    assert any(len(p) >= 2 for p in tried)  # combinations were searched
    chosen = report.entry(report.chosen)
    assert chosen is not None
    assert chosen.passed_gate
    big = 32
    fastest = min(
        (v for v in report.versions[1:] if v.passed_gate), key=lambda v: v.latency_ms(big) or 1e9
    )
    assert chosen is fastest
    assert report.pareto
    v = reg.get(outcome.registered or "")
    assert v.lineage.params["auto"]["candidates_tried"] == len(tried)
