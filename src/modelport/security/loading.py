"""The gate in front of every model load: verify, decrypt into memory, or refuse and record.

A loader (the server's model manager, the edge agent) hands :meth:`LoadGuard.check`
the version's manifest, the directory the registry materialised, and the version's
signature if it has one. Before any runtime touches a byte:

1. the signature is verified against the trusted keys (required or not, per settings);
2. every file is checked against the manifest (no file added, removed or changed);
3. files of an encrypted version are decrypted *into memory* with the master key, each
   bound to the model name, version and file path, and checked against the plaintext
   digests the (signed) manifest records.

A failure raises :class:`SignatureError` or :class:`DecryptionError` (the model stays
unavailable with that reason; other models are unaffected) and writes an
``artifact.refused`` audit entry. Encrypted versions come back as bytes per file: the
runtime loads from memory, and plaintext is never written to disk.

Registration uses :func:`encrypt_files` to turn plaintext files into ciphertext files
plus the manifest ``extra`` entry that describes them.

Example:
    >>> guard = LoadGuard.from_settings(settings, audit=audit)              # doctest: +SKIP
    >>> ok = guard.check(version.manifest(), registry.open(version), sig)  # doctest: +SKIP
    >>> session = ort.InferenceSession(ok.files[version.entry])            # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelport.core.config import Settings
from modelport.core.errors import DecryptionError, IntegrityError
from modelport.security.audit import AuditLog
from modelport.security.encryption import (
    ALGORITHM,
    Context,
    KeyProvider,
    decrypt,
    encrypt_file,
    key_provider_from_settings,
)
from modelport.security.signing import Signature, TrustStore
from modelport.security.verify import check_files

#: The key of the manifest ``extra`` entry that marks and describes an encrypted version.
ENCRYPTION_KEY = "encryption"


@dataclass(frozen=True, slots=True)
class VerifiedArtifact:
    """What passed the gate: the valid signature (if any) and decrypted files (if any)."""

    signature: Signature | None = None
    files: dict[str, bytes] = field(default_factory=dict)

    @property
    def encrypted(self) -> bool:
        return bool(self.files)


def encrypt_files(
    files: Mapping[str, Path],
    name: str,
    version: int,
    provider: KeyProvider,
    workdir: Path,
) -> tuple[dict[str, Path], dict[str, Any]]:
    """Encrypt a version's files into ``workdir``; return the new files and ``extra`` entry.

    Register the returned files instead of the plaintext ones and merge
    ``{ENCRYPTION_KEY: entry}`` into the version's ``extra`` so the signed manifest
    records the plaintext digests. ``version`` must be the number the version will get.
    """
    out: dict[str, Path] = {}
    plaintext: dict[str, dict[str, Any]] = {}
    workdir.mkdir(parents=True, exist_ok=True)
    for i, (rel, src) in enumerate(sorted(files.items())):
        h, size = hashlib.sha256(), 0
        with open(src, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
                size += len(chunk)
        dst = workdir / f"{i:04d}.enc"
        encrypt_file(src, dst, provider, Context(name, version, rel))
        out[rel] = dst
        plaintext[rel] = {"digest": h.hexdigest(), "size": size}
    entry = {"alg": ALGORITHM, "kid": provider.key_id, "plaintext": plaintext}
    return out, entry


class LoadGuard:
    """Signature, file and decryption checks before a version is loaded."""

    def __init__(
        self,
        trust: TrustStore,
        keys: KeyProvider | None = None,
        audit: AuditLog | None = None,
        actor: str = "system:loader",
    ) -> None:
        self.trust = trust
        self.keys = keys
        self.audit = audit
        self.actor = actor

    @classmethod
    def from_settings(cls, settings: Settings, *, audit: AuditLog | None = None) -> LoadGuard:
        """Trusted keys, signature requirement and master key from the settings."""
        return cls(TrustStore.from_settings(settings), key_provider_from_settings(settings), audit)

    def check(
        self,
        manifest: Mapping[str, Any],
        directory: Path,
        signature: Signature | Mapping[str, Any] | None = None,
    ) -> VerifiedArtifact:
        """Verify (and decrypt) a materialised version, or raise and record why not."""
        ref = f"{manifest.get('name')}:{manifest.get('version')}"
        try:
            sig = Signature.from_dict(signature) if isinstance(signature, Mapping) else signature
            valid = self.trust.verify(manifest, sig)
            check_files(manifest, directory)
            files = self._decrypt(manifest, directory)
        except IntegrityError as e:
            if self.audit is not None:
                self.audit.append(
                    self.actor, "artifact.refused", ref, "refused", {"reason": e.message}
                )
            raise
        return VerifiedArtifact(valid, files)

    def _decrypt(self, manifest: Mapping[str, Any], directory: Path) -> dict[str, bytes]:
        extra = manifest.get("extra") or {}
        info = extra.get(ENCRYPTION_KEY) if isinstance(extra, Mapping) else None
        if info is None:
            return {}
        ref = f"{manifest.get('name')}:{manifest.get('version')}"
        if self.keys is None:
            raise DecryptionError(f"{ref} is encrypted and no master key is configured")
        try:
            plaintext: Mapping[str, Mapping[str, Any]] = info["plaintext"]
            name, version = str(manifest["name"]), int(manifest["version"])
            stored = {str(f["path"]) for f in manifest["files"]}
        except (KeyError, TypeError, ValueError) as e:
            raise DecryptionError(f"{ref}: malformed encryption metadata") from e
        if set(plaintext) != stored:
            raise DecryptionError(f"{ref}: encryption metadata does not cover the version's files")
        out: dict[str, bytes] = {}
        for rel, expected in plaintext.items():
            data = decrypt((directory / rel).read_bytes(), self.keys, Context(name, version, rel))
            if len(data) != expected.get("size") or hashlib.sha256(
                data
            ).hexdigest() != expected.get("digest"):
                raise DecryptionError(f"{ref}: decrypted {rel!r} does not match its digest")
            out[rel] = data
        return out
