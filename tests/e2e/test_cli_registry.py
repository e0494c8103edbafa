"""The registry through the real `modelport` command, on both backends."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import Backend


def mp(backend: Backend, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelport.cli", *args],
        env=backend.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_register_list_show_alias_export_delete(
    backend: Backend, iris_onnx: Path, iris_onnx_b: Path, tmp_path: Path
):
    r = mp(
        backend,
        "register",
        str(iris_onnx),
        "--name",
        "iris",
        "--tag",
        "team=ml",
        "--metric",
        "accuracy=0.97",
        "--description",
        "baseline",
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "iris:1"
    assert "detected onnx model" in r.stderr
    r = mp(backend, "register", str(iris_onnx_b), "--name", "iris", "--json")
    assert json.loads(r.stdout)["ref"] == "iris:2"

    listing = json.loads(mp(backend, "models", "list", "--json").stdout)
    assert listing[0]["name"] == "iris"
    assert listing[0]["latest_version"] == 2
    table = mp(backend, "models", "list").stdout
    assert "iris" in table

    shown = json.loads(mp(backend, "models", "show", "iris:1", "--json").stdout)
    assert shown["tags"] == {"team": "ml"}
    assert shown["metrics"] == {"accuracy": 0.97}
    assert shown["signature"]["inputs"] == [{"name": "X", "datatype": "FP32", "shape": [-1, 4]}]
    human = mp(backend, "models", "show", "iris:1").stdout
    assert "probabilities" in human
    assert "baseline" in human

    assert mp(backend, "alias", "set", "iris", "production", "1").returncode == 0
    assert (
        json.loads(mp(backend, "models", "show", "iris@production", "--json").stdout)["version"]
        == 1
    )
    r = mp(backend, "alias", "set", "iris", "production", "2", "--expect", "2")
    assert r.returncode == 4
    assert "moved concurrently" in r.stderr
    assert mp(backend, "alias", "set", "iris", "production", "2", "--expect", "1").returncode == 0
    hist = json.loads(mp(backend, "alias", "list", "iris", "--history", "--json").stdout)
    assert [(h["from_version"], h["to_version"]) for h in hist] == [(None, 1), (1, 2)]
    versions = json.loads(mp(backend, "models", "versions", "iris", "--json").stdout)
    assert [v["aliases"] for v in versions] == [[], ["production"]]

    out = tmp_path / "exported"
    assert mp(backend, "models", "export", "iris@production", "--out", str(out)).returncode == 0
    assert (out / "model.onnx").read_bytes() == iris_onnx_b.read_bytes()

    r = mp(backend, "models", "delete", "iris:2")
    assert r.returncode == 5
    assert "aliased" in r.stderr
    assert mp(backend, "models", "delete", "iris:1").returncode == 0
    check = mp(backend, "registry", "check", "--json")
    assert check.returncode == 0
    assert json.loads(check.stdout)["ok"] is True


def test_errors_have_clear_messages_and_exit_codes(
    backend: Backend, iris_onnx: Path, tmp_path: Path
):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage")
    cases = [
        (("register", str(iris_onnx), "--name", "../etc"), 2, "invalid model name"),
        (("register", str(bad), "--name", "x"), 2, "supported: onnx"),
        (("register", str(bad), "--name", "x", "--framework", "onnx"), 2, "not a valid ONNX"),
        (("register", str(tmp_path / "none.onnx"), "--name", "x"), 3, "no such file"),
        (("models", "show", "ghost"), 3, "does not exist"),
        (("models", "show", "ghost:x"), 2, "invalid version"),
        (("register", str(iris_onnx), "--name", "x", "--tag", "novalue"), 2, "key=value"),
        (("models", "delete", "ghost"), 2, "--all"),
    ]
    for args, code, msg in cases:
        r = mp(backend, *args)
        assert (r.returncode, msg in r.stderr) == (code, True), (args, r.returncode, r.stderr)
        assert "Traceback" not in r.stderr
    assert json.loads(mp(backend, "models", "list", "--json").stdout) == []


def test_check_exits_nonzero_on_corruption(tmp_path: Path, iris_onnx: Path):
    """(Corruption of S3 objects is covered in tests/registry.)"""
    from modelport.core.config import Settings

    backend = Backend("sqlite-local", Settings(home=tmp_path / "home"))
    mp(backend, "register", str(iris_onnx), "--name", "iris")
    blob = next(
        p for p in (backend.settings.home / "artifacts" / "blobs").rglob("*") if p.is_file()
    )
    blob.chmod(0o644)
    blob.write_bytes(b"flipped")
    r = mp(backend, "registry", "check")
    assert r.returncode == 11
    assert "corrupt" in r.stdout
