"""Framework models through the real `modelport` command: register, convert, parity, refuse."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from modelport.cli import main
from modelport.runtimes.live import save_object
from modelport.runtimes.sample import save_sample
from tests.runtimes import models
from tests.runtimes.models import CASES, Case


def mp(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    import os

    env = {**os.environ, "MODELPORT_HOME": str(home)}
    for key in ("MODELPORT_REGISTRY_URL", "MODELPORT_STORE_URL"):
        env.pop(key, None)
    return subprocess.run(
        [sys.executable, "-m", "modelport.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def saved(case: Case, directory: Path) -> tuple[Path, Path]:
    """The model as a file in its native format, and its sample as .npz."""
    directory.mkdir(parents=True, exist_ok=True)
    out = save_object(case.model(), directory, case.inputs())
    assert out.sample is not None
    return out.path, save_sample(out.sample, directory / "sample.npz")


def test_pipeline_register_convert_and_a_failed_parity_check(tmp_path: Path):
    home = tmp_path / "home"
    model, sample = saved(CASES[0], tmp_path / "files")
    r = mp(home, "register", str(model), "--name", "cancer", "--sample-input", str(sample))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "cancer:1"
    assert "detected sklearn model (sklearn)" in r.stderr

    r = mp(home, "convert", "cancer", "--to", "onnx", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["registered"] is True
    assert out["parity"]["passed"] is True
    assert out["parity"]["label_agreement"] == 1.0
    assert out["version"]["ref"] == "cancer:2"
    assert out["version"]["lineage"]["parent"] == "cancer:1"
    assert out["version"]["lineage"]["params"]["converter"] == "skl2onnx"

    exact = ["--tolerance", "atol=0", "--tolerance", "rtol=0"]
    r = mp(home, "convert", "cancer:1", *exact)
    assert r.returncode == 5
    assert "nothing was registered" in r.stderr
    assert "probabilities: max abs" in r.stderr
    # --force is covered through the same code by test_every_framework_through_the_cli


def test_malicious_pickle_is_refused_by_the_cli(tmp_path: Path):
    home = tmp_path / "home"
    canary = tmp_path / "canary"
    path = models.malicious_joblib(tmp_path / "model.joblib", canary)
    np.save(tmp_path / "x.npy", models.cancer()[0][:3])
    r = mp(home, "register", str(path), "--name", "evil", "--sample-input", str(tmp_path / "x.npy"))
    assert r.returncode == 2
    assert "--trust" in r.stderr
    assert not canary.exists()
    assert json.loads(mp(home, "models", "list", "--json").stdout) == []
    notes = tmp_path / "notes.txt"
    notes.write_text("nothing\n")
    r = mp(home, "register", str(notes), "--name", "notes")
    assert r.returncode == 2
    assert "supported: onnx, sklearn" in r.stderr


def test_import_triton_repository(tmp_path: Path, iris_onnx: Path):
    repo = tmp_path / "repo"
    (repo / "iris" / "3").mkdir(parents=True)
    shutil.copy(iris_onnx, repo / "iris" / "3" / "model.onnx")
    (repo / "iris" / "config.pbtxt").write_text(
        'name: "iris"\nmax_batch_size: 4\ninput [{ name: "X" data_type: TYPE_FP32 dims: [4] }]\n'
    )
    r = mp(tmp_path / "home", "import", "triton", str(repo), "--json")
    assert r.returncode == 0, r.stderr
    [v] = json.loads(r.stdout)
    assert (v["ref"], v["extra"]["max_batch_size"]) == ("iris:1", 4)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_every_framework_through_the_cli(
    case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
):
    """The same command functions, run in-process (the subprocess tests cover the entry)."""
    monkeypatch.setenv("MODELPORT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MODELPORT_REGISTRY_URL", raising=False)
    monkeypatch.delenv("MODELPORT_STORE_URL", raising=False)
    model, sample = saved(case, tmp_path / "files")
    assert main(["register", str(model), "--name", case.name, "--sample-input", str(sample)]) == 0
    assert capsys.readouterr().out.strip() == f"{case.name}:1"
    assert main(["convert", case.name, "--to", "onnx", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["parity"]["passed"] is True
    assert out["version"]["format"] == "onnx"
    if case.framework == "pytorch":
        assert main(["convert", f"{case.name}:1", "--to", "torchscript"]) == 0
        assert capsys.readouterr().out.strip() == f"{case.name}:3"
    if case.name == "pipeline":  # a failing check, forced: registered and marked
        exact = ["--tolerance", "atol=0", "--tolerance", "rtol=0"]
        assert main(["convert", "pipeline:1", *exact]) == 5
        assert main(["convert", "pipeline:1", *exact, "--force", "--json"]) == 0
        forced = json.loads(capsys.readouterr().out)["version"]
        assert forced["ref"] == "pipeline:3"  # the refused attempt took no number
        assert forced["tags"]["parity"] == "failed"
        assert forced["lineage"]["params"]["forced"] is True
