"""What the registry hands out: immutable records of models, versions and aliases.

A version's *manifest* is the canonical JSON of everything that defines it (files with
digests, signature, lineage, …); its SHA-256 is stored with the version, so a change
to any recorded field is detectable (``modelport registry check``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from modelport.core.types import ModelRef, ModelSignature

MANIFEST_SCHEMA = "modelport.manifest/v1"
MANIFEST_FILE = "modelport.json"
SIGNATURE_FILE = "modelport.sig"


def as_utc(dt: datetime) -> datetime:
    """Databases differ in returning aware or naive timestamps; the registry stores UTC."""
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One file of a version: its name inside the version, SHA-256 and size in bytes."""

    path: str
    digest: str
    size: int

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "digest": self.digest, "size": self.size}


@dataclass(frozen=True, slots=True)
class Lineage:
    """Where a version came from: its parent, the operation, its parameters and tools."""

    operation: str = "register"
    parent: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    tool_versions: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "operation": self.operation,
            "parent": self.parent,
            "params": self.params,
            "tool_versions": self.tool_versions,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Lineage:
        return cls(
            operation=str(d.get("operation", "register")),
            parent=d.get("parent"),
            params=dict(d.get("params", {})),
            tool_versions=dict(d.get("tool_versions", {})),
        )


@dataclass(frozen=True, slots=True)
class ModelVersion:
    """An immutable registered version.

    Example:
        >>> v = registry.get("iris@production")   # doctest: +SKIP
        >>> v.ref, v.signature.inputs[0].shape    # doctest: +SKIP
        ('iris:3', (-1, 4))
    """

    name: str
    version: int
    format: str
    framework: str
    entry: str
    files: tuple[FileEntry, ...]
    signature: ModelSignature
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    lineage: Lineage = field(default_factory=Lineage)
    extra: dict[str, Any] = field(default_factory=dict)
    trusted: bool = False
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    manifest_digest: str = ""
    aliases: tuple[str, ...] = ()

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"

    @property
    def model_ref(self) -> ModelRef:
        return ModelRef(self.name, version=self.version)

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    def manifest(self) -> dict[str, Any]:
        """The canonical description of this version (aliases excluded: they move)."""
        return {
            "schema": MANIFEST_SCHEMA,
            "name": self.name,
            "version": self.version,
            "format": self.format,
            "framework": self.framework,
            "entry": self.entry,
            "files": [f.to_dict() for f in self.files],
            "signature": self.signature.to_dict(),
            "description": self.description,
            "tags": self.tags,
            "metrics": self.metrics,
            "lineage": self.lineage.to_dict(),
            "extra": self.extra,
            "trusted": self.trusted,
            "created_at": as_utc(self.created_at).isoformat(),
        }

    def compute_manifest_digest(self) -> str:
        return manifest_digest(self.manifest())

    def to_dict(self) -> dict[str, Any]:
        """The manifest plus the moving parts (aliases), for ``--json`` output."""
        d = self.manifest()
        d["ref"] = self.ref
        d["aliases"] = list(self.aliases)
        d["manifest_digest"] = self.manifest_digest
        d["size"] = self.size
        return d


def canonical_json(data: dict[str, Any]) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def manifest_digest(manifest: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(manifest)).hexdigest()


@dataclass(frozen=True, slots=True)
class ModelSummary:
    name: str
    latest_version: int | None
    version_count: int
    aliases: dict[str, int]
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "latest_version": self.latest_version,
            "versions": self.version_count,
            "aliases": self.aliases,
            "created_at": as_utc(self.created_at).isoformat(),
        }


@dataclass(frozen=True, slots=True)
class AliasInfo:
    model: str
    alias: str
    version: int
    updated_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "alias": self.alias,
            "version": self.version,
            "updated_at": as_utc(self.updated_at).isoformat(),
        }


@dataclass(frozen=True, slots=True)
class AliasEvent:
    model: str
    alias: str
    from_version: int | None
    to_version: int | None
    at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "alias": self.alias,
            "from_version": self.from_version,
            "to_version": self.to_version,
            "at": as_utc(self.at).isoformat(),
        }


@dataclass(slots=True)
class CheckReport:
    """Result of ``Registry.check``: problems are integrity failures, the rest is info."""

    versions_checked: int = 0
    blobs_checked: int = 0
    problems: list[str] = field(default_factory=list)
    unreferenced_blobs: list[str] = field(default_factory=list)
    unreferenced_bytes: int = 0
    temp_files: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "versions_checked": self.versions_checked,
            "blobs_checked": self.blobs_checked,
            "problems": self.problems,
            "unreferenced_blobs": len(self.unreferenced_blobs),
            "unreferenced_bytes": self.unreferenced_bytes,
        }


@dataclass(frozen=True, slots=True)
class GcReport:
    blobs_removed: int
    bytes_freed: int
    temp_files_removed: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "blobs_removed": self.blobs_removed,
            "bytes_freed": self.bytes_freed,
            "temp_files_removed": self.temp_files_removed,
        }
