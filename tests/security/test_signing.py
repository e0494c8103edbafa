"""Signed manifests: tampered bytes, added/removed files, swapped manifests, wrong keys."""

from __future__ import annotations

import json
import shutil
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from modelport.core.config import Settings
from modelport.core.errors import AlreadyExists, NotFound, SignatureError
from modelport.registry import Registry
from modelport.registry.records import canonical_json as registry_canonical_json
from modelport.security.signing import (
    SIGNATURE_FILE,
    Keyring,
    Signature,
    TrustStore,
    canonical_json,
    key_id_of,
    manifest_digest,
)
from modelport.security.verify import check_bytes, sign_directory, verify_directory


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home")


@pytest.fixture
def registry(settings: Settings, iris_onnx: Path, iris_onnx_b: Path) -> Iterator[Registry]:
    reg = Registry.from_settings(settings)
    reg.register(iris_onnx, "iris")
    reg.register(iris_onnx_b, "iris")
    reg.register(iris_onnx, "other")
    yield reg
    reg.close()


@pytest.fixture
def ring(settings: Settings) -> Keyring:
    return Keyring.from_settings(settings)


def exported(registry: Registry, ref: str, dest: Path) -> Path:
    return registry.export(ref, dest)


def test_canonical_json_matches_the_registry(registry: Registry):
    m = registry.get("iris:1").manifest()
    assert canonical_json(m) == registry_canonical_json(m)
    assert manifest_digest(m) == registry.get("iris:1").manifest_digest


def test_keyring_create_list_load(ring: Keyring):
    key = ring.create("release")
    assert stat.S_IMODE((ring.directory / "release.key").stat().st_mode) == 0o600
    assert b"PRIVATE" not in (ring.directory / "release.pub").read_bytes()
    infos = ring.list()
    assert [(i.name, i.key_id) for i in infos] == [("release", key.key_id)]
    assert ring.load("release").key_id == key.key_id
    assert key_id_of(key.public) == key.key_id
    with pytest.raises(AlreadyExists):
        ring.create("release")
    with pytest.raises(NotFound):
        ring.load("nope")
    with pytest.raises(Exception, match="invalid key name"):
        ring.create("../evil")


def test_sign_and_verify_a_version(registry: Registry, ring: Keyring, tmp_path: Path):
    key = ring.create("release")
    root = exported(registry, "iris:1", tmp_path / "v1")
    sig = sign_directory(root, key)
    assert (root / SIGNATURE_FILE).exists()
    trust = TrustStore(ring.public_keys(), require=True)
    assert verify_directory(root, trust) == sig
    assert sig.name == "iris"
    assert sig.version == 1
    assert Signature.from_dict(sig.to_dict()) == sig


@pytest.fixture
def signed(registry: Registry, ring: Keyring, tmp_path: Path) -> tuple[Path, TrustStore]:
    root = exported(registry, "iris:1", tmp_path / "v1")
    sign_directory(root, ring.create("release"))
    return root, TrustStore(ring.public_keys(), require=True)


def test_flipped_byte_is_refused(signed: tuple[Path, TrustStore]):
    root, trust = signed
    model = root / "model.onnx" if (root / "model.onnx").exists() else next(root.glob("*.onnx"))
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0x01
    model.write_bytes(bytes(data))
    with pytest.raises(SignatureError, match="does not match its manifest digest"):
        verify_directory(root, trust)


def test_added_removed_renamed_and_linked_files_are_refused(
    signed: tuple[Path, TrustStore], tmp_path: Path
):
    root, trust = signed
    entry = next(root.glob("*.onnx"))
    pristine = tmp_path / "pristine"
    shutil.copytree(root, pristine)

    (root / "extra.py").write_text("import os")
    with pytest.raises(SignatureError, match="not in the manifest"):
        verify_directory(root, trust)
    (root / "extra.py").unlink()

    entry.rename(root / "renamed.onnx")
    with pytest.raises(SignatureError, match="not in the manifest"):
        verify_directory(root, trust)
    (root / "renamed.onnx").unlink()
    with pytest.raises(SignatureError, match="missing"):
        verify_directory(root, trust)

    (root / entry.name).symlink_to(pristine / entry.name)
    with pytest.raises(SignatureError, match="is a link"):
        verify_directory(root, trust)


