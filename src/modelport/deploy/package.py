"""Self-contained packages: build, verify and open a ``.tar.gz`` that serves anywhere.

A package holds everything a machine with only modelport installed needs::

    modelport-package.json     what is inside: models, and every file with its SHA-256
    models/<name>/<version>/   the version's files as stored (signed, encrypted if so)
                               with its modelport.json manifest (and modelport.sig)
    serve.yaml                 the serving configuration (every model, pinned)
    requirements.txt           modelport and its serving dependencies, pinned
    Dockerfile, .dockerignore  a slim, non-root image with a health check

Building checks each version against its manifest first and writes the archive
atomically and reproducibly (same inputs, same bytes). Opening extracts with
:func:`modelport.security.archive.safe_extract` (no ``..``, absolute paths, links,
devices or duplicates; size and member limits) and then verifies every digest — of the
package listing, of each model's manifest and of each model file — before returning
anything; a package that fails is removed again.

Example:
    >>> info = build_package([PackageSource(reg.open("iris:3"), ("iris@prod",))],
    ...                      Path("iris.tar.gz"))                        # doctest: +SKIP
    >>> pkg = open_package(Path("iris.tar.gz"), Path("/srv/iris"))       # doctest: +SKIP
    >>> pkg.resolve("iris@prod").directory                               # doctest: +SKIP
    PosixPath('/srv/iris/models/iris/3')
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelport.core.errors import (
    IntegrityError,
    InvalidArgument,
    NotFound,
    PayloadTooLarge,
    StorageError,
)
from modelport.core.types import ModelRef, validate_name
from modelport.deploy import dockerfile as docker
from modelport.security.archive import ArchiveLimits, safe_extract
from modelport.security.signing import canonical_json
from modelport.security.verify import check_files, read_manifest

PACKAGE_MANIFEST = "modelport-package.json"
PACKAGE_SCHEMA = "modelport.package/v1"
SERVE_FILE = "serve.yaml"
MAX_MANIFEST_BYTES = 16 << 20
_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class PackageSource:
    """A materialised version (``Registry.open``) and the references it was asked by."""

    directory: Path
    refs: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PackagedModel:
    """One model version inside an opened package."""

    name: str
    version: int
    directory: Path
    manifest: dict[str, Any]
    refs: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"

    @property
    def entry(self) -> Path:
        return self.directory / str(self.manifest["entry"])


@dataclass(frozen=True, slots=True)
class PackageContents:
    """A verified, extracted package: where it is and what it serves."""

    root: Path
    models: tuple[PackagedModel, ...]
    serve_config: dict[str, Any]
    manifest: dict[str, Any]
    digest: str
    files: tuple[str, ...] = field(default=())

    def resolve(self, ref: str) -> PackagedModel:
        """The packaged version ``ref`` names: ``name`` (newest in the package),
        ``name:N``, ``name@alias`` (aliases as they were when packaged), or a
        reference the package was built from."""
        for m in self.models:
            if ref in m.refs:
                return m
        r = ModelRef.parse(ref)
        same = sorted((m for m in self.models if m.name == r.name), key=lambda m: m.version)
        found = (
            [m for m in same if m.version == r.version]
            if r.version is not None
            else [m for m in same if r.alias in m.aliases]
            if r.alias is not None
            else same[-1:]
        )
        if not found:
            have = ", ".join(m.ref for m in self.models)
            raise NotFound(f"the package has no model {ref!r} (it holds {have})")
        return found[-1]


@dataclass(frozen=True, slots=True)
class PackageInfo:
    """What :func:`build_package` wrote."""

    path: Path
    sha256: str
    size: int
    digest: str
    models: tuple[str, ...]
    members: int


# ----------------------------------------------------------------------------- build


def _files_of(root: Path) -> list[Path]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if p.is_symlink():
                raise InvalidArgument(f"{p}: links are not packaged")
            out.append(p)
    return out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def build_package(
    sources: Sequence[PackageSource],
    out: str | os.PathLike[str],
    *,
    base_image: str | None = None,
    requirements: Sequence[str] | None = None,
) -> PackageInfo:
    """Write a package of the given materialised versions to ``out`` (a ``.tar.gz``).

    Each version is checked against its manifest first (a changed or extra file stops
    the build). The archive is written to a temporary file and renamed into place.
    """
    if not sources:
        raise InvalidArgument("a package needs at least one model")
    merged: dict[tuple[str, int], tuple[Path, dict[str, Any], set[str], set[str]]] = {}
    for src in sources:
        manifest = read_manifest(src.directory)
        check_files(manifest, src.directory)
        name, ver = validate_name(str(manifest["name"])), int(manifest["version"])
        _, _, refs, aliases = merged.setdefault(
            (name, ver), (src.directory, manifest, set(), set())
        )
        refs.update(src.refs)
        aliases.update(src.aliases)
    members: list[tuple[str, Path | bytes]] = []
    models = []
    for (name, ver), (directory, manifest, refs, aliases) in sorted(merged.items()):
        prefix = f"models/{name}/{ver}"
        for p in _files_of(directory):
            members.append((f"{prefix}/{p.relative_to(directory).as_posix()}", p))
        models.append(
            {
                "name": name,
                "version": ver,
                "path": prefix,
                "format": manifest.get("format"),
                "framework": manifest.get("framework"),
                "manifest_digest": hashlib.sha256(canonical_json(manifest)).hexdigest(),
                "refs": sorted(refs),
                "aliases": sorted(aliases),
            }
        )
    frameworks = {str(m["framework"]) for m in models}
    reqs = list(requirements or docker.pinned_requirements(frameworks))
    members += [
        (SERVE_FILE, _yaml_text(docker.serve_config(models)).encode()),
        ("requirements.txt", ("\n".join(reqs) + "\n").encode()),
        ("Dockerfile", docker.dockerfile(base_image or docker.default_base_image()).encode()),
        (".dockerignore", docker.DOCKERIGNORE.encode()),
    ]
    listing = []
    for arcname, src_ in sorted(members, key=lambda m: m[0]):
        if isinstance(src_, bytes):
            listing.append(
                {"path": arcname, "digest": hashlib.sha256(src_).hexdigest(), "size": len(src_)}
            )
        else:
            listing.append({"path": arcname, "digest": _sha256(src_), "size": src_.stat().st_size})
    manifest_doc = {
        "schema": PACKAGE_SCHEMA,
        "modelport_version": reqs[0].partition("==")[2] if reqs else "",
        "models": models,
        "serve": SERVE_FILE,
        "files": listing,
    }
    body = json.dumps(manifest_doc, indent=2, sort_keys=True).encode() + b"\n"
    ordered: list[tuple[str, Path | bytes]] = [(PACKAGE_MANIFEST, body)]
    ordered += sorted(members, key=lambda m: m[0])
    target = Path(out)
    sha, size = _write_tar_gz(target, ordered)
    return PackageInfo(
        path=target,
        sha256=sha,
        size=size,
        digest=hashlib.sha256(canonical_json(manifest_doc)).hexdigest(),
        models=tuple(f"{m['name']}:{m['version']}" for m in models),
        members=len(ordered),
    )


def _yaml_text(data: dict[str, Any]) -> str:
    try:
        import yaml
    except ImportError:  # pragma: no cover - pyyaml is in the deploy extra
        return json.dumps(data, indent=2) + "\n"
    return str(yaml.safe_dump(data, sort_keys=False))


def _write_tar_gz(target: Path, members: Sequence[tuple[str, Path | bytes]]) -> tuple[str, int]:
    """Reproducible: fixed times, owners and modes; written atomically."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as raw:
            with (
                gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz,
                tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
            ):
                for arcname, src in members:
                    info = tarfile.TarInfo(arcname)
                    info.mode, info.mtime, info.uid, info.gid = 0o644, 0, 0, 0
                    info.uname = info.gname = ""
                    if isinstance(src, bytes):
                        info.size = len(src)
                        tar.addfile(info, io.BytesIO(src))
                    else:
                        info.size = src.stat().st_size
                        with open(src, "rb") as f:
                            tar.addfile(info, f)
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, target)
    except OSError as e:
        raise StorageError(f"cannot write package {target}: {e.strerror or e}") from e
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return _sha256(target), target.stat().st_size


