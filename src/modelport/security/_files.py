"""Small file primitives the security stores share: atomic private writes and locks.

A key file or audit log that is half written after a crash, or written by two
processes at once, is a security bug. Every write here goes to a temporary file in the
same directory, is flushed to disk, then renamed over the target (rename is atomic on
POSIX), and the directory is synced so the rename itself survives a crash.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from modelport.core.errors import StorageError


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) readable by the owner only; return it.

    Example:
        >>> private_dir(Path(tempfile.mkdtemp()) / "auth").stat().st_mode & 0o777
        448
    """
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as e:
        raise StorageError(f"cannot create {path}: {e.strerror}") from e
    return path


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` atomically (temp file, fsync, rename, dir fsync).

    Example:
        >>> p = Path(tempfile.mkdtemp()) / "k.json"
        >>> atomic_write(p, b"{}")
        >>> p.read_bytes(), oct(p.stat().st_mode & 0o777)
        (b'{}', '0o600')
    """
    private_dir(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise StorageError(f"cannot write {path}: {e.strerror}") from e


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``path`` (created if missing) for the block.

    Processes that read-modify-write the same store take this lock around the whole
    operation, so concurrent CLI calls and servers never lose each other's writes.

    Example:
        >>> with file_lock(Path(tempfile.mkdtemp()) / ".lock"):
        ...     pass
    """
    private_dir(path.parent)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as e:
        raise StorageError(f"cannot open lock file {path}: {e.strerror}") from e
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
