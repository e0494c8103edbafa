"""The security commands through the real `modelport` command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from modelport.core.config import Settings
from modelport.security.keys import KeyStore


def mp(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELPORT_")}
    env["MODELPORT_HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "modelport.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def test_api_key_lifecycle_is_audited(home: Path):
    r = mp(home, "auth", "create-key", "-r", "predictor", "-m", "iris*", "--expires", "30d")
    assert r.returncode == 0, r.stderr
    key = r.stdout.strip()
    assert key.startswith("mpk_")
    assert "cannot be shown again" in r.stderr
    store = KeyStore.from_settings(Settings(home=home))
    principal = store.verify(key)
    assert principal.models == ("iris*",)
    key_id = principal.subject.removeprefix("key:")

    r = mp(home, "auth", "create-key", "--role", "viewer", "--json")
    created = json.loads(r.stdout)
    assert created["role"] == "viewer"
    assert created["key"].startswith("mpk_")

    listing = json.loads(mp(home, "auth", "list-keys", "--json").stdout)
    assert {k["id"] for k in listing} == {key_id, created["id"]}
    assert all("key" not in k and "sha256" not in k for k in listing)
    table = mp(home, "auth", "list-keys").stdout
    assert key_id in table
    assert key not in table

    assert mp(home, "auth", "revoke-key", key_id).returncode == 0
    listing = json.loads(mp(home, "auth", "list-keys", "--json").stdout)
    assert {k["id"]: k["status"] for k in listing}[key_id] == "revoked"
    r = mp(home, "auth", "revoke-key", "0000000000000000")
    assert r.returncode == 3  # NotFound
    r = mp(home, "auth", "create-key", "--role", "root")
    assert r.returncode == 2
    assert "unknown role" in r.stderr

    audit = json.loads(mp(home, "audit", "show", "--json").stdout)
    assert [e["action"] for e in audit] == ["key.create", "key.create", "key.revoke"]
    assert key not in (home / "audit" / "audit.log").read_text()
    r = mp(home, "audit", "verify")
    assert r.returncode == 0, r.stderr
    assert "3 entries" in r.stdout


def test_audit_verify_fails_on_tampering(home: Path):
    for _ in range(3):
        mp(home, "auth", "create-key", "--role", "viewer")
    log = home / "audit" / "audit.log"
    lines = log.read_text().splitlines(keepends=True)
    log.write_text(lines[0] + lines[2])
    r = mp(home, "audit", "verify")
    assert r.returncode == 11  # IntegrityError
    assert "expected seq 2, found 3" in r.stderr
    report = json.loads(mp(home, "audit", "verify", "--json").stdout)
    assert report["ok"] is False


def test_signing_keys_sign_and_verify_an_export(home: Path, iris_onnx: Path, tmp_path: Path):
    assert mp(home, "register", str(iris_onnx), "--name", "iris").returncode == 0
    r = mp(home, "keys", "create", "release", "--json")
    assert r.returncode == 0, r.stderr
    key_id = json.loads(r.stdout)["key_id"]
    assert mp(home, "keys", "create", "release").returncode == 4  # AlreadyExists
    listed = json.loads(mp(home, "keys", "list", "--json").stdout)
    assert listed["trusted_key_ids"] == [key_id]

    out = tmp_path / "export"
    assert mp(home, "models", "export", "iris:1", "--out", str(out)).returncode == 0
    r = mp(home, "keys", "verify", str(out))
    assert r.returncode == 11
    assert "not signed" in r.stderr
    assert mp(home, "keys", "verify", str(out), "--allow-unsigned").returncode == 0
    r = mp(home, "keys", "sign", str(out), "--key", "release")
    assert r.returncode == 0, r.stderr
    r = mp(home, "keys", "verify", str(out))
    assert r.returncode == 0, r.stderr
    assert key_id in r.stdout
    onnx = next(out.glob("*.onnx"))
    onnx.write_bytes(onnx.read_bytes() + b"\0")
    r = mp(home, "keys", "verify", str(out))
    assert r.returncode == 11
    assert "does not match" in r.stderr

    master = tmp_path / "master.key"
    r = mp(home, "keys", "create-master-key", str(master))
    assert r.returncode == 0, r.stderr
    assert oct(master.stat().st_mode & 0o777) == "0o600"
    assert mp(home, "keys", "create-master-key", str(master)).returncode == 4
    actions = [e["action"] for e in json.loads(mp(home, "audit", "show", "--json").stdout)]
    assert actions == ["model.register", "signing-key.create", "version.sign", "master-key.create"]
