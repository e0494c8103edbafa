"""Safe extraction of tar archives (``.tar``, ``.tar.gz``) from untrusted sources.

Python's ``tarfile`` has had several bypasses of its own extraction filter, so this
module does not call ``extract`` at all. It reads the stream once and, for each member,
checks before writing a byte:

- the name: relative, no ``..``, no absolute or drive paths, no backslashes, NUL or
  control characters, not too long or too deep, and not a duplicate of an earlier
  member (case-insensitively) or nested under a file;
- the type: regular files and directories only (no symbolic or hard links, devices,
  FIFOs or sparse files);
- the limits: member count, size of one member, total size, and the ratio of
  uncompressed to compressed bytes (decompression bombs).

Files are created by this module with ``O_EXCL | O_NOFOLLOW`` inside a fresh temporary
directory next to the destination, which is renamed into place only when the whole
archive passed. Any failure removes the temporary directory: nothing is left behind.

Example:
    >>> safe_extract(Path("model.tar.gz"), Path("/srv/models/iris-3"))   # doctest: +SKIP
    ['model.onnx', 'config.json']
"""

from __future__ import annotations

import os
import re
import shutil
import tarfile
import unicodedata
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO

from modelport.core.errors import InvalidArgument, PayloadTooLarge, StorageError

_DRIVE = re.compile(r"^[A-Za-z]:")
_COPY_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class ArchiveLimits:
    """How much an archive may hold; every limit is checked while reading."""

    max_members: int = 10_000
    max_member_bytes: int = 8 << 30
    max_total_bytes: int = 16 << 30
    max_ratio: float = 200.0
    ratio_floor_bytes: int = 16 << 20
    max_name_length: int = 1024
    max_depth: int = 32


class _CountingReader:
    """A read-only file wrapper that counts the compressed bytes consumed."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.count += len(data)
        return data


def _clean_name(name: str, is_dir: bool, limits: ArchiveLimits) -> str:
    shown = name[:80]
    if len(name) > limits.max_name_length:
        raise InvalidArgument(f"unsafe archive member {shown!r}…: name too long")
    if any(ord(c) < 32 or c == "\x7f" for c in name) or "\\" in name:
        raise InvalidArgument(f"unsafe archive member {shown!r}: control character or backslash")
    if name.startswith("/") or _DRIVE.match(name):
        raise InvalidArgument(f"unsafe archive member {shown!r}: absolute path")
    if is_dir:
        name = name.rstrip("/")
    parts = name.split("/")
    while parts and parts[0] == ".":
        parts.pop(0)
    if not parts or any(p in ("", ".", "..") for p in parts):
        raise InvalidArgument(f"unsafe archive member {shown!r}: empty, '.' or '..' component")
    if len(parts) > limits.max_depth:
        raise InvalidArgument(f"unsafe archive member {shown!r}: nested too deep")
    return "/".join(parts)


def _kind(member: tarfile.TarInfo) -> str | None:
    """``None`` for allowed types, else the name of the refused type."""
    if member.issym():
        return "symbolic link"
    if member.islnk():
        return "hard link"
    if member.ischr() or member.isblk():
        return "device file"
    if member.isfifo():
        return "FIFO"
    if member.issparse():
        return "sparse file"
    if not (member.isreg() or member.isdir()):
        return f"type {member.type!r}"
    return None


class _Extraction:
    def __init__(self, root: Path, limits: ArchiveLimits, reader: _CountingReader) -> None:
        self.root = root
        self.limits = limits
        self.reader = reader
        self.members = 0
        self.total = 0
        self.seen: dict[str, str] = {}  # folded name -> kind ("f" or "d")
        self.files: list[str] = []

    def _check_ratio(self) -> None:
        lim = self.limits
        if self.total > lim.ratio_floor_bytes and self.total > lim.max_ratio * max(
            self.reader.count, 1
        ):
            raise PayloadTooLarge(
                f"archive expands more than {lim.max_ratio:g}x (decompression bomb?)"
            )

    def _register(self, name: str, kind: str) -> None:
        folded = unicodedata.normalize("NFC", name).casefold()
        if folded in self.seen and not (kind == "d" and self.seen[folded] == "d"):
            raise InvalidArgument(f"unsafe archive: duplicate member {name[:80]!r}")
        parts = folded.split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            if self.seen.get(parent) == "f":
                raise InvalidArgument(f"unsafe archive: {name[:80]!r} is nested under a file")
            self.seen.setdefault(parent, "d")
        self.seen[folded] = kind

    def add(self, tf: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        lim = self.limits
        self.members += 1
        if self.members > lim.max_members:
            raise PayloadTooLarge(f"archive has more than {lim.max_members} members")
        refused = _kind(member)
        if refused is not None:
            raise InvalidArgument(f"unsafe archive member {member.name[:80]!r}: {refused}")
        name = _clean_name(member.name, member.isdir(), lim)
        self._register(name, "d" if member.isdir() else "f")
        target = self.root.joinpath(*name.split("/"))
        if member.isdir():
            target.mkdir(parents=True, exist_ok=True, mode=0o755)
            return
        if member.size > lim.max_member_bytes:
            raise PayloadTooLarge(
                f"archive member {name[:80]!r} is larger than {lim.max_member_bytes} bytes"
            )
        if self.total + member.size > lim.max_total_bytes:
            raise PayloadTooLarge(f"archive expands beyond {lim.max_total_bytes} bytes")
        src = tf.extractfile(member)
        if src is None:
            raise InvalidArgument(f"unsafe archive member {name[:80]!r}: unreadable")
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        self._copy(src, target, member.size)
        self.files.append(name)

    def _copy(self, src: IO[bytes], target: Path, size: int) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        fd = os.open(target, flags, 0o644)
        with os.fdopen(fd, "wb") as out:
            left = size
            while left > 0:
                chunk = src.read(min(_COPY_CHUNK, left))
                if not chunk:
                    raise InvalidArgument("archive is truncated")
                out.write(chunk)
                left -= len(chunk)
                self.total += len(chunk)
                self._check_ratio()


def safe_extract(
    archive: Path | BinaryIO, dest: Path, limits: ArchiveLimits | None = None
) -> list[str]:
    """Extract a tar or tar.gz archive into the new directory ``dest``, or nothing at all.

    ``dest`` must not exist. Returns the extracted file names (``/``-separated, in
    archive order). Unsafe members raise :class:`InvalidArgument`, limits
    :class:`PayloadTooLarge`; either way no file remains.
    """
    limits = limits or ArchiveLimits()
    if dest.exists() or dest.is_symlink():
        raise InvalidArgument(f"{dest.name} already exists")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.{uuid.uuid4().hex}.extract"
    tmp.mkdir(mode=0o700)
    raw: BinaryIO = open(archive, "rb") if isinstance(archive, Path) else archive  # noqa: SIM115
    try:
        reader = _CountingReader(raw)
        job = _Extraction(tmp, limits, reader)
        try:
            with tarfile.open(fileobj=reader, mode="r|*") as tf:  # type: ignore[call-overload]
                for member in tf:
                    job.add(tf, member)
        except (tarfile.TarError, EOFError, OSError, ValueError) as e:
            if isinstance(e, OSError) and not isinstance(e, tarfile.TarError) and e.errno:
                raise StorageError(f"cannot extract archive: {e.strerror}") from e
            raise InvalidArgument(f"not a valid tar archive: {type(e).__name__}") from e
        os.rename(tmp, dest)
        return job.files
    finally:
        if isinstance(archive, Path):
            raw.close()
        shutil.rmtree(tmp, ignore_errors=True)
