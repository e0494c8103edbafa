"""Real servers for the serving tests: in a thread (fast) or as a `modelport serve` process."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from tests.conftest import free_port, train_iris_onnx

from modelport.core.config import Settings
from modelport.registry import Registry
from modelport.serving.config import ServeConfig
from modelport.serving.server import RunningServer, run_server


@dataclass
class Served:
    """A running server and how to reach it."""

    url: str
    grpc: str | None
    handle: RunningServer | None = None
    settings: Settings | None = None


class ServerThread:
    """Runs ``run_server`` on its own event loop in a thread (no signal handlers)."""

    def __init__(self, settings: Settings, config: ServeConfig) -> None:
        self.settings, self.config = settings, config
        self.handle: RunningServer | None = None
        self.error: BaseException | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        def ready(h: RunningServer) -> None:
            self.handle = h
            self._ready.set()

        try:
            asyncio.run(
                run_server(self.settings, self.config, on_ready=ready, install_signals=False)
            )
        except BaseException as e:  # reported by start()
            self.error = e
            self._ready.set()

    def start(self) -> RunningServer:
        self._thread.start()
        if not self._ready.wait(120) or self.handle is None:
            raise RuntimeError(f"server did not start: {self.error!r}")
        return self.handle

    def stop(self) -> None:
        if self.handle is not None:
            self.handle.stop()
        self._thread.join(60)


@pytest.fixture(scope="module")
def model_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("serving-models")
    return {"iris": train_iris_onnx(d / "iris.onnx"), "iris_b": train_iris_onnx(d / "b.onnx", 1)}


@pytest.fixture(scope="module")
def serving_home(
    tmp_path_factory: pytest.TempPathFactory, model_files: dict[str, Path]
) -> Settings:
    settings = Settings(home=tmp_path_factory.mktemp("serving-home"))
    reg = Registry.from_settings(settings)
    reg.register(model_files["iris"], "iris")
    reg.register(model_files["iris_b"], "iris")
    reg.set_alias("iris", "production", 1)
    reg.register(model_files["iris"], "iris-batched")
    reg.close()
    return settings


def start_thread_server(settings: Settings, **overrides: object) -> tuple[ServerThread, Served]:
    grpc_port = overrides.pop("grpc_port", None)
    cfg = ServeConfig.load(None, {"http_port": free_port(), "poll_interval_s": 0.2, **overrides})
    cfg = cfg.model_copy(update={"grpc_port": grpc_port})
    thread = ServerThread(settings, cfg)
    handle = thread.start()
    grpc = f"127.0.0.1:{handle.grpc_port}" if handle.grpc_port else None
    return thread, Served(f"http://127.0.0.1:{handle.http_port}", grpc, handle, settings)


@pytest.fixture(scope="module")
def server(serving_home: Settings) -> Iterator[Served]:
    """iris (latest), iris-batched (dynamic batching) on one server."""
    from modelport.serving.config import ModelConfig

    thread, served = start_thread_server(
        serving_home,
        models=[
            ModelConfig(ref="iris"),
            ModelConfig(ref="iris-batched", max_batch_size=16, max_queue_delay_us=2000),
        ],
    )
    yield served
    thread.stop()


def start_process_server(
    settings: Settings, *args: str, env_extra: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], str, str]:
    """`modelport serve …` in a child process; returns (process, http url, grpc address)."""
    http, grpc = free_port(), free_port()
    env = {**os.environ, "MODELPORT_HOME": str(settings.home), **(env_extra or {})}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "modelport.cli",
            "serve",
            *args,
            "--http-port",
            str(http),
            "--grpc-port",
            str(grpc),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{http}"
    wait_until(lambda: _ready(url), 60, proc)
    return proc, url, f"127.0.0.1:{grpc}"


def stop_process(proc: subprocess.Popen[str], timeout: float = 30) -> tuple[int, str]:
    """SIGTERM the server, wait for it, and return (exit code, its output)."""
    import signal

    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


def _ready(url: str) -> bool:
    try:
        return httpx.get(url + "/v2/health/ready", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def wait_until(
    pred: Callable[[], bool], timeout: float, proc: subprocess.Popen[str] | None = None
) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(
                f"server exited {proc.returncode}: {proc.stdout.read() if proc.stdout else ''}"
            )
        time.sleep(0.05)
    raise TimeoutError("condition not met in time")


IRIS_X = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]], np.float32)
