"""End-to-end demo on the embedded registry (SQLite + local files under ./.demo).

Trains a small scikit-learn model, exports it to ONNX, then drives the `modelport`
command line: register two versions, list, show, alias, check; serve the production
alias on 127.0.0.1, send real requests (CLI, Python client, plain JSON), move the alias
and watch the server switch versions live, then stop the server gracefully. Every step
is the command a user would type; it is printed before it runs.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
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
    """A scaler + logistic-regression pipeline, saved in skops' safe format."""
    import skops.io

    X, y = load_breast_cancer(return_X_y=True)
    X = X.astype(np.float32)
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(X))
    train_idx, test_idx = idx[:450], idx[450:]
    model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=1000))
    model.fit(X[train_idx], y[train_idx])
    accuracy = float(model.score(X[test_idx], y[test_idx]))
    skops.io.dump(model, path)
    np.save(WORK / "sample.npy", X[test_idx][:20])
    np.savez(WORK / "holdout.npz", X=X[test_idx], y=y[test_idx])
    return accuracy


def main() -> None:
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir()
    print(f"modelport demo — embedded registry in {WORK / 'home'}")
    acc1 = train(0.1, WORK / "cancer_v1.skops")
    acc2 = train(1.0, WORK / "cancer_v2.skops")
    print(
        f"trained two scikit-learn pipelines (scaler + logistic regression) on "
        f"breast_cancer, saved with skops: held-out accuracy {acc1:.3f} and {acc2:.3f}"
    )
    sample = str(WORK / "sample.npy")
    run(
        "register",
        str(WORK / "cancer_v1.skops"),
        "--name",
        "cancer",
        "--sample-input",
        sample,
        "--description",
        "scaler + logistic regression, C=0.1",
        "--tag",
        "dataset=breast_cancer",
        "--metric",
        f"accuracy={acc1:.4f}",
    )
    onnx1 = run(
        "convert", "cancer:1", "--to", "onnx", "--validation-data", str(WORK / "holdout.npz")
    )
    run(
        "register",
        str(WORK / "cancer_v2.skops"),
        "--name",
        "cancer",
        "--sample-input",
        sample,
        "--description",
        "scaler + logistic regression, C=1",
        "--metric",
        f"accuracy={acc2:.4f}",
    )
    onnx2 = run(
        "convert", "cancer:3", "--to", "onnx", "--validation-data", str(WORK / "holdout.npz")
    )
    run("alias", "set", "cancer", "production", last_ref(onnx1).split(":")[1])
    run("models", "list")
    run("models", "versions", "cancer")
    run("models", "show", "cancer@production")
    run("registry", "check")
    serve_and_query(last_ref(onnx2).split(":")[1])
    print(
        "\ndemo finished: the registry is in .demo/home "
        "(try: MODELPORT_HOME=.demo/home .venv/bin/modelport models list)"
    )


def last_ref(output: str) -> str:
    """The reference a command printed last (e.g. "cancer:2")."""
    return output.strip().splitlines()[-1].strip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_json(url: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"}
    req = urllib.request.Request(url, data=data, headers=headers)  # noqa: S310 - 127.0.0.1
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - 127.0.0.1 only
        return json.loads(resp.read())


def wait_ready(url: str, proc: subprocess.Popen[str]) -> None:
    for _ in range(600):
        if proc.poll() is not None:
            sys.exit(f"demo failed: the server exited with {proc.returncode}")
        try:
            if http_json(url + "/v2/health/ready").get("ready"):
                return
        except OSError:
            pass
        time.sleep(0.1)
    sys.exit("demo failed: the server did not become ready")


def serve_and_query(next_version: str) -> None:
    from sklearn.datasets import load_breast_cancer

    port, grpc_port = free_port(), free_port()
    url = f"http://127.0.0.1:{port}"
    args = ["serve", "cancer@production", "--http-port", str(port), "--grpc-port", str(grpc_port)]
    print(f"\n$ modelport {shlex.join(args)} &", flush=True)
    server = subprocess.Popen([*MODELPORT, *args], env=ENV, text=True)
    try:
        wait_ready(url, server)
        X, y = load_breast_cancer(return_X_y=True)
        rows = X[:3].astype(np.float32)
        run(
            "predict",
            "cancer@production",
            "--url",
            url,
            "--data",
            json.dumps(np.round(rows.astype(np.float64), 3).tolist()),
        )

        print("\nPython client, binary tensors, 64 rows:")
        from modelport.client import Client

        with Client(url) as client:
            out = client.infer("cancer", X[:64].astype(np.float32))
        acc = float((out["label"] == y[:64]).mean())
        print(f"  labels {out['label'][:10].tolist()}…  accuracy on these rows {acc:.3f}")

        print("\nplain JSON (KServe V2), as curl would send it:")
        body = {
            "id": "demo-1",
            "inputs": [
                {"name": "X", "shape": [1, 30], "datatype": "FP32", "data": rows[0].tolist()}
            ],
        }
        answer = http_json(url + "/v2/models/cancer/infer", body)
        print(
            f"  model_version={answer['model_version']} id={answer['id']} "
            f"outputs={[(o['name'], o['data']) for o in answer['outputs']]}"
        )

        print(f"\ngRPC with tritonclient.grpc on 127.0.0.1:{grpc_port}:")
        import tritonclient.grpc as tg

        grpc_client = tg.InferenceServerClient(f"127.0.0.1:{grpc_port}")
        inp = tg.InferInput("X", [2, 30], "FP32")
        inp.set_data_from_numpy(X[:2].astype(np.float32))
        result = grpc_client.infer("cancer", [inp])
        print(
            f"  label={result.as_numpy('label').tolist()} "
            f"probabilities={np.round(result.as_numpy('probabilities'), 4).tolist()}"
        )
        grpc_client.close()

        run("alias", "set", "cancer", "production", next_version)
        print(f"waiting for the server to follow cancer@production to version {next_version}…")
        for _ in range(100):
            if http_json(url + "/v2/models/cancer/infer", body)["model_version"] == next_version:
                break
            time.sleep(0.1)
        answer = http_json(url + "/v2/models/cancer/infer", body)
        print(f"  now answering with model_version={answer['model_version']}")
        stats = http_json(url + "/v2/models/cancer/stats")["model_stats"][0]
        print(
            f"  statistics: {stats['inference_count']} rows inferred by version {stats['version']}"
        )
    finally:
        print("\nstopping the server (SIGTERM: readiness off, drain, exit)", flush=True)
        server.send_signal(signal.SIGTERM)
        server.wait(60)
    print(f"server exited with code {server.returncode}")


if __name__ == "__main__":
    main()
