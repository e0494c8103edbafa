"""The load gate on real registry versions: signed, tampered, encrypted, wrong key."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from modelport.core.config import Settings
from modelport.core.errors import DecryptionError, SignatureError
from modelport.registry import Registry
from modelport.runtimes import get_format
from modelport.runtimes.base import Inspection
from modelport.security.audit import AuditLog
from modelport.security.encryption import LocalKeyProvider, generate_master_key
from modelport.security.loading import ENCRYPTION_KEY, LoadGuard, encrypt_files
from modelport.security.signing import Keyring, TrustStore

X = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], np.float32)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home")


@pytest.fixture
def registry(settings: Settings) -> Iterator[Registry]:
    reg = Registry.from_settings(settings)
    yield reg
    reg.close()


@pytest.fixture
def audit(settings: Settings) -> AuditLog:
    return AuditLog.from_settings(settings)


def register_encrypted(
    registry: Registry, model: Path, name: str, provider: LocalKeyProvider, work: Path
):
    insp = get_format("onnx").inspect(model)
    version = 1 + max((v.version for v in _versions(registry, name)), default=0)
    cipher, entry = encrypt_files(insp.files, name, version, provider, work)
    encrypted = Inspection(insp.format, insp.framework, insp.signature, cipher, insp.entry)
    return registry.register_inspection(encrypted, name, extra={ENCRYPTION_KEY: entry})


def _versions(registry: Registry, name: str):
    try:
        return registry.versions(name)
    except Exception:
        return []


def refusals(audit: AuditLog) -> list[str]:
    return [e.details["reason"] for e in audit.events() if e.action == "artifact.refused"]


def test_signed_version_passes_and_tampering_is_refused_and_audited(
    settings: Settings, registry: Registry, audit: AuditLog, iris_onnx: Path, tmp_path: Path
):
    v = registry.register(iris_onnx, "iris")
    key = Keyring.from_settings(settings).create("release")
    sig = key.sign(v.manifest())
    guard = LoadGuard(TrustStore({key.key_id: key.public}, require=True), audit=audit)
    ok = guard.check(v.manifest(), registry.open(v), sig.to_dict())
    assert ok.signature == sig
    assert not ok.encrypted

    copy = tmp_path / "copy"
    shutil.copytree(registry.open(v), copy)
    model = copy / v.entry
    model.write_bytes(model.read_bytes()[:-1] + b"\x00")
    with pytest.raises(SignatureError, match="does not match"):
        guard.check(v.manifest(), copy, sig)
    with pytest.raises(SignatureError, match="not signed"):
        guard.check(v.manifest(), registry.open(v), None)
    assert len(refusals(audit)) == 2
    assert audit.verify().ok


def test_encrypted_version_loads_from_memory_only(
    settings: Settings, registry: Registry, audit: AuditLog, iris_onnx: Path, tmp_path: Path
):
    provider = LocalKeyProvider(generate_master_key())
    v = register_encrypted(registry, iris_onnx, "secret", provider, tmp_path / "work")
    shutil.rmtree(tmp_path / "work")  # the registration's temporary ciphertext
    key = Keyring.from_settings(settings).create("release")
    sig = key.sign(v.manifest())
    guard = LoadGuard(TrustStore({key.key_id: key.public}, require=True), provider, audit)
    directory = registry.open(v)
    ok = guard.check(v.manifest(), directory, sig)
    assert ok.encrypted
    assert set(ok.files) == {v.entry}

    session = ort.InferenceSession(ok.files[v.entry], providers=["CPUExecutionProvider"])
    reference = ort.InferenceSession(str(iris_onnx), providers=["CPUExecutionProvider"])
    got = session.run(None, {"X": X})
    want = reference.run(None, {"X": X})
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)

    # no plaintext anywhere under the home (store, cache, everything)
    plain = iris_onnx.read_bytes()
    probes = [plain[i : i + 48] for i in range(0, len(plain) - 48, max(1, len(plain) // 8))]
    for f in settings.home.rglob("*"):
        if f.is_file():
            data = f.read_bytes()
            assert not any(p in data for p in probes), f


def test_wrong_or_missing_master_key_and_moved_ciphertext(
    settings: Settings, registry: Registry, audit: AuditLog, iris_onnx: Path, tmp_path: Path
):
    provider = LocalKeyProvider(generate_master_key())
    v = register_encrypted(registry, iris_onnx, "secret", provider, tmp_path / "w1")
    directory = registry.open(v)
    trust = TrustStore({})
    with pytest.raises(DecryptionError, match="not the configured"):
        LoadGuard(trust, LocalKeyProvider(generate_master_key()), audit).check(
            v.manifest(), directory
        )
    with pytest.raises(DecryptionError, match="no master key"):
        LoadGuard(trust, None, audit).check(v.manifest(), directory)
    # the same ciphertext registered under another model: bound to 'secret:1', refused
    cipher = {f.path: directory / f.path for f in v.files}
    insp = get_format("onnx").inspect(iris_onnx)
    moved = registry.register_inspection(
        Inspection(insp.format, insp.framework, insp.signature, cipher, insp.entry),
        "thief",
        extra={ENCRYPTION_KEY: v.extra[ENCRYPTION_KEY]},
    )
    with pytest.raises(DecryptionError, match="another model, version or file"):
        LoadGuard(trust, provider, audit).check(moved.manifest(), registry.open(moved))
    assert len(refusals(audit)) == 3
    # the right key still works: the refusals had no effect on the version
    assert LoadGuard(trust, provider).check(v.manifest(), directory).encrypted


def test_from_settings(settings: Settings, tmp_path: Path):
    from modelport.security.encryption import write_master_key_file

    path = tmp_path / "master.key"
    kid = write_master_key_file(path)
    s = settings.model_copy(update={"master_key_file": path, "require_signatures": True})
    guard = LoadGuard.from_settings(s)
    assert guard.keys is not None
    assert guard.keys.key_id == kid
    assert guard.trust.require
