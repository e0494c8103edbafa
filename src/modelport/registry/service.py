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
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
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
)
from modelport.core.types import ModelRef, ModelSignature, validate_name
from modelport.registry import db
from modelport.registry.db import (
    AliasEventRow,
    AliasRow,
    FileRow,
    ModelRow,
    SignatureRow,
    VersionRow,
)
from modelport.registry.fsck import check_store
from modelport.registry.hooks import (
    auditor_from_settings,
    key_provider_from_settings,
    signer_from_settings,
)
from modelport.registry.records import (
    MANIFEST_FILE,
    SIGNATURE_FILE,
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
from modelport.registry.registration import (
    Auditor,
    RegistrationMixin,
    Signer,
    Step,
)
from modelport.registry.registration import tool_versions as tool_versions
from modelport.registry.store import ArtifactStore, open_store

#: Aliases that are computed, not stored.
RESERVED_ALIASES = frozenset({"latest"})
_VERSION_LOAD = (
    selectinload(VersionRow.files),
    selectinload(VersionRow.model).selectinload(ModelRow.aliases),
)


class Registry(RegistrationMixin):
    """Models, versions, aliases and their artifacts.

    Built from settings with :meth:`from_settings`, or from an engine and a store for
    tests and embedding. ``on_step`` is called with the name of each step of a
    registration (``hashed``, ``uploaded``, ``locked``, ``before-commit``, ``committed``);
    the crash-safety tests use it to kill the process at each point. ``signer`` signs
    each new version's manifest in the registering transaction; ``audit`` records
    registrations, alias moves and deletes.
    """

    def __init__(
        self,
        engine: Engine,
        store: ArtifactStore,
        cache_dir: Path,
        *,
        gc_grace_seconds: float = 3600.0,
        on_step: Step | None = None,
        signer: Signer | None = None,
        audit: Auditor | None = None,
        key_provider: Any = None,
    ) -> None:
        self.engine = engine
        self.store = store
        self.cache_dir = cache_dir
        self.gc_grace_seconds = gc_grace_seconds
        self._on_step = on_step or (lambda _step: None)
        self._signer = signer
        self._audit = audit
        self._key_provider = key_provider  # master key for register(encrypt=True)
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
            signer=signer_from_settings(settings),
            audit=auditor_from_settings(settings),
            key_provider=key_provider_from_settings(settings),
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
        if self._audit is not None:
            self._audit("alias.set", f"{name}@{alias}", {"from": current, "to": version})
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
        if self._audit is not None:
            self._audit("alias.delete", f"{name}@{alias}", {})

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
        if self._audit is not None:
            self._audit("model.delete", str(r), {"deleted": deleted, "force": force})
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
        with self._read() as s:
            records = [_to_record(r) for r in s.scalars(select(VersionRow).options(*_VERSION_LOAD))]
            alias_rows = [
                (n, a.alias, a.version)
                for n, a in s.execute(select(ModelRow.name, AliasRow).join(AliasRow.model))
            ]
        return check_store(records, alias_rows, self.store, verify_content=verify_content)

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
        signature = self.signature(rec)
        if signature is not None:
            (target / SIGNATURE_FILE).write_bytes(canonical_json(signature) + b"\n")

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

    def signature(self, ref: str | ModelRef | ModelVersion) -> dict[str, Any] | None:
        """The stored signature document of a version (the newest one), or None."""
        rec = ref if isinstance(ref, ModelVersion) else self.get(ref)
        with self._read() as s:
            docs = list(
                s.scalars(
                    select(SignatureRow.document)
                    .join(VersionRow)
                    .join(ModelRow)
                    .where(ModelRow.name == rec.name, VersionRow.version == rec.version)
                    .order_by(SignatureRow.id.desc())
                )
            )
        return dict(docs[0]) if docs else None

    def add_signature(self, ref: str | ModelRef, document: dict[str, Any]) -> None:
        """Attach a signature document (e.g. made offline) to an existing version."""
        rec = self.get(ref)
        with self._write() as s:
            row = self._resolve(s, ModelRef(rec.name, version=rec.version))
            key_id = str(document.get("key_id", ""))
            row.signatures = [x for x in row.signatures if x.key_id != key_id] + [
                SignatureRow(key_id=key_id, document=document)
            ]
        if self._audit is not None:
            self._audit("model.sign", rec.ref, {"key_id": key_id})

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