def test_edited_manifest_is_refused(signed: tuple[Path, TrustStore]):
    root, trust = signed
    doc = json.loads((root / "modelport.json").read_bytes())
    doc["trusted"] = True
    doc.pop("manifest_digest")
    (root / "modelport.json").write_bytes(canonical_json(doc))
    with pytest.raises(SignatureError, match="manifest was changed after signing"):
        verify_directory(root, trust)


def test_swapped_manifest_and_mix_and_match_signature(
    signed: tuple[Path, TrustStore], registry: Registry, tmp_path: Path
):
    root, trust = signed
    v2 = exported(registry, "iris:2", tmp_path / "v2")
    other = exported(registry, "other:1", tmp_path / "other")
    # v2's files and manifest with v1's signature: a signature for another version
    shutil.copy(root / SIGNATURE_FILE, v2 / SIGNATURE_FILE)
    with pytest.raises(SignatureError, match="belongs to iris:1"):
        verify_directory(v2, trust)
    # same bytes registered under another model name: still not this model's signature
    shutil.copy(root / SIGNATURE_FILE, other / SIGNATURE_FILE)
    with pytest.raises(SignatureError, match="belongs to iris:1"):
        verify_directory(other, trust)
    # v1's signature kept, v2's manifest swapped in (consistent with v2's files? no: v1's)
    shutil.copy(v2 / "modelport.json", root / "modelport.json")
    with pytest.raises(SignatureError):
        verify_directory(root, trust)


def test_wrong_untrusted_and_forged_keys(
    registry: Registry, ring: Keyring, settings: Settings, tmp_path: Path
):
    trusted = ring.create("release")
    rogue = Keyring(tmp_path / "rogue").create("release")
    root = exported(registry, "iris:1", tmp_path / "v1")
    sign_directory(root, rogue)
    trust = TrustStore({trusted.key_id: trusted.public}, require=True)
    with pytest.raises(SignatureError, match="not trusted"):
        verify_directory(root, trust)
    # a rogue signature that claims the trusted key id
    doc = json.loads((root / SIGNATURE_FILE).read_bytes())
    doc["key_id"] = trusted.key_id
    (root / SIGNATURE_FILE).write_bytes(canonical_json(doc))
    with pytest.raises(SignatureError, match="signature verification failed"):
        verify_directory(root, trust)
    (root / SIGNATURE_FILE).write_bytes(b"{garbage")
    with pytest.raises(SignatureError, match="malformed"):
        verify_directory(root, trust)


def test_unsigned_is_refused_only_when_required(registry: Registry, tmp_path: Path):
    root = exported(registry, "iris:1", tmp_path / "v1")
    assert verify_directory(root, TrustStore({}, require=False)) is None
    with pytest.raises(SignatureError, match="not signed and signatures are required"):
        verify_directory(root, TrustStore({}, require=True))
    # files are still checked for an unsigned version
    (root / "extra.bin").write_bytes(b"x")
    with pytest.raises(SignatureError):
        verify_directory(root, TrustStore({}, require=False))


def test_expiring_signature(registry: Registry, ring: Keyring):
    key = ring.create("release")
    manifest = registry.get("iris:1").manifest()
    sig = key.sign(manifest, expires_in=timedelta(days=1))
    trust = TrustStore(ring.public_keys())
    assert trust.verify(manifest, sig) == sig
    later = datetime.now(UTC) + timedelta(days=2)
    with pytest.raises(SignatureError, match="expired"):
        trust.verify(manifest, sig, now=later)


def test_trust_store_from_settings(settings: Settings, tmp_path: Path, registry: Registry):
    own = Keyring.from_settings(settings).create("own")
    partner = Keyring(tmp_path / "partner").create("partner")
    s = settings.model_copy(
        update={
            "trusted_public_keys": [tmp_path / "partner" / "partner.pub"],
            "require_signatures": True,
        }
    )
    trust = TrustStore.from_settings(s)
    assert set(trust.keys) == {own.key_id, partner.key_id}
    assert trust.require
    manifest = registry.get("iris:1").manifest()
    trust.verify(manifest, partner.sign(manifest))


def test_check_bytes_for_in_memory_files(registry: Registry):
    v = registry.get("iris:1")
    files = {f.path: registry.read_file(v, f.path) for f in v.files}
    check_bytes(v.manifest(), files)
    bad = {k: b + b"\0" for k, b in files.items()}
    with pytest.raises(SignatureError):
        check_bytes(v.manifest(), bad)
    with pytest.raises(SignatureError, match="file set differs"):
        check_bytes(v.manifest(), {**files, "evil.py": b""})
