"""The model registry: numbered immutable versions, moving aliases, lineage.

Writes are transactional. Registration checks the model first (no side effect on bad
input), stores every file as a content-addressed blob, then commits the version row
and its file rows in one database transaction. A crash before that commit leaves at
most unreferenced blobs (collected by :meth:`Registry.gc`); a crash after it leaves a
complete version. Aliases only ever point at committed versions.

Example:
    >>> reg = Registry.from_settings(Settings(home="/tmp/mp-doc"))   # doctest: +SKIP
    >>> v = reg.register("iris.onnx", name="iris", tags={"team": "ml"})  # doctest: +SKIP
    >>> reg.set_alias("iris", "production", v.version)               # doctest: +SKIP
    >>> reg.get("iris@production").ref                              # doctest: +SKIP
    'iris:1'
"""

from __future__ import annotations

import builtins
import contextlib
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as pkg_version
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, selectinload, sessionmaker

from modelport.core.config import Settings
from modelport.core.errors import (
    Conflict,
    FailedPrecondition,
    InvalidArgument,
    ModelportError,
    NotFound,
    StorageError,
    UnsupportedFormat,
)
from modelport.core.types import ModelRef, ModelSignature, validate_name
from modelport.registry import db
from modelport.registry.db import AliasEventRow, AliasRow, FileRow, ModelRow, VersionRow
from modelport.registry.records import (
    MANIFEST_FILE,
    AliasEvent,
    AliasInfo,
    CheckReport,
    FileEntry,
    GcReport,
    Lineage,
    ModelSummary,
    ModelVersion,
    as_utc,
    canonical_json,
)
from modelport.registry.store import ArtifactStore, LocalStore, Progress, open_store, sha256_file
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
    as_sample,
    sample_nbytes,
    save_sample,
)

#: Aliases that are computed, not stored.
RESERVED_ALIASES = frozenset({"latest"})
Step = Callable[[str], None]
#: Framework → the packages whose versions a registration records in its lineage.
_PACKAGES = {
    "onnx": ("onnx",),
    "sklearn": ("scikit-learn", "skops"),
    "pytorch": ("torch",),
    "lightgbm": ("lightgbm",),
    "xgboost": ("xgboost",),
}
_VERSION_LOAD = (
    selectinload(VersionRow.files),
    selectinload(VersionRow.model).selectinload(ModelRow.aliases),
)


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
        or rel == MANIFEST_FILE
    ):
        raise InvalidArgument(f"invalid file name {rel!r} inside a model version")
    return rel


