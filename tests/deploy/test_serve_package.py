"""A package built in one home is served from another with only the package file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np

from modelport.core.config import Settings
from modelport.registry import Registry
from tests.conftest import train_iris_onnx
from tests.serving.conftest import IRIS_X, start_process_server, stop_process


def test_serve_package_from_an_empty_home(tmp_path: Path):
    build = Settings(home=tmp_path / "build")
    reg = Registry.from_settings(build)
    reg.register(train_iris_onnx(tmp_path / "a.onnx"), "iris")
    reg.register(train_iris_onnx(tmp_path / "b.onnx", 1), "iris")
    reg.set_alias("iris", "production", 1)
    reg.close()
    pkg = tmp_path / "iris.tar.gz"
    env = {**os.environ, "MODELPORT_HOME": str(build.home)}
    r = subprocess.run(
        [sys.executable, "-m", "modelport.cli", "package", "iris@production", "--out", str(pkg)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr

    elsewhere = Settings(home=tmp_path / "elsewhere")  # no registry there at all
    proc, url, _ = start_process_server(elsewhere, "--package", str(pkg), "--no-grpc")
    try:
        body = {
            "inputs": [
                {"name": "X", "shape": [3, 4], "datatype": "FP32", "data": IRIS_X.ravel().tolist()}
            ]
        }
        out = httpx.post(url + "/v2/models/iris/infer", json=body)
        assert out.status_code == 200, out.text
        assert out.json()["model_version"] == "1"
        import onnxruntime as ort

        expected = ort.InferenceSession(str(tmp_path / "a.onnx")).run(None, {"X": IRIS_X})[0]
        np.testing.assert_array_equal(out.json()["outputs"][0]["data"], expected)
        assert httpx.get(url + "/v2/models/iris/versions/production/ready").status_code == 200
    finally:
        code, output = stop_process(proc)
    assert code == 0, output
    assert not (elsewhere.home / "registry.db").exists()  # served without a registry


def test_tampered_package_is_refused(tmp_path: Path):
    import tarfile

    build = Settings(home=tmp_path / "build")
    reg = Registry.from_settings(build)
    reg.register(train_iris_onnx(tmp_path / "a.onnx"), "iris")
    reg.close()
    pkg = tmp_path / "iris.tar.gz"
    env = {**os.environ, "MODELPORT_HOME": str(build.home)}
    assert (
        subprocess.run(
            [sys.executable, "-m", "modelport.cli", "package", "iris:1", "--out", str(pkg)],
            env=env,
            capture_output=True,
            timeout=120,
        ).returncode
        == 0
    )
    bad = tmp_path / "bad.tar.gz"
    with tarfile.open(pkg) as src, tarfile.open(bad, "w:gz") as dst:
        for member in src.getmembers():
            data = src.extractfile(member) if member.isfile() else None
            if data is not None and member.name.endswith(".onnx"):
                content = bytearray(data.read())
                content[-1] ^= 0xFF
                import io

                member.size = len(content)
                dst.addfile(member, io.BytesIO(bytes(content)))
            else:
                dst.addfile(member, data)
    env = {**os.environ, "MODELPORT_HOME": str(tmp_path / "elsewhere")}
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "modelport.cli",
            "serve",
            "--package",
            str(bad),
            "--no-grpc",
            "--http-port",
            "0",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 11
    assert "digest" in r.stderr
    assert not list((tmp_path / "elsewhere" / "packages").glob("[!.]*"))


def test_serve_an_extracted_package_directory(tmp_path: Path):
    """The Dockerfile serves the package directory it baked in, verified in place."""
    build = Settings(home=tmp_path / "build")
    reg = Registry.from_settings(build)
    reg.register(train_iris_onnx(tmp_path / "a.onnx"), "iris")
    reg.close()
    pkg = tmp_path / "iris.tar.gz"
    env = {**os.environ, "MODELPORT_HOME": str(build.home)}
    r = subprocess.run(
        [sys.executable, "-m", "modelport.cli", "package", "iris:1", "--out", str(pkg)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    extracted = tmp_path / "extracted"
    r = subprocess.run(
        [sys.executable, "-m", "modelport.cli", "unpack", str(pkg), "--out", str(extracted)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    elsewhere = Settings(home=tmp_path / "elsewhere")
    proc, url, _ = start_process_server(elsewhere, "--package", str(extracted), "--no-grpc")
    try:
        body = {
            "inputs": [
                {"name": "X", "shape": [3, 4], "datatype": "FP32", "data": IRIS_X.ravel().tolist()}
            ]
        }
        assert httpx.post(url + "/v2/models/iris/infer", json=body).status_code == 200
    finally:
        code, output = stop_process(proc)
    assert code == 0, output
