"""``modelport optimize`` through the real command: pass order, JSON report, the gate's exit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def mp(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MODELPORT_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "modelport.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_optimize_command_registers_rejects_and_keeps_pass_order(mlp, tmp_path: Path):
    home = tmp_path / "home"
    assert mp(home, "register", str(mlp.onnx), "--name", "digits").returncode == 0
    data = ["--validation-data", str(mlp.validation), "--metric", "accuracy"]
    timing = ["--batch-size", "8", "--repeats", "2"]

    ok = mp(
        home, "optimize", "digits:1", "--prune", "0.5", "--structured", "--quantize", "static",
        "--calibration-data", str(mlp.calibration), *data, "--max-drop", "0.02", *timing,
        "--report", str(tmp_path / "report"), "--json",
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    report = json.loads(ok.stdout)
    assert report["registered"] == "digits:2"
    assert report["versions"][1]["passes"] == ["prune 50% structured", "quantize static minmax"]
    assert (tmp_path / "report" / "report.html").is_file()

    # The other order is honoured too: pruning a quantized graph finds nothing to prune.
    reordered = mp(
        home, "optimize", "digits:1", "--quantize", "dynamic", "--prune", "0.5", "--structured",
        *data, "--max-drop", "0.02", *timing,
    )  # fmt: skip
    assert reordered.returncode == 2
    assert "put --prune before --quantize" in reordered.stderr

    rejected = mp(
        home, "optimize", "digits:1", "--prune", "0.95", "--structured", *data,
        "--max-drop", "0.01", *timing,
    )  # fmt: skip
    assert rejected.returncode == 5
    assert "nothing registered" in rejected.stderr
    assert "REJECTED" in rejected.stdout  # the report is printed all the same
    versions = json.loads(mp(home, "models", "versions", "digits", "--json").stdout)
    assert [v["version"] for v in versions] == [1, 2]