class Registry:
    """Models, versions, aliases and their artifacts.

    Built from settings with :meth:`from_settings`, or from an engine and a store for
    tests and embedding. ``on_step`` is called with the name of each step of a
    registration (``hashed``, ``uploaded``, ``locked``, ``before-commit``, ``committed``);
    the crash-safety tests use it to kill the process at each point.
    """

    def __init__(
        self,
        engine: Engine,
        store: ArtifactStore,
        cache_dir: Path,
        *,
        gc_grace_seconds: float = 3600.0,
        on_step: Step | None = None,
    ) -> None:
        self.engine = engine
        self.store = store
        self.cache_dir = cache_dir
        self.gc_grace_seconds = gc_grace_seconds
        self._on_step = on_step or (lambda _step: None)
        db.migrate(engine)
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @classmethod
    def from_settings(cls, settings: Settings, *, on_step: Step | None = None) -> Registry:
        """The registry the settings describe (SQLite + local files by default)."""
        store = open_store(
            settings.resolved_store_url(), settings.s3_endpoint_url, settings.s3_region
        )
        return cls(
            db.make_engine(settings.resolved_registry_url()),
            store,
            settings.cache_dir,
            gc_grace_seconds=settings.gc_grace_seconds,
            on_step=on_step,
        )

    def close(self) -> None:
        self.engine.dispose()

    # ------------------------------------------------------------------ sessions

    @contextlib.contextmanager
    def _read(self) -> Iterator[Session]:
        try:
            with self._sessions() as s:
                yield s
        except SQLAlchemyError as e:
            raise StorageError(f"registry database error: {e}") from e

    @contextlib.contextmanager
    def _write(self) -> Iterator[Session]:
        """A transaction holding the registry write lock; commits on success."""
        try:
            with self._sessions() as s, s.begin():
                db.lock_for_write(s)
                yield s
        except SQLAlchemyError as e:
            raise StorageError(f"registry database error: {e}") from e

    # ------------------------------------------------------------------ register

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
    ) -> ModelVersion:
        """Store already-inspected model files as a new version (used by converters)."""
        validate_name(name)
        clean_tags = _clean_tags(tags)
        clean_metrics = _clean_metrics(metrics)
        if inspection.entry not in inspection.files:
            raise InvalidArgument(f"entry file {inspection.entry!r} is not among the files")
        sources = {_check_file_name(rel): p for rel, p in inspection.files.items()}
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
        return record

    def _commit_version(
        self,
        name: str,
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
            number = model.next_version
            model.next_version = number + 1
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
            s.add(row)
            s.flush()
            self._on_step("before-commit")
        return _replace_digest(record, digest)

    # ------------------------------------------------------------------ read

    def get(self, ref: str | ModelRef) -> ModelVersion:
        """Resolve ``name``, ``name:3``, ``name@alias`` (or a ModelRef) to a version."""
        r = ModelRef.parse(ref) if isinstance(ref, str) else ref
        with self._read() as s:
            return _to_record(self._resolve(s, r))

    def _resolve(self, s: Session, r: ModelRef) -> VersionRow:
        model = s.scalar(select(ModelRow).where(ModelRow.name == r.name))
        if model is None:
            raise NotFound(f"model {r.name!r} does not exist")
        q = select(VersionRow).where(VersionRow.model_id == model.id).options(*_VERSION_LOAD)
        if r.version is not None:
            row = s.scalar(q.where(VersionRow.version == r.version))
            if row is None:
                raise NotFound(f"model {r.name!r} has no version {r.version}")
            return row
        if r.alias is not None and r.alias not in RESERVED_ALIASES:
            alias = s.scalar(
                select(AliasRow).where(AliasRow.model_id == model.id, AliasRow.alias == r.alias)
            )
            if alias is None:
                raise NotFound(f"model {r.name!r} has no alias {r.alias!r}")
            row = s.scalar(q.where(VersionRow.version == alias.version))
            if row is None:
                raise StorageError(f"alias {r} points at missing version {alias.version}")
            return row
        row = s.scalar(q.order_by(VersionRow.version.desc()).limit(1))
        if row is None:
            raise NotFound(f"model {r.name!r} has no versions")
        return row

    def list(self) -> list[ModelSummary]:
        """Every model with its latest version, version count and aliases."""
        with self._read() as s:
            stats = {
                mid: (latest, count)
                for mid, latest, count in s.execute(
                    select(
                        VersionRow.model_id, func.max(VersionRow.version), func.count()
                    ).group_by(VersionRow.model_id)
                )
            }
            out = []
            for m in s.scalars(
                select(ModelRow).order_by(ModelRow.name).options(selectinload(ModelRow.aliases))
            ):
                latest, count = stats.get(m.id, (None, 0))
                aliases = {a.alias: a.version for a in sorted(m.aliases, key=lambda a: a.alias)}
                out.append(ModelSummary(m.name, latest, count, aliases, as_utc(m.created_at)))
            return out

    def versions(self, name: str) -> builtins.list[ModelVersion]:
        """Every version of ``name``, oldest first."""
        validate_name(name)
        with self._read() as s:
            model = s.scalar(select(ModelRow).where(ModelRow.name == name))
            if model is None:
                raise NotFound(f"model {name!r} does not exist")
            rows = s.scalars(
                select(VersionRow)
                .where(VersionRow.model_id == model.id)
                .order_by(VersionRow.version)
                .options(*_VERSION_LOAD)
            )
            return [_to_record(r) for r in rows]

    # ------------------------------------------------------------------ aliases

    def set_alias(
        self, name: str, alias: str, version: int, *, expect: int | None = None
    ) -> AliasInfo:
        """Point ``name@alias`` at ``version``, atomically, recording the move.

        With ``expect``, the move happens only if the alias currently points at that
        version (or, with ``expect=0``, does not exist yet); otherwise :class:`Conflict`.
        """
        validate_name(name)
        _check_alias(alias)
        with self._write() as s:
            model = s.scalar(select(ModelRow).where(ModelRow.name == name))
            if model is None:
                raise NotFound(f"model {name!r} does not exist")
            exists = s.scalar(
                select(VersionRow.id).where(
                    VersionRow.model_id == model.id, VersionRow.version == version
                )
            )
            if exists is None:
                raise NotFound(f"model {name!r} has no version {version}")
            row = s.scalar(
                select(AliasRow).where(AliasRow.model_id == model.id, AliasRow.alias == alias)
            )
            current = row.version if row else None
            if expect is not None and (current or 0) != expect:
                raise Conflict(
                    f"alias {name}@{alias} points at {current or 'nothing'}, not {expect}; "
                    "it was moved concurrently — read it again and retry"
                )
            now = datetime.now(UTC)
            if row is None:
                row = AliasRow(model_id=model.id, alias=alias, version=version, updated_at=now)
                s.add(row)
            else:
                row.version, row.updated_at = version, now
            s.add(
                AliasEventRow(
                    model_name=name, alias=alias, from_version=current, to_version=version, at=now
                )
            )
            return AliasInfo(name, alias, version, now)

    def delete_alias(self, name: str, alias: str) -> None:
        """Remove ``name@alias`` (the history keeps the removal)."""
        validate_name(name)
        validate_name(alias, "alias")
        with self._write() as s:
            row = s.scalar(
                select(AliasRow)
                .join(ModelRow)
                .where(ModelRow.name == name, AliasRow.alias == alias)
            )
            if row is None:
                raise NotFound(f"model {name!r} has no alias {alias!r}")
            s.add(
                AliasEventRow(
                    model_name=name,
                    alias=alias,
                    from_version=row.version,
                    to_version=None,
                    at=datetime.now(UTC),
                )
            )
            s.delete(row)

    def aliases(self, name: str | None = None) -> builtins.list[AliasInfo]:
        """Current aliases, of one model or of all."""
        with self._read() as s:
            q = select(ModelRow.name, AliasRow).join(AliasRow.model)
            if name is not None:
                validate_name(name)
                if s.scalar(select(ModelRow.id).where(ModelRow.name == name)) is None:
                    raise NotFound(f"model {name!r} does not exist")
                q = q.where(ModelRow.name == name)
            return [
                AliasInfo(n, a.alias, a.version, as_utc(a.updated_at))
                for n, a in s.execute(q.order_by(ModelRow.name, AliasRow.alias))
            ]

    def alias_history(self, name: str) -> builtins.list[AliasEvent]:
        """Every move of every alias of ``name``, oldest first."""
        validate_name(name)
        with self._read() as s:
            rows = s.scalars(
                select(AliasEventRow)
                .where(AliasEventRow.model_name == name)
                .order_by(AliasEventRow.id)
            )
            return [
                AliasEvent(r.model_name, r.alias, r.from_version, r.to_version, as_utc(r.at))
                for r in rows
            ]

    # ------------------------------------------------------------------ delete / gc

    def delete(
        self, ref: str | ModelRef, *, all_versions: bool = False, force: bool = False
    ) -> builtins.list[str]:
        """Delete one version (``name:N``) or, with ``all_versions``, a whole model.

        An aliased version is kept unless ``force`` (its aliases go with it). Blobs no
        other version uses are removed. Returns the deleted references.
        """
        r = ModelRef.parse(ref) if isinstance(ref, str) else ref
        if r.is_latest and not all_versions:
            raise InvalidArgument(
                f"{r.name!r} names the whole model: pass --all to delete every version, "
                f"or {r.name}:N to delete one version"
            )
        with self._write() as s:
            model = s.scalar(
                select(ModelRow)
                .where(ModelRow.name == r.name)
                .options(selectinload(ModelRow.aliases))
            )
            if model is None:
                raise NotFound(f"model {r.name!r} does not exist")
            if r.is_latest:
                rows = list(
                    s.scalars(
                        select(VersionRow)
                        .where(VersionRow.model_id == model.id)
                        .options(selectinload(VersionRow.files))
                    )
                )
            else:
                rows = [self._resolve(s, r)]
            numbers = {row.version for row in rows}
            held = sorted(f"@{a.alias}→{a.version}" for a in model.aliases if a.version in numbers)
            if held and not force:
                raise FailedPrecondition(
                    f"{r} is aliased ({', '.join(held)}); move or delete the alias first, "
                    "or pass --force"
                )
            now = datetime.now(UTC)
            for a in list(model.aliases):
                if a.version in numbers:
                    s.add(
                        AliasEventRow(
                            model_name=model.name,
                            alias=a.alias,
                            from_version=a.version,
                            to_version=None,
                            at=now,
                        )
                    )
                    s.delete(a)
            digests = [f.digest for row in rows for f in row.files]
            deleted = [
                f"{model.name}:{row.version}" for row in sorted(rows, key=lambda x: x.version)
            ]
            if r.is_latest:
                s.delete(model)
            else:
                for row in rows:
                    s.delete(row)
        self._collect(digests)
        return deleted

    def _collect(self, digests: Sequence[str]) -> int:
        """Remove the given blobs if no version references them (under the write lock)."""
        if not digests:
            return 0
        removed = 0
        with self._write() as s:
            used = set(s.scalars(select(FileRow.digest).where(FileRow.digest.in_(set(digests)))))
            for d in set(digests) - used:
                self.store.delete(d)
                removed += 1
        return removed

    def gc(self, grace_seconds: float | None = None) -> GcReport:
        """Remove blobs no version references and leftovers of interrupted writes.

        Blobs younger than the grace period are kept: they may belong to a
        registration that is still uploading.
        """
        grace = self.gc_grace_seconds if grace_seconds is None else grace_seconds
        now = time.time()
        removed = freed = 0
        with self._write() as s:
            used = set(s.scalars(select(FileRow.digest).distinct()))
            for blob in list(self.store.blobs()):
                if blob.digest not in used and now - blob.modified >= grace:
                    self.store.delete(blob.digest)
                    removed += 1
                    freed += blob.size
        temps = self.store.clean_temp(grace)
        return GcReport(removed, freed, temps)

    def check(self, *, verify_content: bool = True) -> CheckReport:
        """Check every version against its manifest digest and its blobs.

        Reports versions whose metadata no longer matches their manifest digest,
        missing or corrupt blobs, and aliases pointing at missing versions; also counts
        unreferenced blobs (reclaimable with :meth:`gc`).
        """
        report = CheckReport()
        with self._read() as s:
            records = [_to_record(r) for r in s.scalars(select(VersionRow).options(*_VERSION_LOAD))]
            alias_rows = [
                (n, a.alias, a.version)
                for n, a in s.execute(select(ModelRow.name, AliasRow).join(AliasRow.model))
            ]
        referenced: dict[str, str] = {}
        versions = {(r.name, r.version) for r in records}
        for rec in records:
            report.versions_checked += 1
            if rec.compute_manifest_digest() != rec.manifest_digest:
                report.problems.append(f"{rec.ref}: metadata does not match its manifest digest")
            for f in rec.files:
                referenced.setdefault(f.digest, f"{rec.ref}/{f.path}")
        for name, alias, number in alias_rows:
            if (name, number) not in versions:
                report.problems.append(f"{name}@{alias}: points at missing version {number}")
        stored = {b.digest: b for b in self.store.blobs()}
        for digest, where in sorted(referenced.items(), key=lambda kv: kv[1]):
            if digest not in stored:
                report.problems.append(f"{where}: blob {digest[:12]}… is missing")
                continue
            report.blobs_checked += 1
            if verify_content and not self.store.verify(digest):
                report.problems.append(f"{where}: blob {digest[:12]}… is corrupt")
        for digest, blob in stored.items():
            if digest not in referenced:
                report.unreferenced_blobs.append(digest)
                report.unreferenced_bytes += blob.size
        if isinstance(self.store, LocalStore):
            report.temp_files = sum(1 for _ in (self.store.root / "tmp").iterdir())
        return report

    # ------------------------------------------------------------------ files

    def open(self, ref: str | ModelRef | ModelVersion) -> Path:
        """A local directory holding the version's files (verified) and its manifest.

        Directories are cached under ``<home>/cache`` by manifest digest and appear
        complete or not at all. Treat them as read-only.
        """
        rec = ref if isinstance(ref, ModelVersion) else self.get(ref)
        dest = self.cache_dir / rec.name / f"{rec.version}-{rec.manifest_digest[:16]}"
        if dest.is_dir():
            return dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.parent / f".{dest.name}.{uuid.uuid4().hex}.tmp"
        try:
            self._write_files(rec, tmp)
            try:
                os.replace(tmp, dest)
            except OSError:
                if not dest.is_dir():  # lost a race to an identical copy otherwise
                    raise
        except OSError as e:
            raise StorageError(f"cannot materialise {rec.ref} under {self.cache_dir}: {e}") from e
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return dest

    def _write_files(self, rec: ModelVersion, target: Path) -> None:
        target.mkdir(parents=True)
        for f in rec.files:
            out = target / f.path
            out.parent.mkdir(parents=True, exist_ok=True)
            self.store.fetch(f.digest, out)
        manifest = {**rec.manifest(), "manifest_digest": rec.manifest_digest}
        (target / MANIFEST_FILE).write_bytes(canonical_json(manifest) + b"\n")

    def export(self, ref: str | ModelRef, out: str | os.PathLike[str]) -> Path:
        """Write the version's files and ``modelport.json`` manifest into ``out``."""
        rec = self.get(ref)
        target = Path(out)
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise FailedPrecondition(f"{target} exists and is not an empty directory")
        if target.is_dir():
            target.rmdir()
        try:
            self._write_files(rec, target)
        except ModelportError:
            shutil.rmtree(target, ignore_errors=True)
            raise
        return target

    def read_file(self, ref: str | ModelRef | ModelVersion, path: str | None = None) -> bytes:
        """The verified bytes of one file of a version (default: its entry file)."""
        rec = ref if isinstance(ref, ModelVersion) else self.get(ref)
        want = path or rec.entry
        for f in rec.files:
            if f.path == want:
                return self.store.read_bytes(f.digest)
        raise NotFound(f"{rec.ref} has no file {want!r}")


# ---------------------------------------------------------------------- helpers


def _check_alias(alias: str) -> None:
    validate_name(alias, "alias")
    if alias in RESERVED_ALIASES:
        raise InvalidArgument(
            f"alias {alias!r} is reserved: NAME@{alias} always means the newest version"
        )
    if alias.isdigit():
        raise InvalidArgument(f"alias {alias!r} would read as a version number; include a letter")


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


def _to_record(row: VersionRow) -> ModelVersion:
    extra = dict(row.extra)
    entry = str(extra.pop("entry", ""))
    return ModelVersion(
        name=row.model.name,
        version=row.version,
        format=row.format,
        framework=row.framework,
        entry=entry,
        files=tuple(
            FileEntry(f.path, f.digest, f.size) for f in sorted(row.files, key=lambda f: f.path)
        ),
        signature=ModelSignature.from_dict(row.signature),
        description=row.description,
        tags=dict(row.tags),
        metrics=dict(row.metrics),
        lineage=Lineage.from_dict(row.lineage),
        extra=extra,
        trusted=row.trusted,
        created_at=as_utc(row.created_at),
        manifest_digest=row.manifest_digest,
        aliases=tuple(sorted(a.alias for a in row.model.aliases if a.version == row.version)),
    )


def _replace_digest(rec: ModelVersion, digest: str) -> ModelVersion:
    return replace(rec, manifest_digest=digest)


def register(
    model: Any,
    name: str,
    *,
    sample_input: Any = None,
    registry: Registry | None = None,
    settings: Settings | None = None,
    **options: Any,
) -> ModelVersion:
    """Register a model — a live object or a file/directory path — as the next version.

    Uses ``registry`` if given, else the one ``settings`` (default: the environment)
    describe. Other keyword arguments go to :meth:`Registry.register` or
    :meth:`Registry.register_object` (``description``, ``tags``, ``trust`` …).

    Example:
        >>> import modelport
        >>> v = modelport.register(pipe, name="cancer", sample_input=X[:10])  # doctest: +SKIP
        >>> v.ref, v.framework                                              # doctest: +SKIP
        ('cancer:1', 'sklearn')
    """
    reg = registry or Registry.from_settings(settings or Settings())
    try:
        if isinstance(model, str | os.PathLike):
            return reg.register(model, name, sample_input=sample_input, **options)
        return reg.register_object(model, name, sample_input=sample_input, **options)
    finally:
        if registry is None:
            reg.close()
