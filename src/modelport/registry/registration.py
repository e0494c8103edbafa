"""Registration: how files and live objects become immutable, numbered versions.

This half of :class:`~modelport.registry.service.Registry` (mixed into it) checks the
model first (format detection from content, the format's own checks, the signature —
no side effect on bad input), stores every file as a content-addressed blob, then
commits the version row, its file rows and its signature in one transaction. A crash
before that commit leaves at most unreferenced blobs; a crash after it leaves a
complete version. Each registration is appended to the audit log when one is set.
"""

from __future__ import annotations

import abc
import contextlib
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as pkg_version
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from modelport.core.errors import FailedPrecondition, InvalidArgument, NotFound, UnsupportedFormat
from modelport.core.types import validate_name
from modelport.registry.db import FileRow, ModelRow, SignatureRow, VersionRow
from modelport.registry.records import (
    MANIFEST_FILE,
    SIGNATURE_FILE,
    FileEntry,
    Lineage,
    ModelVersion,
)
from modelport.registry.store import ArtifactStore, Progress, sha256_file
from modelport.runtimes import (
    Inspection,
    ModelFormat,
    default_input_name,
    formats,
    formats_for,
    get_format,
    supported,
)
from modelport.runtimes._pickles import describe_file
from modelport.runtimes.live import save_object
from modelport.runtimes.sample import (
    MAX_STORED_SAMPLE_BYTES,
    SAMPLE_FILE,
    align_sample,
    as_sample,
    sample_nbytes,
    save_sample,
)

Step = Callable[[str], None]
#: manifest → signature document (see modelport.security.signing)
Signer = Callable[[dict[str, Any]], dict[str, Any]]
#: (action, target, details) → None, appended to the audit log
Auditor = Callable[[str, str, dict[str, Any]], None]
#: Framework → the packages whose versions a registration records in its lineage.
_PACKAGES = {
    "onnx": ("onnx",),
    "sklearn": ("scikit-learn", "skops"),
    "pytorch": ("torch",),
    "lightgbm": ("lightgbm",),
    "xgboost": ("xgboost",),
}