# ----------------------------------------------------------------------------- open


def open_package(
    path: str | os.PathLike[str],
    dest_dir: str | os.PathLike[str] | None = None,
    *,
    limits: ArchiveLimits | None = None,
) -> PackageContents:
    """Safely extract the package at ``path`` into the new directory ``dest_dir`` and
    verify every digest; or verify an already extracted package directory in place.

    Raises InvalidArgument / PayloadTooLarge for an unsafe archive and IntegrityError
    (SignatureError) when any digest does not match; nothing is left in ``dest_dir``
    then. This is what ``modelport serve --package`` calls before loading.
    """
    src = Path(path)
    if src.is_dir():
        return _verify(src)
    if dest_dir is None:
        raise InvalidArgument("opening a package file needs a directory to extract it to")
    dest = Path(dest_dir)
    if not src.is_file():
        raise NotFound(f"no such package: {src}")
    safe_extract(src, dest, limits)
    try:
        return _verify(dest)
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise


def verify_package(
    path: str | os.PathLike[str], *, limits: ArchiveLimits | None = None
) -> PackageContents:
    """Check a package file completely (in a temporary directory, removed afterwards).

    The returned contents describe the package; their ``root`` no longer exists.
    """
    with tempfile.TemporaryDirectory(prefix="modelport-verify-") as tmp:
        return open_package(path, Path(tmp) / "package", limits=limits)


