"""End-to-end demo on the embedded registry (SQLite + local files under ./.demo).

Trains a small scikit-learn model, exports it to ONNX, then drives the `modelport`
command line: register two versions, list, show, alias, check. Every step is the
command a user would type; it is printed before it runs.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from skl2onnx import to_onnx
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".demo"
ENV = {**os.environ, "MODELPORT_HOME": str(WORK / "home")}
MODELPORT = [sys.executable, "-m", "modelport.cli"]


def run(*args: str) -> str:
    print(f"\n$ modelport {shlex.join(args)}", flush=True)
    proc = subprocess.run([*MODELPORT, *args], env=ENV, text=True, capture_output=True)
    sys.stdout.write(proc.stdout)
    sys.stderr.write(proc.stderr)
    if proc.returncode != 0:
        sys.exit(f"demo failed: modelport {shlex.join(args)} exited {proc.returncode}")
    return proc.stdout.strip()


def train(c: float, path: Path) -> float:
    X, y = load_breast_cancer(return_X_y=True)
    X = X.astype(np.float32)
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(X))
    train_idx, test_idx = idx[:450], idx[450:]
    model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=1000))
    model.fit(X[train_idx], y[train_idx])
    accuracy = float(model.score(X[test_idx], y[test_idx]))
    onx = to_onnx(model, X[:1], options={"zipmap": False}, target_opset=17)
    path.write_bytes(onx.SerializeToString())
    return accuracy


def main() -> None:
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir()
    print(f"modelport demo — embedded registry in {WORK / 'home'}")
    acc1 = train(0.1, WORK / "cancer_v1.onnx")
    acc2 = train(1.0, WORK / "cancer_v2.onnx")
    print(
        f"trained two logistic-regression pipelines on breast_cancer: "
        f"held-out accuracy {acc1:.3f} and {acc2:.3f}"
    )
    ref1 = run(
        "register",
        str(WORK / "cancer_v1.onnx"),
        "--name",
        "cancer",
        "--description",
        "scaler + logistic regression, C=0.1",
        "--tag",
        "dataset=breast_cancer",
        "--metric",
        f"accuracy={acc1:.4f}",
    )
    run(
        "register",
        str(WORK / "cancer_v2.onnx"),
        "--name",
        "cancer",
        "--description",
        "scaler + logistic regression, C=1",
        "--metric",
        f"accuracy={acc2:.4f}",
    )
    run("alias", "set", "cancer", "production", ref1.split(":")[1])
    run("models", "list")
    run("models", "versions", "cancer")
    run("models", "show", "cancer@production")
    run("registry", "check")
    print(
        "\ndemo finished: the registry is in .demo/home "
        "(try: MODELPORT_HOME=.demo/home .venv/bin/modelport models list)"
    )


if __name__ == "__main__":
    main()
