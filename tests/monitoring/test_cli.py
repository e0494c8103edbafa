"""`modelport monitor …` through the real command line, on the embedded registry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from modelport.core.config import Settings
from modelport.monitoring.payload_log import JsonlSink, PayloadLogger
from modelport.registry import Registry


def iris_like(rng: np.random.Generator, n: int) -> np.ndarray:
    """Rows of iris with a little noise: as many as needed, from one distribution."""
    from sklearn.datasets import load_iris

    X = load_iris().data.astype(np.float32)
    rows = X[rng.integers(0, len(X), n)]
    return (rows + rng.normal(0, 0.05, rows.shape)).astype(np.float32)


@pytest.fixture
def home(tmp_path: Path, iris_onnx: Path) -> Path:
    home = tmp_path / "home"
    reg = Registry.from_settings(Settings(home=home))
    reg.register(iris_onnx, "iris")
    reg.close()
    return home


def mp(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MODELPORT_HOME": str(home)}
    env.pop("MODELPORT_REGISTRY_URL", None)
    env.pop("MODELPORT_STORE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "modelport.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_reference_then_drift_on_same_and_shifted_data(home: Path, tmp_path: Path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "ref.npz", X=iris_like(rng, 3000))
    r = mp(home, "monitor", "reference", "iris", "--data", str(tmp_path / "ref.npz"), "--json")
    assert r.returncode == 0, r.stderr
    profile = json.loads(r.stdout)
    assert profile["ref"] == "iris:1"
    assert [f["name"] for f in profile["features"]] == [f"X[{i}]" for i in range(4)]
    assert profile["prediction"]["kind"] == "categorical"  # the label output
    assert Path(profile["path"]) == home / "profiles" / "drift" / "iris" / "1.json"

    np.savez(tmp_path / "same.npz", iris_like(rng, 1000))  # a lone array feeds the lone input
    r = mp(home, "monitor", "drift", "iris:1", "--data", str(tmp_path / "same.npz"), "--json")
    assert r.returncode == 0, r.stderr
    same = json.loads(r.stdout)
    assert same["drifted"] is False
    assert same["window"] == 1000

    shifted = iris_like(rng, 1000)
    shifted[:, 2] += 1.5  # petal length
    np.savez(tmp_path / "shifted.npz", X=shifted)
    html = tmp_path / "report.html"
    r = mp(
        home,
        "monitor",
        "drift",
        "iris",
        "--data",
        str(tmp_path / "shifted.npz"),
        "--html",
        str(html),
        "--fail-on-drift",
    )
    assert r.returncode == 1, r.stderr
    assert "DRIFT" in r.stdout
    page = html.read_text()
    assert page.count("<img") == 5  # four features and the prediction
    assert "DRIFT DETECTED" in page

    r = mp(home, "monitor", "drift", "iris", "--data", str(tmp_path / "shifted.npz"), "--json")
    report = json.loads(r.stdout)
    drifted = [f["name"] for f in report["features"] if f["drifted"]]
    assert drifted == ["X[2]"]
    assert report["prediction"]["drifted"] is True  # longer petals: more virginica


def test_errors_name_the_fix(home: Path, tmp_path: Path):
    np.savez(tmp_path / "x.npz", X=np.zeros((10, 4), np.float32))
    r = mp(home, "monitor", "drift", "iris", "--data", str(tmp_path / "x.npz"))
    assert r.returncode == 3
    assert "modelport monitor reference iris:1" in r.stderr
    r = mp(home, "monitor", "drift", "iris")
    assert r.returncode == 2
    np.savez(tmp_path / "bad.npz", a=np.zeros(3), b=np.zeros(3))
    r = mp(home, "monitor", "reference", "iris", "--data", str(tmp_path / "bad.npz"))
    assert r.returncode == 2
    assert "takes inputs ['X']" in r.stderr


def test_offline_feedback_joins_labels_with_the_payload_log(home: Path, tmp_path: Path):
    from sklearn.datasets import load_iris
    from sklearn.metrics import accuracy_score, f1_score

    from modelport.runtimes import LoadSpec, load_runtime

    X, y = load_iris(return_X_y=True)
    X = X.astype(np.float32)
    reg = Registry.from_settings(Settings(home=home))
    v = reg.get("iris:1")
    rt = load_runtime("onnx", LoadSpec(reg.open(v), v.entry, v.signature))
    reg.close()
    log = PayloadLogger(JsonlSink(home / "logs"), default_rate=1.0, queue_size=1000)
    rng = np.random.default_rng(1)
    logged = rng.choice(len(X), 60, replace=False)
    preds = {}
    for i in logged:
        out = rt.predict({"X": X[i : i + 1]})
        preds[int(i)] = int(out["label"][0])
        log.maybe_log("iris", "1", f"req-{i}", {"X": X[i : i + 1]}, out, 0.001)
    log.close()
    rt.close()
    # labels in another order, some twice, one for a request that was never logged
    order = [*rng.permutation(logged).tolist(), *logged[:5].tolist()]
    lines = ["id,label", *(f"req-{i},{y[i]}" for i in order), "req-unknown,1"]
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    r = mp(home, "monitor", "feedback", "iris", "--labels", str(tmp_path / "labels.csv"), "--json")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert (result["joined"], result["duplicates"], result["unknown"]) == (60, 5, 1)
    (perf,) = result["performance"]
    truth = [y[i] for i in logged]
    predicted = [preds[int(i)] for i in logged]
    assert perf["count"] == 60
    assert perf["accuracy"] == pytest.approx(accuracy_score(truth, predicted))
    assert perf["f1"] == pytest.approx(f1_score(truth, predicted, average="macro", zero_division=0))