def _verify(root: Path) -> PackageContents:
    doc_path = root / PACKAGE_MANIFEST
    if not doc_path.is_file() or doc_path.is_symlink():
        raise InvalidArgument(f"not a modelport package: no {PACKAGE_MANIFEST}")
    if doc_path.stat().st_size > MAX_MANIFEST_BYTES:
        raise PayloadTooLarge(f"{PACKAGE_MANIFEST} is larger than {MAX_MANIFEST_BYTES} bytes")
    raw = doc_path.read_bytes()
    try:
        doc = json.loads(raw)
        if doc.get("schema") != PACKAGE_SCHEMA:
            raise InvalidArgument(f"unknown package schema {doc.get('schema')!r}")
        listing = {str(f["path"]): (str(f["digest"]), int(f["size"])) for f in doc["files"]}
        models = list(doc["models"])
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise InvalidArgument(f"malformed {PACKAGE_MANIFEST}: {type(e).__name__}") from e
    found = {p.relative_to(root).as_posix() for p in _files_of(root)} - {PACKAGE_MANIFEST}
    if found != set(listing):
        odd = sorted(found ^ set(listing))[0]
        what = "is not listed" if odd in found else "is missing"
        raise IntegrityError(f"package file {odd!r} {what} in {PACKAGE_MANIFEST}")
    for rel, (digest, size) in sorted(listing.items()):
        p = root / rel
        if p.stat().st_size != size or _sha256(p) != digest:
            raise IntegrityError(f"package file {rel!r} does not match its digest")
    out = []
    for m in models:
        name, ver = validate_name(str(m["name"])), int(m["version"])
        directory = root / "models" / name / str(ver)
        if m.get("path") != f"models/{name}/{ver}" or not directory.is_dir():
            raise IntegrityError(f"package model {name}:{ver} is not at models/{name}/{ver}")
        manifest = read_manifest(directory)
        if (manifest.get("name"), manifest.get("version")) != (name, ver):
            raise IntegrityError(f"package model {name}:{ver} holds another version's manifest")
        if hashlib.sha256(canonical_json(manifest)).hexdigest() != m.get("manifest_digest"):
            raise IntegrityError(f"package model {name}:{ver}: manifest digest differs")
        check_files(manifest, directory)
        out.append(
            PackagedModel(
                name,
                ver,
                directory,
                manifest,
                tuple(m.get("refs", ())),
                tuple(m.get("aliases", ())),
            )
        )
    serve: dict[str, Any] = {}
    serve_path = root / str(doc.get("serve", SERVE_FILE))
    if serve_path.is_file():
        import yaml

        loaded = yaml.safe_load(serve_path.read_text())
        serve = loaded if isinstance(loaded, dict) else {}
    return PackageContents(
        root=root,
        models=tuple(out),
        serve_config=serve,
        manifest=doc,
        digest=hashlib.sha256(canonical_json(doc)).hexdigest(),
        files=tuple(sorted(listing)),
    )