class RegistrationMixin(abc.ABC):
    """register, register_object, register_inspection and detect, for Registry."""

    store: ArtifactStore
    _on_step: Step
    _signer: Signer | None
    _audit: Auditor | None
    _key_provider: Any  # modelport.security.encryption.KeyProvider | None

    @abc.abstractmethod
    def _write(self) -> contextlib.AbstractContextManager[Session]:
        """A transaction holding the registry write lock (Registry provides it)."""

    @abc.abstractmethod
    def _collect(self, digests: list[str]) -> int:
        """Remove blobs no version references (Registry provides it)."""

    def detect(self, path: Path, framework: str | None = None) -> ModelFormat:
        """The format of the model at ``path``, judged by its content.

        ``framework`` narrows the choice to one format (``torchscript``) or to the formats
        of one framework (``pytorch``, ``sklearn``); if none of them recognises the file,
        the first is returned so its inspection can say what is wrong.
        """
        if not path.exists():
            raise NotFound(f"no such file or directory: {path}")
        if framework:
            candidates = formats_for(framework)
            return next((f for f in candidates if f.sniff(path)), candidates[0])
        for fmt in formats():
            if fmt.sniff(path):
                return fmt
        kind = "directory" if path.is_dir() else "file"
        raise UnsupportedFormat(
            f"{path.name}: no supported model format recognised in this {kind} "
            f"({describe_file(path)}); supported: {supported()} "
            "(pass --framework to choose one)"
        )

    def register(
        self,
        path: str | os.PathLike[str],
        name: str,
        *,
        framework: str | None = None,
        sample_input: Any = None,
        trust: bool = False,
        description: str = "",
        tags: Mapping[str, str] | None = None,
        metrics: Mapping[str, float] | None = None,
        lineage: Lineage | None = None,
        trusted: bool = False,
        extra: Mapping[str, Any] | None = None,
        progress: Progress | None = None,
        encrypt: bool = False,
    ) -> ModelVersion:
        """Register the model file or directory at ``path`` as the next version of ``name``.

        The format is detected from the content (``framework`` overrides), checked and
        its signature read before anything is written. Formats that carry no signature
        (scikit-learn, PyTorch, boosters) derive it by running ``sample_input`` (an
        array, a dict of named arrays, or a ``.npy``/``.npz`` path), which is stored with
        the version as ``sample_input.npz``. Files that run code when loaded (pickles,
        python models) are refused unless ``trust`` (``trusted`` is the same flag); the
        version then records ``trusted=True``.

        Example:
            >>> reg.register("pipe.skops", "cancer", sample_input=X[:10]).ref  # doctest: +SKIP
            'cancer:1'
        """
        validate_name(name)
        src = Path(path)
        if not src.exists():
            raise NotFound(f"no such file or directory: {src}")
        fmt = self.detect(src, framework)
        allow = trust or trusted
        sample = None
        if sample_input is not None:
            sample = as_sample(sample_input, default_input_name(fmt))
        inspection = fmt.inspect(src, sample_input=sample, trust=allow)
        if sample is not None:  # stored for parity checks: keyed like the signature
            sample = align_sample(sample, inspection.signature)
        needs_trust = bool(inspection.extra.get("requires_trust"))
        if lineage is None:
            lineage = Lineage(
                "register", tool_versions=tool_versions(*_PACKAGES.get(fmt.framework, ()))
            )
        with tempfile.TemporaryDirectory(prefix="modelport-sample-") as tmp:
            if (
                sample is not None
                and SAMPLE_FILE not in inspection.files
                and sample_nbytes(sample) <= MAX_STORED_SAMPLE_BYTES
            ):
                stored = save_sample(sample, Path(tmp) / SAMPLE_FILE)
                inspection = replace(
                    inspection,
                    files={**inspection.files, SAMPLE_FILE: stored},
                    extra={**inspection.extra, "sample_input": SAMPLE_FILE},
                )
            return self.register_inspection(
                inspection,
                name,
                description=description,
                tags=tags,
                metrics=metrics,
                lineage=lineage,
                trusted=allow and needs_trust,
                extra=extra,
                progress=progress,
                encrypt=encrypt,
            )

    def register_object(
        self,
        obj: Any,
        name: str,
        *,
        sample_input: Any = None,
        description: str = "",
        tags: Mapping[str, str] | None = None,
        metrics: Mapping[str, float] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> ModelVersion:
        """Register a live model object, saved first in its framework's safe format.

        scikit-learn estimators and pipelines go to skops, ``torch.nn.Module`` to
        ``torch.export`` (TorchScript if export fails; needs ``sample_input``),
        LightGBM and XGBoost boosters to their native text/JSON.

        Example:
            >>> reg.register_object(pipe, "cancer", sample_input=X[:10]).format  # doctest: +SKIP
            'sklearn'
        """
        validate_name(name)
        with tempfile.TemporaryDirectory(prefix="modelport-object-") as tmp:
            saved = save_object(obj, Path(tmp), sample_input)
            fmt = get_format(saved.format)
            lineage = Lineage(
                "register",
                params={"source": "python-object", "type": saved.type_name},
                tool_versions=tool_versions(*_PACKAGES.get(fmt.framework, ())),
            )
            return self.register(
                saved.path,
                name,
                framework=saved.format,
                sample_input=saved.sample,
                description=description,
                tags=tags,
                metrics=metrics,
                lineage=lineage,
                extra={**saved.extra, **(extra or {})},
            )

    def register_inspection(
        self,
        inspection: Inspection,
        name: str,
        *,
        description: str = "",
        tags: Mapping[str, str] | None = None,
        metrics: Mapping[str, float] | None = None,
        lineage: Lineage | None = None,
        trusted: bool = False,
        extra: Mapping[str, Any] | None = None,
        progress: Progress | None = None,
        encrypt: bool = False,
    ) -> ModelVersion:
        """Store already-inspected model files as a new version (used by converters).

        With ``encrypt`` every file is stored AES-256-GCM encrypted under the configured
        master key, bound to the model name and version (the number is reserved first;
        a failed registration leaves a gap, never a reused number).
        """
        validate_name(name)
        clean_tags = _clean_tags(tags)
        clean_metrics = _clean_metrics(metrics)
        if inspection.entry not in inspection.files:
            raise InvalidArgument(f"entry file {inspection.entry!r} is not among the files")
        for rel in inspection.files:
            _check_file_name(rel)
        if not encrypt:
            return self._store_version(
                inspection,
                name,
                None,
                clean_tags,
                clean_metrics,
                description,
                lineage,
                trusted,
                extra,
                progress,
            )
        if self._key_provider is None:
            raise FailedPrecondition(
                "encryption needs a master key: set MODELPORT_MASTER_KEY_FILE "
                "(create one with: modelport keys create-master-key FILE)"
            )
        from modelport.security.loading import ENCRYPTION_KEY, encrypt_files

        number = self._reserve_version(name)
        with tempfile.TemporaryDirectory(prefix="modelport-encrypt-") as tmp:
            cipher, entry = encrypt_files(
                inspection.files, name, number, self._key_provider, Path(tmp)
            )
            sealed = replace(
                inspection, files=cipher, extra={**inspection.extra, ENCRYPTION_KEY: entry}
            )
            return self._store_version(
                sealed,
                name,
                number,
                clean_tags,
                clean_metrics,
                description,
                lineage,
                trusted,
                extra,
                progress,
            )

    def _reserve_version(self, name: str) -> int:
        """Allocate the next version number of ``name`` now (for encryption binding)."""
        with self._write() as s:
            model = s.scalar(select(ModelRow).where(ModelRow.name == name))
            if model is None:
                model = ModelRow(name=name, next_version=1, created_at=datetime.now(UTC))
                s.add(model)
                s.flush()
            number = model.next_version
            model.next_version = number + 1
        return number

    def _store_version(
        self,
        inspection: Inspection,
        name: str,
        number: int | None,
        clean_tags: dict[str, str],
        clean_metrics: dict[str, float],
        description: str,
        lineage: Lineage | None,
        trusted: bool,
        extra: Mapping[str, Any] | None,
        progress: Progress | None,
    ) -> ModelVersion:
        """Hash, upload and commit (``number`` None: allocate the next one)."""
        sources = dict(inspection.files)
        entries = []
        for rel, p in sorted(sources.items()):
            digest, size = sha256_file(p)
            entries.append(FileEntry(rel, digest, size))
        self._on_step("hashed")
        written: list[str] = []
        try:
            for entry in entries:
                if self.store.put(sources[entry.path], entry.digest, progress):
                    written.append(entry.digest)
                self._on_step("uploaded")
            record = self._commit_version(
                name,
                number,
                inspection,
                tuple(entries),
                sources,
                description=description,
                tags=clean_tags,
                metrics=clean_metrics,
                lineage=lineage or Lineage("register"),
                trusted=trusted,
                extra={**inspection.extra, **(extra or {})},
            )
        except BaseException:
            with contextlib.suppress(Exception):
                self._collect(written)
            raise
        self._on_step("committed")
        if self._audit is not None:
            self._audit(
                "model.register",
                record.ref,
                {
                    "manifest_digest": record.manifest_digest,
                    "operation": record.lineage.operation,
                    "trusted": record.trusted,
                },
            )
        return record

    def _commit_version(
        self,
        name: str,
        reserved: int | None,
        inspection: Inspection,
        entries: tuple[FileEntry, ...],
        sources: dict[str, Path],
        *,
        description: str,
        tags: dict[str, str],
        metrics: dict[str, float],
        lineage: Lineage,
        trusted: bool,
        extra: dict[str, Any],
    ) -> ModelVersion:
        with self._write() as s:
            self._on_step("locked")
            # A concurrent gc may have collected a blob we found already stored.
            for entry in entries:
                if not self.store.exists(entry.digest):
                    self.store.put(sources[entry.path], entry.digest)
            model = s.scalar(select(ModelRow).where(ModelRow.name == name))
            if model is None:
                model = ModelRow(name=name, next_version=1, created_at=datetime.now(UTC))
                s.add(model)
                s.flush()
            if reserved is None:
                number = model.next_version
                model.next_version = number + 1
            else:
                number = reserved
            record = ModelVersion(
                name=name,
                version=number,
                format=inspection.format,
                framework=inspection.framework,
                entry=inspection.entry,
                files=entries,
                signature=inspection.signature,
                description=description,
                tags=tags,
                metrics=metrics,
                lineage=lineage,
                extra=extra,
                trusted=trusted,
                created_at=datetime.now(UTC).replace(microsecond=0),
            )
            digest = record.compute_manifest_digest()
            row = VersionRow(
                model_id=model.id,
                version=number,
                format=record.format,
                framework=record.framework,
                description=description,
                signature=record.signature.to_dict(),
                tags=tags,
                metrics=metrics,
                lineage=lineage.to_dict(),
                extra={**extra, "entry": record.entry},
                trusted=trusted,
                manifest_digest=digest,
                created_at=record.created_at,
            )
            row.files = [FileRow(path=e.path, digest=e.digest, size=e.size) for e in entries]
            record = _replace_digest(record, digest)
            if self._signer is not None:  # signed in the same transaction: never unsigned
                doc = self._signer(record.manifest())
                row.signatures = [SignatureRow(key_id=str(doc.get("key_id", "")), document=doc)]
            s.add(row)
            s.flush()
            self._on_step("before-commit")
        return record


def tool_versions(*packages: str) -> dict[str, str]:
    """Installed versions of modelport and the given packages (for lineage)."""
    out = {}
    for p in ("modelport", *packages):
        with contextlib.suppress(PackageNotFoundError):
            out[p] = pkg_version(p)
    return out


def _check_file_name(rel: str) -> str:
    parts = rel.split("/")
    if (
        not rel
        or rel.startswith("/")
        or "\\" in rel
        or "\x00" in rel
        or any(p in ("", ".", "..") for p in parts)
        or rel in (MANIFEST_FILE, SIGNATURE_FILE)
    ):
        raise InvalidArgument(f"invalid file name {rel!r} inside a model version")
    return rel


def _clean_tags(tags: Mapping[str, str] | None) -> dict[str, str]:
    out = {}
    for k, v in (tags or {}).items():
        if (
            not isinstance(k, str)
            or not k
            or len(k) > 128
            or not isinstance(v, str)
            or len(v) > 4096
        ):
            raise InvalidArgument(f"invalid tag {k!r}={v!r}: keys 1-128 chars, values ≤ 4096 chars")
        out[k] = v
    return out


def _clean_metrics(metrics: Mapping[str, float] | None) -> dict[str, float]:
    out = {}
    for k, v in (metrics or {}).items():
        try:
            out[str(k)] = float(v)
        except (TypeError, ValueError) as e:
            raise InvalidArgument(f"metric {k!r} must be a number, got {v!r}") from e
    return out


def _replace_digest(rec: ModelVersion, digest: str) -> ModelVersion:
    return replace(rec, manifest_digest=digest)
