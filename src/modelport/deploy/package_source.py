"""Serving straight from a package: a read-only version source over its contents.

``modelport serve --package FILE`` extracts the package safely, verifies every digest
(:func:`~modelport.deploy.package.open_package`), and hands the model manager this
source instead of a registry. It answers the few questions the manager asks — which
version a reference names, the aliases, where the files are, the signature — from
the package alone, so a machine needs only modelport and the package file.
"""

from __future__ import annotations

import builtins
import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from modelport.core.errors import NotFound
from modelport.core.types import ModelRef, ModelSignature
from modelport.deploy.package import PackageContents, PackagedModel, open_package
from modelport.registry.records import (
    SIGNATURE_FILE,
    AliasInfo,
    FileEntry,
    Lineage,
    ModelSummary,
    ModelVersion,
)


def version_from_manifest(manifest: dict[str, Any], aliases: tuple[str, ...]) -> ModelVersion:
    """Rebuild the immutable record of a version from its ``modelport.json``."""
    created = datetime.fromisoformat(str(manifest["created_at"]))
    record = ModelVersion(
        name=str(manifest["name"]),
        version=int(manifest["version"]),
        format=str(manifest["format"]),
        framework=str(manifest["framework"]),
        entry=str(manifest["entry"]),
        files=tuple(
            FileEntry(str(f["path"]), str(f["digest"]), int(f["size"])) for f in manifest["files"]
        ),
        signature=ModelSignature.from_dict(manifest["signature"]),
        description=str(manifest.get("description", "")),
        tags=dict(manifest.get("tags", {})),
        metrics=dict(manifest.get("metrics", {})),
        lineage=Lineage.from_dict(manifest.get("lineage", {})),
        extra=dict(manifest.get("extra", {})),
        trusted=bool(manifest.get("trusted", False)),
        created_at=created if created.tzinfo else created.replace(tzinfo=UTC),
        aliases=aliases,
    )
    return replace(record, manifest_digest=record.compute_manifest_digest())


class PackagedVersions:
    """The registry questions the model manager asks, answered from a package."""

    def __init__(self, contents: PackageContents) -> None:
        self.contents = contents
        self._records = {
            (m.name, m.version): version_from_manifest(m.manifest, m.aliases)
            for m in contents.models
        }

    def _model(self, record: ModelVersion) -> PackagedModel:
        return self.contents.resolve(record.ref)

    def get(self, ref: str | ModelRef) -> ModelVersion:
        """The packaged version ``ref`` names (``name``, ``name:N``, ``name@alias``)."""
        packaged = self.contents.resolve(str(ref))
        return self._records[(packaged.name, packaged.version)]

    def aliases(self, name: str | None = None) -> builtins.list[AliasInfo]:
        """Aliases as they were when the package was built."""
        now = datetime.now(UTC)
        out = [
            AliasInfo(m.name, alias, m.version, now)
            for m in self.contents.models
            for alias in m.aliases
            if name is None or m.name == name
        ]
        if name is not None and not any(m.name == name for m in self.contents.models):
            raise NotFound(f"the package has no model {name!r}")
        return out

    def list(self) -> builtins.list[ModelSummary]:
        """Every model in the package with its newest version."""
        names = sorted({m.name for m in self.contents.models})
        out = []
        for name in names:
            versions = [m for m in self.contents.models if m.name == name]
            aliases = {a: m.version for m in versions for a in m.aliases}
            newest = max(m.version for m in versions)
            created = self._records[(name, newest)].created_at
            out.append(ModelSummary(name, newest, len(versions), aliases, created))
        return out

    def open(self, ref: str | ModelRef | ModelVersion) -> Path:
        """The verified directory of a packaged version."""
        record = ref if isinstance(ref, ModelVersion) else self.get(ref)
        return self._model(record).directory

    def signature(self, ref: str | ModelRef | ModelVersion) -> dict[str, Any] | None:
        """The signature packaged with the version (``modelport.sig``), if any."""
        path = self.open(ref) / SIGNATURE_FILE
        if not path.is_file():
            return None
        document: dict[str, Any] = json.loads(path.read_bytes())
        return document

    def close(self) -> None:
        """Nothing to release: the package directory belongs to the caller."""


def package_source(directory: str) -> PackagedVersions:
    """Verify an extracted package in place and serve from it (picklable for workers).

    Example:
        >>> source = functools.partial(package_source, extracted_dir)  # doctest: +SKIP
        >>> serve_forever(settings, cfg, source=source)                 # doctest: +SKIP
    """
    return PackagedVersions(open_package(directory))
