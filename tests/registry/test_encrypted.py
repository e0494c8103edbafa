"""Encrypted registration: ciphertext at rest, decrypted into memory by the server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest

from modelport.core.config import Settings
from modelport.core.errors import FailedPrecondition
from modelport.registry import Registry
from modelport.security.encryption import write_master_key_file
from tests.conftest import train_iris_onnx
from tests.serving.conftest import IRIS_X, start_thread_server


def test_encrypted_version_is_ciphertext_at_rest_and_serves(tmp_path: Path):
    key_file = tmp_path / "master.key"
    write_master_key_file(key_file)
    settings = Settings(home=tmp_path / "home", master_key_file=key_file)
    model = train_iris_onnx(tmp_path / "iris.onnx")
    plaintext = model.read_bytes()
    reg = Registry.from_settings(settings)
    v = reg.register(model, "iris", encrypt=True)
    assert "encryption" in v.extra
    stored = reg.read_file(v)
    assert plaintext[:64] not in stored
    assert plaintext[-64:] not in stored
    for p in settings.home.rglob("*"):  # no plaintext anywhere under home
        if p.is_file():
            assert plaintext[100:164] not in p.read_bytes(), p
    reg.close()

    thread, served = start_thread_server(settings, models=["iris"])
    try:
        body = {
            "inputs": [
                {"name": "X", "shape": [3, 4], "datatype": "FP32", "data": IRIS_X.ravel().tolist()}
            ]
        }
        r = httpx.post(served.url + "/v2/models/iris/infer", json=body)
        assert r.status_code == 200, r.text
        expected = ort.InferenceSession(str(model)).run(None, {"X": IRIS_X})[0]
        np.testing.assert_array_equal(r.json()["outputs"][0]["data"], expected)
    finally:
        thread.stop()

    other = tmp_path / "other.key"
    write_master_key_file(other)
    wrong = settings.model_copy(update={"master_key_file": other})
    thread, served = start_thread_server(wrong, models=["iris"])
    try:
        index = httpx.post(served.url + "/v2/repository/index", json={}).json()
        assert index[0]["state"] == "UNAVAILABLE"
        assert "key" in index[0]["reason"].lower()
        assert httpx.get(served.url + "/v2/health/live").status_code == 200
    finally:
        thread.stop()


def test_encryption_without_a_master_key_is_refused_before_any_write(tmp_path: Path):
    settings = Settings(home=tmp_path / "home")
    reg = Registry.from_settings(settings)
    with pytest.raises(FailedPrecondition, match="master key"):
        reg.register(train_iris_onnx(tmp_path / "a.onnx"), "iris", encrypt=True)
    assert reg.list() == []
    reg.close()
    env = {**os.environ, "MODELPORT_HOME": str(settings.home)}
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "modelport.cli",
            "register",
            str(tmp_path / "a.onnx"),
            "--name",
            "iris",
            "--encrypt",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 5
    assert "MODELPORT_MASTER_KEY_FILE" in r.stderr
