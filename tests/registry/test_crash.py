"""Killing a registering process at any point leaves a complete version or nothing."""

from __future__ import annotations

import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from modelport.registry import Registry
from tests.conftest import Backend, make_big_onnx

WORKER = Path(__file__).with_name("crash_worker.py")
STEPS = ["hashed", "uploaded", "locked", "before-commit", "committed"]


def run_worker(backend: Backend, model: Path, kill_at: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(WORKER), str(model), "big", kill_at],
        env=backend.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_consistent(reg: Registry, expect_versions: list[int]) -> None:
    report = reg.check()
    assert report.ok, report.problems
    names = {m.name for m in reg.list()}
    versions = [v.version for v in reg.versions("big")] if "big" in names else []
    assert versions == expect_versions
    for n in versions:
        local = reg.open(f"big:{n}")  # every committed version is complete and verified
        assert (local / "model.onnx").stat().st_size == reg.get(f"big:{n}").files[0].size
    for a in reg.aliases():
        assert a.version in versions


@pytest.fixture(scope="module")
def big_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_big_onnx(tmp_path_factory.mktemp("big") / "big.onnx", 6 << 20)  # ~24 MiB


@pytest.mark.slow
def test_kill_at_each_step(backend: Backend, big_model: Path):
    reg = Registry.from_settings(backend.settings)
    committed: list[int] = []
    for step in STEPS:
        proc = run_worker(backend, big_model, step)
        assert proc.returncode == -9, proc.stderr
        assert proc.stdout.split()[-1] == step
        if step == "committed":
            committed.append(len(committed) + 1)
        assert_consistent(reg, committed)
    # The registry keeps working: the next registration gets the next number.
    proc = run_worker(backend, big_model, "never")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[-1] == f"big:{len(committed) + 1}"
    reg.gc(grace_seconds=0)
    report = reg.check()
    assert report.ok
    assert report.unreferenced_blobs == []
    assert report.temp_files == 0
    reg.close()


@pytest.mark.slow
def test_kill_at_random_moments(backend: Backend, big_model: Path):
    """SIGKILL after random delays while hashing, uploading or committing."""
    reg = Registry.from_settings(backend.settings)
    rng = random.Random(1234)
    start = time.perf_counter()
    assert run_worker(backend, big_model, "never").returncode == 0
    full = time.perf_counter() - start
    reg.delete("big:1")
    previous: list[int] = []
    reached: set[str] = set()
    for _ in range(8):
        proc = subprocess.Popen(
            [sys.executable, str(WORKER), str(big_model), "big", "never"],
            env=backend.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(rng.uniform(0.05, full))
        proc.kill()
        out, _ = proc.communicate(timeout=60)
        steps = out.split()
        reached.update(steps)
        names = {m.name for m in reg.list()}
        have = [v.version for v in reg.versions("big")] if "big" in names else []
        new = set(have) - set(previous)
        if "committed" in steps:
            assert len(new) == 1
        elif "before-commit" not in steps:
            assert not new, f"a version appeared though the worker died at {steps[-1:]}"
        else:
            assert len(new) <= 1
        assert_consistent(reg, have)
        previous = have
    assert "hashed" in reached  # the kills did land inside the registration
    reg.close()
