"""Reference profiles on disk: ``MODELPORT_HOME/profiles/drift/<model>/<version>.json``.

A profile belongs to one registered version but is not part of it: versions are
immutable, while a reference can be (re)built any time after registration. Writes are
atomic (temporary file, then rename), so a server reading a profile never sees half
of one.

Example:
    >>> import tempfile, pathlib, numpy as np
    >>> from modelport.monitoring.drift import build_profile
    >>> store = ProfileStore(pathlib.Path(tempfile.mkdtemp()))
    >>> p = build_profile("iris", "3", {"X": np.random.default_rng(0).normal(size=(50, 4))})
    >>> store.save(p).name
    '3.json'
    >>> store.load("iris", "3").rows
    50
    >>> store.load("iris", "4") is None
    True
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from modelport.core.errors import InvalidArgument, StorageError
from modelport.core.types import validate_name
from modelport.monitoring.drift import DriftProfile


class ProfileStore:
    """Reads and writes drift reference profiles under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @classmethod
    def under_home(cls, home: Path) -> ProfileStore:
        """The store of a modelport home directory (``Settings.home``)."""
        return cls(Path(home) / "profiles" / "drift")

    def path(self, model: str, version: str) -> Path:
        validate_name(model)
        if not version.isdigit():
            raise InvalidArgument(f"a profile belongs to a numbered version, not {version!r}")
        return self.root / model / f"{int(version)}.json"

    def save(self, profile: DriftProfile) -> Path:
        """Write ``profile`` atomically; returns its path."""
        target = self.path(profile.model, profile.version)
        target.parent.mkdir(parents=True, exist_ok=True)
        data = json.dumps(profile.to_dict(), indent=1).encode()
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except OSError as e:
            Path(tmp).unlink(missing_ok=True)
            raise StorageError(f"cannot write drift profile {target}: {e}") from e
        return target

    def load(self, model: str, version: str) -> DriftProfile | None:
        """The profile of ``model:version``, or None when there is none."""
        p = self.path(model, version)
        try:
            raw = p.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise StorageError(f"cannot read drift profile {p}: {e}") from e
        try:
            return DriftProfile.from_dict(json.loads(raw))
        except (ValueError, KeyError, TypeError) as e:
            raise InvalidArgument(f"{p} is not a valid drift profile: {e}") from e

    def mtime(self, model: str, version: str) -> float | None:
        """Modification time of the profile file (to notice a rebuilt reference)."""
        try:
            return self.path(model, version).stat().st_mtime
        except FileNotFoundError:
            return None

    def delete(self, model: str, version: str) -> bool:
        p = self.path(model, version)
        existed = p.exists()
        p.unlink(missing_ok=True)
        return existed
