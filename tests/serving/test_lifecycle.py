"""Live updates and shutdown under load, through the real `modelport serve` process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import pytest
from tests.conftest import train_iris_onnx
from tests.serving.conftest import IRIS_X, start_process_server, stop_process, wait_until

from modelport.core.config import Settings
from modelport.registry import Registry

BODY = {
    "inputs": [{"name": "X", "shape": [3, 4], "datatype": "FP32", "data": IRIS_X.ravel().tolist()}]
}


class Load:
    """Closed-loop load from a few threads; counts every answer by status and version."""

    def __init__(self, url: str, threads: int = 4, duration_s: float = 30.0) -> None:
        self.url = url
        self.statuses: dict[int, int] = {}
        self.versions: dict[str, int] = {}
        self.errors: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._end = time.monotonic() + duration_s
        self._threads = [threading.Thread(target=self._run) for _ in range(threads)]

    def _run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set() and time.monotonic() < self._end:
                try:
                    r = client.post(self.url + "/v2/models/iris/infer", json=BODY)
                except httpx.HTTPError as e:
                    # no response at all: the connection was refused or reset
                    with self._lock:
                        self.errors.append((time.monotonic(), type(e).__name__))
                    return
                with self._lock:
                    self.statuses[r.status_code] = self.statuses.get(r.status_code, 0) + 1
                    if r.status_code == 200:
                        v = r.json()["model_version"]
                        self.versions[v] = self.versions.get(v, 0) + 1

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)

    @property
    def total(self) -> int:
        return sum(self.statuses.values())


@pytest.mark.slow
def test_alias_move_swaps_version_with_zero_failures(tmp_path):
    settings = Settings(home=tmp_path / "home")
    reg = Registry.from_settings(settings)
    reg.register(train_iris_onnx(tmp_path / "a.onnx"), "iris")
    reg.register(train_iris_onnx(tmp_path / "b.onnx", 1), "iris")
    reg.set_alias("iris", "production", 1)
    proc, url, _ = start_process_server(settings, "iris@production", "--no-grpc")
    try:
        with Load(url) as load:
            wait_until(lambda: load.total > 50, 30)
            reg.set_alias("iris", "production", 2)
            wait_until(lambda: load.versions.get("2", 0) > 50, 30)
            reg.set_alias("iris", "production", 1)  # and back (rollback)
            wait_until(lambda: load.versions.get("1", 0) > 100, 30)
        assert load.errors == []
        assert set(load.statuses) == {200}, load.statuses
        assert load.versions["1"] > 0
        assert load.versions["2"] > 0
    finally:
        stop_process(proc)
        reg.close()


@pytest.mark.slow
def test_sigterm_under_load_answers_every_accepted_request(tmp_path):
    settings = Settings(home=tmp_path / "home")
    reg = Registry.from_settings(settings)
    reg.register(train_iris_onnx(tmp_path / "a.onnx"), "iris")
    reg.close()
    proc, url, _ = start_process_server(settings, "iris", "--no-grpc", "--shutdown-delay", "1")
    with Load(url, threads=6) as load:
        wait_until(lambda: load.total > 100, 30)
        sigterm_at = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        # readiness fails at once while requests are still served
        wait_until(lambda: httpx.get(url + "/v2/health/ready").status_code == 503, 5)
        assert httpx.post(url + "/v2/models/iris/infer", json=BODY).status_code == 200
        code, output = stop_process(proc)
        assert code == 0, output
    # Every request the server took was answered 200 (none failed, none cut off):
    assert set(load.statuses) == {200}, load.statuses
    assert "0 unfinished" in output, output
    # Clients that kept sending after the listener closed (1 s after SIGTERM) were
    # refused or reset at connect time; nothing failed before that.
    assert all(at >= sigterm_at + 1.0 for at, _ in load.errors), load.errors
    assert {kind for _, kind in load.errors} <= {
        "ConnectError",
        "ReadError",
        "RemoteProtocolError",
        "WriteError",
    }
    assert load.total > 100


def test_model_that_fails_to_load_is_unavailable_while_others_serve(tmp_path):
    settings = Settings(home=tmp_path / "home")
    reg = Registry.from_settings(settings)
    reg.register(train_iris_onnx(tmp_path / "a.onnx"), "iris")
    v = reg.register(train_iris_onnx(tmp_path / "b.onnx", 1), "broken")
    blob = reg.store.path(v.files[0].digest)  # type: ignore[attr-defined]
    blob.chmod(0o644)
    blob.write_bytes(b"corrupted after registration")
    reg.close()
    from tests.serving.conftest import start_thread_server

    thread, served = start_thread_server(settings, models=["iris", "broken"])
    try:
        r = httpx.post(served.url + "/v2/models/broken/infer", json=BODY)
        assert r.status_code == 503
        assert "corrupt" in r.json()["error"]
        assert httpx.post(served.url + "/v2/models/iris/infer", json=BODY).status_code == 200
        index = httpx.post(served.url + "/v2/repository/index", json={}).json()
        broken = next(m for m in index if m["name"] == "broken")
        assert broken["state"] == "UNAVAILABLE"
        assert "corrupt" in broken["reason"]
        assert httpx.get(served.url + "/v2/health/ready").status_code == 503
        assert httpx.get(served.url + "/v2/health/live").status_code == 200
    finally:
        thread.stop()


def test_load_unload_at_run_time(tmp_path):
    from tests.serving.conftest import start_thread_server

    settings = Settings(home=tmp_path / "home")
    reg = Registry.from_settings(settings)
    reg.register(train_iris_onnx(tmp_path / "a.onnx"), "iris")
    reg.register(train_iris_onnx(tmp_path / "b.onnx", 1), "other")
    reg.close()
    thread, served = start_thread_server(settings, models=["iris"])
    try:
        url = served.url
        assert httpx.post(url + "/v2/models/other/infer", json=BODY).status_code == 404
        assert httpx.post(url + "/v2/repository/models/other/load").status_code == 200
        assert httpx.post(url + "/v2/models/other/infer", json=BODY).status_code == 200
        assert httpx.post(url + "/v2/repository/models/other/unload").status_code == 200
        r = httpx.post(url + "/v2/models/other/infer", json=BODY)
        assert r.status_code == 503
        assert httpx.get(url + "/v2/models/other/ready").status_code == 503
        assert httpx.post(url + "/v2/repository/models/ghost/load").status_code == 400
        assert httpx.post(url + "/v2/repository/models/..%2f/load").status_code == 400
        out = np.asarray(
            httpx.post(url + "/v2/models/iris/infer", json=BODY).json()["outputs"][0]["data"]
        )
        assert out.shape == (3,)
    finally:
        thread.stop()


@pytest.mark.slow
def test_workers_share_the_ports_and_stop_together(tmp_path):
    import psutil

    settings = Settings(home=tmp_path / "home")
    reg = Registry.from_settings(settings)
    reg.register(train_iris_onnx(tmp_path / "a.onnx"), "iris")
    reg.close()
    proc, url, grpc_addr = start_process_server(settings, "iris", "--workers", "2")
    try:
        children = [
            c for c in psutil.Process(proc.pid).children() if "spawn_main" in " ".join(c.cmdline())
        ]  # not the resource tracker
        assert len(children) == 2
        wait_until(
            lambda: all(
                any(c.laddr.port == int(url.rsplit(":", 1)[1]) for c in ch.net_connections("tcp"))
                for ch in children
            ),
            30,
        )
        with httpx.Client() as c:
            for _ in range(20):
                assert c.post(url + "/v2/models/iris/infer", json=BODY).status_code == 200
        import tritonclient.grpc as tg

        client = tg.InferenceServerClient(grpc_addr)
        assert client.is_model_ready("iris")
        # model control would change one process of two: refused everywhere, and not
        # offered among the extensions
        with pytest.raises(tg.InferenceServerException) as refused:
            client.unload_model("iris")
        assert refused.value.status() == "StatusCode.FAILED_PRECONDITION"
        client.close()
        with httpx.Client() as c:
            assert "model_repository" not in c.get(url + "/v2").json()["extensions"]
            for action in ("load", "unload"):
                r = c.post(url + f"/v2/repository/models/iris/{action}")
                assert r.status_code == 412
                assert "--workers" in r.json()["error"]
            assert c.post(url + "/v2/models/iris/infer", json=BODY).status_code == 200
        cli = subprocess.run(
            [sys.executable, "-m", "modelport.cli", "server", "unload", "iris", "--url", url],
            env={**os.environ, "MODELPORT_HOME": str(settings.home)},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert cli.returncode != 0
        assert "--workers" in cli.stderr + cli.stdout
    finally:
        code, output = stop_process(proc)
    assert code == 0, output
    assert not any(ch.is_running() and ch.status() != psutil.STATUS_ZOMBIE for ch in children)
