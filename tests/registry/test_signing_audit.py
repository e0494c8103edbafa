"""Versions signed at registration, verified before serving; registry events audited."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from modelport.core.config import Settings
from modelport.registry import Registry
from modelport.security.audit import AuditLog
from modelport.security.signing import Keyring
from tests.conftest import train_iris_onnx

BODY = {"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [5, 3, 1, 0]}]}


@pytest.fixture
def signed_home(tmp_path: Path) -> Settings:
    settings = Settings(home=tmp_path / "home")
    Keyring.from_settings(settings).create("release")
    return settings.model_copy(update={"signing_key": "release"})


def test_registration_signs_in_the_same_transaction_and_export_carries_it(
    signed_home: Settings, tmp_path: Path
):
    reg = Registry.from_settings(signed_home)
    v = reg.register(train_iris_onnx(tmp_path / "a.onnx"), "iris")
    doc = reg.signature(v)
    assert doc is not None
    assert doc["manifest_digest"] == v.manifest_digest
    assert (doc["name"], doc["version"]) == ("iris", 1)
    out = reg.export("iris:1", tmp_path / "out")
    assert json.loads((out / "modelport.sig").read_text()) == doc
    reg.delete("iris:1")
    with reg.engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM signatures")).scalar() == 0
    reg.close()


def test_registry_events_are_audited_in_a_verifiable_chain(tmp_path: Path):
    settings = Settings(home=tmp_path / "home")
    reg = Registry.from_settings(settings)
    reg.register(train_iris_onnx(tmp_path / "a.onnx"), "iris")
    reg.set_alias("iris", "production", 1)
    reg.delete_alias("iris", "production")
    reg.delete("iris", all_versions=True)
    reg.close()
    log = AuditLog.from_settings(settings)
    actions = [(e.action, e.target) for e in log.events()]
    assert actions == [
        ("model.register", "iris:1"),
        ("alias.set", "iris@production"),
        ("alias.delete", "iris@production"),
        ("model.delete", "iris"),
    ]
    assert log.verify().ok


def test_server_refuses_unsigned_and_tampered_versions_when_signatures_are_required(
    signed_home: Settings, tmp_path: Path
):
    from tests.serving.conftest import start_thread_server

    unsigned = signed_home.model_copy(update={"signing_key": None})
    reg = Registry.from_settings(unsigned)
    reg.register(train_iris_onnx(tmp_path / "u.onnx", 2), "unsigned")
    reg.close()
    reg = Registry.from_settings(signed_home)
    reg.register(train_iris_onnx(tmp_path / "a.onnx"), "iris")
    reg.register(train_iris_onnx(tmp_path / "b.onnx", 1), "tampered")
    with reg.engine.begin() as c:  # the manifest no longer matches what was signed
        c.execute(
            text(
                "UPDATE versions SET description = 'swapped' WHERE id = "
                "(SELECT v.id FROM versions v JOIN models m ON v.model_id = m.id "
                "WHERE m.name = 'tampered')"
            )
        )
    reg.close()
    strict = signed_home.model_copy(update={"require_signatures": True})
    thread, served = start_thread_server(strict, models=["iris", "unsigned", "tampered"])
    try:
        assert httpx.post(served.url + "/v2/models/iris/infer", json=BODY).status_code == 200
        index = {
            m["name"]: m for m in httpx.post(served.url + "/v2/repository/index", json={}).json()
        }
        assert index["iris"]["state"] == "READY"
        for name in ("unsigned", "tampered"):
            assert index[name]["state"] == "UNAVAILABLE"
            assert "signature" in index[name]["reason"].lower()
            r = httpx.post(served.url + f"/v2/models/{name}/infer", json=BODY)
            assert r.status_code == 503
    finally:
        thread.stop()
    refused = [e for e in AuditLog.from_settings(strict).events() if e.action == "artifact.refused"]
    assert {e.target for e in refused} >= {"unsigned:1", "tampered:1"}
