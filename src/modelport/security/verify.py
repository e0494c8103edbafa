"""Checking a version's files against its signed manifest before anything loads them.

A signature proves who approved a manifest; these functions prove the bytes at hand are
the ones the manifest lists: the same set of files (none added, removed or renamed),
each with the recorded size and SHA-256, and no links. Loaders call
:func:`verify_directory` on a materialised version (``modelport.json`` plus, when
signed, ``modelport.sig``) or :func:`check_bytes` on files decrypted into memory.

Example:
    >>> trust = TrustStore.from_settings(settings)            # doctest: +SKIP
    >>> verify_directory(registry.open("iris:3"), trust)       # doctest: +SKIP
    Signature(name='iris', version=3, ...)
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from modelport.core.errors import SignatureError
from modelport.security.signing import (
    SIGNATURE_FILE,
    Signature,
    SigningKey,
    TrustStore,
    canonical_json,
    manifest_digest,
)

MANIFEST_FILE = "modelport.json"
_RESERVED = frozenset({MANIFEST_FILE, SIGNATURE_FILE})


def _expected(manifest: Mapping[str, Any]) -> dict[str, tuple[str, int]]:
    ref = f"{manifest.get('name')}:{manifest.get('version')}"
    try:
        return {str(f["path"]): (str(f["digest"]), int(f["size"])) for f in manifest["files"]}
    except (KeyError, TypeError, ValueError) as e:
        raise SignatureError(f"{ref}: the manifest's file list is malformed") from e


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def check_files(manifest: Mapping[str, Any], root: Path) -> None:
    """Every file under ``root`` is listed with its digest and size, and nothing else is.

    ``modelport.json`` and ``modelport.sig`` are ignored; links are refused.
    """
    ref = f"{manifest.get('name')}:{manifest.get('version')}"
    expected = _expected(manifest)
    found: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            if p.is_symlink():
                raise SignatureError(f"{ref}: {p.relative_to(root)} is a link")
        for name in filenames:
            rel = (Path(dirpath) / name).relative_to(root).as_posix()
            if rel in _RESERVED:
                continue
            found.add(rel)
            if rel not in expected:
                raise SignatureError(f"{ref}: file {rel!r} is not in the manifest")
            digest, size = expected[rel]
            p = root / rel
            if p.stat().st_size != size or _sha256(p) != digest:
                raise SignatureError(f"{ref}: file {rel!r} does not match its manifest digest")
    missing = sorted(set(expected) - found)
    if missing:
        raise SignatureError(f"{ref}: file {missing[0]!r} of the manifest is missing")


def check_bytes(manifest: Mapping[str, Any], files: Mapping[str, bytes]) -> None:
    """Like :func:`check_files`, for files held in memory (e.g. just decrypted).

    Example:
        >>> check_bytes({"name": "m", "version": 1, "files": []}, {})
    """
    ref = f"{manifest.get('name')}:{manifest.get('version')}"
    expected = _expected(manifest)
    if set(files) != set(expected):
        extra = sorted(set(files) ^ set(expected))
        raise SignatureError(f"{ref}: file set differs from the manifest ({extra[0]!r})")
    for rel, data in files.items():
        digest, size = expected[rel]
        if len(data) != size or hashlib.sha256(data).hexdigest() != digest:
            raise SignatureError(f"{ref}: file {rel!r} does not match its manifest digest")


def read_manifest(root: Path) -> dict[str, Any]:
    """The manifest of a materialised version (without its recorded digest field).

    If ``modelport.json`` records a ``manifest_digest``, it must match the content.
    """
    try:
        doc = json.loads((root / MANIFEST_FILE).read_bytes())
    except FileNotFoundError:
        raise SignatureError(f"{root.name}: no {MANIFEST_FILE} to verify against") from None
    except ValueError as e:
        raise SignatureError(f"{root.name}: {MANIFEST_FILE} is not valid JSON") from e
    if not isinstance(doc, dict):
        raise SignatureError(f"{root.name}: {MANIFEST_FILE} is not an object")
    recorded = doc.pop("manifest_digest", None)
    if recorded is not None and recorded != manifest_digest(doc):
        raise SignatureError(f"{root.name}: {MANIFEST_FILE} does not match its recorded digest")
    return doc


def read_signature(root: Path) -> Signature | None:
    """The detached signature next to the manifest, or ``None`` if there is none."""
    try:
        return Signature.from_json((root / SIGNATURE_FILE).read_bytes())
    except FileNotFoundError:
        return None


def verify_directory(root: Path, trust: TrustStore) -> Signature | None:
    """Verify a materialised version: signature (per ``trust``), then every file.

    Returns the valid signature, or ``None`` for an unsigned version when signatures
    are not required. Raises :class:`SignatureError` otherwise.
    """
    manifest = read_manifest(root)
    signature = trust.verify(manifest, read_signature(root))
    check_files(manifest, root)
    return signature


def sign_directory(root: Path, key: SigningKey) -> Signature:
    """Check a materialised version's files, then write its ``modelport.sig``."""
    manifest = read_manifest(root)
    check_files(manifest, root)
    signature = key.sign(manifest)
    (root / SIGNATURE_FILE).write_bytes(canonical_json(signature.to_dict()) + b"\n")
    return signature
