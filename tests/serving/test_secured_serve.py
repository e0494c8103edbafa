"""`modelport serve` applies the security layer: --auth, exposure rules, TLS flags."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
import pytest
from tests.conftest import free_port, train_iris_onnx
from tests.serving.conftest import IRIS_X, start_process_server, stop_process

from modelport.core.config import Settings
from modelport.registry import Registry

BODY = {
    "inputs": [{"name": "X", "shape": [3, 4], "datatype": "FP32", "data": IRIS_X.ravel().tolist()}]
}


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MODELPORT_HOME": str(settings.home)}
    return subprocess.run(
        [sys.executable, "-m", "modelport.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_serve_with_auth_requires_a_key_over_rest_and_grpc(tmp_path):
    settings = Settings(home=tmp_path / "home")
    reg = Registry.from_settings(settings)
    reg.register(train_iris_onnx(tmp_path / "a.onnx"), "iris")
    reg.close()
    created = cli(settings, "auth", "create-key", "--role", "predictor", "--json")
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)["key"]
    viewer = json.loads(cli(settings, "auth", "create-key", "--role", "viewer", "--json").stdout)[
        "key"
    ]
    proc, url, grpc_addr = start_process_server(settings, "iris", "--auth")
    try:
        assert httpx.get(url + "/v2/health/ready").status_code == 200  # health is public
        r = httpx.post(url + "/v2/models/iris/infer", json=BODY)
        assert r.status_code == 401
        assert "www-authenticate" in r.headers
        ok = httpx.post(
            url + "/v2/models/iris/infer", json=BODY, headers={"Authorization": f"Bearer {key}"}
        )
        assert ok.status_code == 200
        denied = httpx.post(
            url + "/v2/models/iris/infer", json=BODY, headers={"Authorization": f"Bearer {viewer}"}
        )
        assert denied.status_code == 403
        unload = httpx.post(
            url + "/v2/repository/models/iris/unload", headers={"Authorization": f"Bearer {key}"}
        )
        assert unload.status_code == 403  # a predictor may not unload
        import tritonclient.grpc as tg
        from tritonclient.utils import InferenceServerException

        client = tg.InferenceServerClient(grpc_addr)
        inp = tg.InferInput("X", [3, 4], "FP32")
        inp.set_data_from_numpy(IRIS_X)
        with pytest.raises(InferenceServerException) as denied_grpc:
            client.infer("iris", [inp])
        assert "UNAUTHENTICATED" in str(denied_grpc.value.status())
        result = client.infer("iris", [inp], headers={"authorization": f"Bearer {key}"})
        assert result.as_numpy("label").shape == (3,)
        client.close()
    finally:
        code, out = stop_process(proc)
    assert code == 0, out


def test_non_loopback_listener_needs_auth_or_insecure(tmp_path):
    settings = Settings(home=tmp_path / "home")
    reg = Registry.from_settings(settings)
    reg.register(train_iris_onnx(tmp_path / "a.onnx"), "iris")
    reg.close()
    r = cli(
        settings, "serve", "iris", "--host", "0.0.0.0", "--http-port", str(free_port()), "--no-grpc"
    )
    assert r.returncode == 5  # refused in this state: FailedPrecondition
    assert "--insecure" in r.stderr
    assert "Traceback" not in r.stderr
    proc, url, _ = start_process_server(settings, "iris", "--no-grpc")
    try:
        # a browser page on another site cannot drive the loopback server (DNS rebinding)
        r = httpx.post(
            url + "/v2/models/iris/infer", json=BODY, headers={"Host": "attacker.example"}
        )
        assert r.status_code == 403
        assert httpx.post(url + "/v2/models/iris/infer", json=BODY).status_code == 200
    finally:
        stop_process(proc)


def test_scoped_keys_only_see_their_models_in_listings(tmp_path):
    settings = Settings(home=tmp_path / "home")
    reg = Registry.from_settings(settings)
    reg.register(train_iris_onnx(tmp_path / "a.onnx"), "iris")
    reg.register(train_iris_onnx(tmp_path / "b.onnx", 1), "other")
    reg.close()
    scoped = json.loads(
        cli(
            settings, "auth", "create-key", "--role", "deployer", "--models", "iris*", "--json"
        ).stdout
    )["key"]
    full = json.loads(cli(settings, "auth", "create-key", "--role", "deployer", "--json").stdout)[
        "key"
    ]
    proc, url, _ = start_process_server(settings, "iris", "other", "--auth", "--no-grpc")
    try:

        def listing(key: str) -> tuple[list[str], list[str]]:
            h = {"Authorization": f"Bearer {key}"}
            models = httpx.get(url + "/v2/models", headers=h).json()["models"]
            index = httpx.post(url + "/v2/repository/index", headers=h, json={}).json()
            return models, sorted(m["name"] for m in index)

        assert listing(scoped) == (["iris"], ["iris"])
        assert listing(full) == (["iris", "other"], ["iris", "other"])
    finally:
        stop_process(proc)
