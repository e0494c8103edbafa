"""Content-addressed artifact stores: every file lives under its SHA-256, once.

Two implementations behind one small protocol:

- :class:`LocalStore` (default): ``<root>/blobs/sha256/<2 hex>/<64 hex>``. A write goes
  to ``<root>/tmp/`` first, is hashed while copied, fsynced, then renamed into place and
  the directory fsynced, so a reader never sees half a blob.
- :class:`S3Store` (``s3://bucket/prefix``): S3 makes an object visible only once its
  upload completed, so a killed upload leaves nothing under the blob key.

A blob is immutable: writing a digest that exists is a no-op.
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol
from urllib.parse import urlparse

from modelport.core.errors import (
    IntegrityError,
    InvalidArgument,
    MissingDependency,
    StorageError,
)

CHUNK = 1 << 20
Progress = Callable[[int], None]


def sha256_file(path: Path, progress: Progress | None = None) -> tuple[str, int]:
    """Return ``(hex digest, size)`` of a file, reading it in 1 MiB chunks."""
    h = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
            if progress:
                progress(len(chunk))
    return h.hexdigest(), size


def check_digest(digest: str) -> str:
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise InvalidArgument(f"not a SHA-256 hex digest: {digest[:80]!r}")
    return digest


@dataclass(frozen=True, slots=True)
class BlobInfo:
    digest: str
    size: int
    modified: float  # epoch seconds


class ArtifactStore(Protocol):
    """What the registry needs from a blob store."""

    url: str

    def put(self, src: Path, digest: str, progress: Progress | None = None) -> bool:
        """Store ``src`` under ``digest``; verify the bytes hash to it. True if newly written."""

    def exists(self, digest: str) -> bool: ...

    def fetch(self, digest: str, dest: Path) -> None:
        """Copy the blob to ``dest`` (which must not exist), verifying its digest."""

    def read_bytes(self, digest: str) -> bytes: ...

    def delete(self, digest: str) -> None: ...

    def blobs(self) -> Iterator[BlobInfo]: ...

    def verify(self, digest: str) -> bool:
        """Re-hash the stored blob; False if it no longer matches its name."""

    def clean_temp(self, older_than: float) -> int:
        """Remove leftovers of interrupted writes older than ``older_than`` seconds."""


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalStore:
    """Blobs in a local directory (the embedded default)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = f"file://{root}"
        self._blobs = root / "blobs" / "sha256"
        self._tmp = root / "tmp"
        self._blobs.mkdir(parents=True, exist_ok=True)
        self._tmp.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        check_digest(digest)
        return self._blobs / digest[:2] / digest

    def put(self, src: Path, digest: str, progress: Progress | None = None) -> bool:
        dest = self.path(digest)
        if dest.exists():
            if progress:
                progress(src.stat().st_size)
            return False
        tmp = self._tmp / f"{digest[:16]}.{uuid.uuid4().hex}.part"
        h = hashlib.sha256()
        try:
            with src.open("rb") as fin, tmp.open("xb") as fout:
                while chunk := fin.read(CHUNK):
                    h.update(chunk)
                    fout.write(chunk)
                    if progress:
                        progress(len(chunk))
                fout.flush()
                os.fsync(fout.fileno())
            if h.hexdigest() != digest:
                raise IntegrityError(
                    f"{src.name} changed while it was being stored "
                    f"(expected sha256 {digest[:12]}…, read {h.hexdigest()[:12]}…)"
                )
            os.chmod(tmp, 0o444)
            dest.parent.mkdir(exist_ok=True)
            os.replace(tmp, dest)
            _fsync_dir(dest.parent)
        except OSError as e:
            raise StorageError(f"cannot write blob {digest[:12]}… to {self.root}: {e}") from e
        finally:
            tmp.unlink(missing_ok=True)
        return True

    def exists(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def fetch(self, digest: str, dest: Path) -> None:
        src = self.path(digest)
        if not src.is_file():
            raise IntegrityError(f"blob {digest[:12]}… is missing from the store {self.root}")
        h = hashlib.sha256()
        with src.open("rb") as fin, dest.open("xb") as fout:
            while chunk := fin.read(CHUNK):
                h.update(chunk)
                fout.write(chunk)
        if h.hexdigest() != digest:
            dest.unlink()
            raise IntegrityError(f"blob {digest[:12]}… is corrupt (content does not match)")

    def read_bytes(self, digest: str) -> bytes:
        try:
            data = self.path(digest).read_bytes()
        except FileNotFoundError as e:
            raise IntegrityError(f"blob {digest[:12]}… is missing from the store") from e
        if hashlib.sha256(data).hexdigest() != digest:
            raise IntegrityError(f"blob {digest[:12]}… is corrupt (content does not match)")
        return data

    def delete(self, digest: str) -> None:
        self.path(digest).unlink(missing_ok=True)

    def blobs(self) -> Iterator[BlobInfo]:
        for sub in sorted(self._blobs.iterdir()):
            if not sub.is_dir():
                continue
            for p in sorted(sub.iterdir()):
                st = p.stat()
                yield BlobInfo(p.name, st.st_size, st.st_mtime)

    def verify(self, digest: str) -> bool:
        p = self.path(digest)
        return p.is_file() and sha256_file(p)[0] == digest

    def clean_temp(self, older_than: float) -> int:
        now = time.time()
        n = 0
        for p in self._tmp.iterdir():
            if now - p.stat().st_mtime >= older_than:
                p.unlink(missing_ok=True)
                n += 1
        return n


class _HashingReader:
    """File wrapper that hashes what boto3 reads, for verification after upload."""

    def __init__(self, f: IO[bytes], progress: Progress | None) -> None:
        self._f = f
        self._progress = progress
        self.hash = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        chunk = self._f.read(n)
        self.hash.update(chunk)
        if self._progress and chunk:
            self._progress(len(chunk))
        return chunk


class S3Store:
    """Blobs in S3-compatible object storage under ``s3://bucket/prefix/blobs/sha256/``."""

    def __init__(
        self, url: str, endpoint_url: str | None = None, region: str | None = None
    ) -> None:
        try:
            import boto3
            from botocore.config import Config
        except ImportError as e:
            raise MissingDependency.for_extra("boto3", "s3", "S3 artifact stores") from e
        parsed = urlparse(url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise InvalidArgument(f"invalid S3 store URL {url!r}: use s3://bucket/prefix")
        self.url = url
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        self._client: Any = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region or "us-east-1",
            config=Config(retries={"max_attempts": 5, "mode": "standard"}),
        )
        from botocore.exceptions import BotoCoreError, ClientError

        self._errors: tuple[type[Exception], ...] = (BotoCoreError, ClientError)

    def _key(self, digest: str) -> str:
        check_digest(digest)
        base = f"blobs/sha256/{digest[:2]}/{digest}"
        return f"{self.prefix}/{base}" if self.prefix else base

    def _fail(self, what: str, e: Exception) -> StorageError:
        return StorageError(f"S3 store {self.url}: cannot {what}: {e}")

    def put(self, src: Path, digest: str, progress: Progress | None = None) -> bool:
        if self.exists(digest):
            if progress:
                progress(src.stat().st_size)
            return False
        key = self._key(digest)
        try:
            with src.open("rb") as f:
                reader = _HashingReader(f, progress)
                self._client.upload_fileobj(
                    reader, self.bucket, key, ExtraArgs={"Metadata": {"sha256": digest}}
                )
        except self._errors as e:
            raise self._fail(f"upload blob {digest[:12]}…", e) from e
        if reader.hash.hexdigest() != digest:
            self.delete(digest)
            raise IntegrityError(f"{src.name} changed while it was being stored")
        return True

    def exists(self, digest: str) -> bool:
        try:
            self._client.head_object(Bucket=self.bucket, Key=self._key(digest))
            return True
        except self._errors as e:
            code = getattr(e, "response", {}).get("Error", {}).get("Code")
            if code in ("404", "NoSuchKey", "NotFound"):
                return False
            raise self._fail(f"look up blob {digest[:12]}…", e) from e

    def fetch(self, digest: str, dest: Path) -> None:
        h = hashlib.sha256()
        try:
            obj = self._client.get_object(Bucket=self.bucket, Key=self._key(digest))
            with dest.open("xb") as fout:
                for chunk in obj["Body"].iter_chunks(CHUNK):
                    h.update(chunk)
                    fout.write(chunk)
        except self._errors as e:
            dest.unlink(missing_ok=True)
            code = getattr(e, "response", {}).get("Error", {}).get("Code")
            if code in ("404", "NoSuchKey"):
                raise IntegrityError(f"blob {digest[:12]}… is missing from {self.url}") from e
            raise self._fail(f"download blob {digest[:12]}…", e) from e
        if h.hexdigest() != digest:
            dest.unlink()
            raise IntegrityError(f"blob {digest[:12]}… in {self.url} is corrupt")

    def read_bytes(self, digest: str) -> bytes:
        try:
            data: bytes = self._client.get_object(Bucket=self.bucket, Key=self._key(digest))[
                "Body"
            ].read()
        except self._errors as e:
            raise self._fail(f"read blob {digest[:12]}…", e) from e
        if hashlib.sha256(data).hexdigest() != digest:
            raise IntegrityError(f"blob {digest[:12]}… in {self.url} is corrupt")
        return data

    def delete(self, digest: str) -> None:
        try:
            self._client.delete_object(Bucket=self.bucket, Key=self._key(digest))
        except self._errors as e:
            raise self._fail(f"delete blob {digest[:12]}…", e) from e

    def blobs(self) -> Iterator[BlobInfo]:
        prefix = f"{self.prefix}/blobs/sha256/" if self.prefix else "blobs/sha256/"
        try:
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix
            )
            for page in pages:
                for obj in page.get("Contents", []):
                    name = obj["Key"].rsplit("/", 1)[-1]
                    yield BlobInfo(name, int(obj["Size"]), obj["LastModified"].timestamp())
        except self._errors as e:
            raise self._fail("list blobs", e) from e

    def verify(self, digest: str) -> bool:
        try:
            self.read_bytes(digest)
            return True
        except (IntegrityError, StorageError):
            return False

    def clean_temp(self, older_than: float) -> int:
        return 0  # uploads are atomic in S3; nothing partial is ever visible


def open_store(
    url: str, endpoint_url: str | None = None, region: str | None = None
) -> ArtifactStore:
    """Build the store named by a URL: ``file:///path``, a plain path, or ``s3://…``.

    Example:
        >>> open_store("file:///tmp/mp-doc/artifacts").url
        'file:///tmp/mp-doc/artifacts'
    """
    parsed = urlparse(url)
    if parsed.scheme == "s3":
        return S3Store(url, endpoint_url, region)
    if parsed.scheme == "file":
        return LocalStore(Path(parsed.path))
    if parsed.scheme == "":
        return LocalStore(Path(url).expanduser().resolve())
    raise InvalidArgument(f"unsupported store URL {url!r}: use file:///path or s3://bucket/prefix")
