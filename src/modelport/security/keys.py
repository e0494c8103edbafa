"""API keys: high-entropy bearer secrets, shown once, stored only as a hash.

A key reads ``mpk_<id>_<secret>``: 16 hex characters of key id (used to find the
record) and 32 random bytes in base64url. Only the SHA-256 of the whole key is stored,
in ``<home>/auth/keys.json`` (mode 0600, rewritten atomically under a file lock).

Why a plain SHA-256 and not a slow password hash: a slow hash defends *guessable*
secrets against offline guessing. These secrets are 256 random bits, so guessing is out
of reach whatever the hash speed, and a fast hash keeps the check on every request at a
few microseconds. A stolen ``keys.json`` yields no usable key.

Verification compares digests with :func:`hmac.compare_digest`, and an unknown key id
is compared against a dummy digest, so unknown and wrong keys take the same path and
raise the same :class:`Unauthenticated` message. Expiry and revocation are reported as
such only to a caller that presented the correct secret.

Example:
    >>> store = KeyStore(Path("/tmp/mp-doc/auth/keys.json"))
    >>> record, token = store.create(Role.PREDICTOR, models=["iris*"])
    >>> store.verify(token).roles == {Role.PREDICTOR}
    True
    >>> store.verify(token[:-1] + "x")
    Traceback (most recent call last):
    ...
    modelport.core.errors.Unauthenticated: invalid credentials
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from modelport.core.config import Settings
from modelport.core.errors import InvalidArgument, NotFound, StorageError, Unauthenticated
from modelport.security._files import atomic_write, file_lock
from modelport.security.policy import Principal, Role

TOKEN_PREFIX = "mpk_"  # noqa: S105  (a public marker, not a secret)
FILE_SCHEMA = "modelport.api-keys/v1"
_ID_HEX = 16
_SECRET_BYTES = 32
_TOKEN_RE = re.compile(r"mpk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")
_PATTERN_RE = re.compile(r"[A-Za-z0-9._\-*?\[\]!]{1,128}")
_DIGEST_CONTEXT = b"modelport.api-key/v1\x00"
_DUMMY_DIGEST = hashlib.sha256(b"modelport.api-key/unknown").hexdigest()
_INVALID = "invalid credentials"
_DURATION_RE = re.compile(r"(\d+)\s*([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def token_digest(token: str) -> str:
    """The stored form of a key: SHA-256 over a context string and the whole key."""
    return hashlib.sha256(_DIGEST_CONTEXT + token.encode()).hexdigest()


def parse_duration(text: str) -> timedelta:
    """``30d``, ``12h``, ``90m``, ``2w`` or ``45s`` as a timedelta.

    Example:
        >>> parse_duration("30d")
        datetime.timedelta(days=30)
    """
    m = _DURATION_RE.fullmatch(text.strip().lower())
    if not m or int(m.group(1)) <= 0:
        raise InvalidArgument(
            f"invalid duration {text!r}: use a positive number and a unit, e.g. 30d, 12h, 90m"
        )
    seconds = int(m.group(1)) * _UNITS[m.group(2)]
    if seconds > 100 * 365 * 86400:
        raise InvalidArgument(f"duration {text!r} is longer than 100 years")
    return timedelta(seconds=seconds)


def _check_patterns(models: Sequence[str] | None) -> tuple[str, ...] | None:
    if models is None:
        return None
    out = tuple(models)
    if not out:
        raise InvalidArgument("a model scope needs at least one pattern")
    for p in out:
        if not _PATTERN_RE.fullmatch(p):
            raise InvalidArgument(
                f"invalid model pattern {p[:64]!r}: 1-128 characters of names and globs (* ? [])"
            )
    return out


def _iso(dt: datetime | None) -> str | None:
    return dt.astimezone(UTC).isoformat() if dt else None


def _from_iso(s: Any) -> datetime | None:
    return datetime.fromisoformat(s) if s else None


@dataclass(frozen=True, slots=True)
class ApiKey:
    """The stored record of one API key (never the key itself)."""

    id: str
    role: Role
    digest: str
    created_at: datetime
    models: tuple[str, ...] | None = None
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    description: str = ""

    def status(self, now: datetime) -> str:
        """``active``, ``expired`` or ``revoked``."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and now >= self.expires_at:
            return "expired"
        return "active"

    def principal(self) -> Principal:
        """The caller this key authenticates."""
        return Principal(f"key:{self.id}", frozenset({self.role}), self.models, via="api-key")

    def to_dict(self, now: datetime | None = None) -> dict[str, Any]:
        """Public fields (no digest) plus the status at ``now``, for listings."""
        return {
            "id": self.id,
            "role": self.role.value,
            "models": list(self.models) if self.models is not None else None,
            "description": self.description,
            "created_at": _iso(self.created_at),
            "expires_at": _iso(self.expires_at),
            "revoked_at": _iso(self.revoked_at),
            "status": self.status(now or _utcnow()),
        }

    def _stored(self) -> dict[str, Any]:
        d = self.to_dict()
        del d["status"]
        d["sha256"] = self.digest
        return d

    @classmethod
    def _from_stored(cls, d: dict[str, Any]) -> ApiKey:
        created = _from_iso(d["created_at"])
        assert created is not None
        return cls(
            id=str(d["id"]),
            role=Role(d["role"]),
            digest=str(d["sha256"]),
            created_at=created,
            models=tuple(d["models"]) if d.get("models") is not None else None,
            expires_at=_from_iso(d.get("expires_at")),
            revoked_at=_from_iso(d.get("revoked_at")),
            description=str(d.get("description", "")),
        )


class KeyStore:
    """API key records in a JSON file; verification reloads the file when it changes.

    A revocation made by ``modelport auth revoke-key`` therefore takes effect on a
    running server at its next request, without a restart.
    """

    def __init__(self, path: Path, *, clock: Clock = _utcnow) -> None:
        self.path = path
        self._clock = clock
        self._lock_path = path.parent / f".{path.name}.lock"
        self._cache_sig: tuple[int, int, int] | None = None
        self._cache: dict[str, ApiKey] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyStore:
        """The key store under ``<home>/auth/keys.json``."""
        return cls(settings.auth_dir / "keys.json")

    # ------------------------------------------------------------------ reading

    def _read(self) -> dict[str, ApiKey]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as e:
            raise StorageError(f"cannot read API keys: {e.strerror}") from e
        try:
            data = json.loads(raw)
            if data.get("schema") != FILE_SCHEMA:
                raise ValueError("unknown schema")
            keys = [ApiKey._from_stored(d) for d in data["keys"]]
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            # Fail closed: a damaged key file authenticates nobody.
            raise StorageError(f"API key file {self.path.name} is damaged: {e}") from e
        return {k.id: k for k in keys}

    def _current(self) -> dict[str, ApiKey]:
        try:
            st = os.stat(self.path)
            sig = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            sig = None
        if sig is None or sig != self._cache_sig:
            self._cache = self._read() if sig is not None else {}
            self._cache_sig = sig
        return self._cache

    def list(self) -> list[ApiKey]:
        """Every key record, oldest first (revoked and expired ones included)."""
        return sorted(self._current().values(), key=lambda k: (k.created_at, k.id))

    def get(self, key_id: str) -> ApiKey:
        """One record by id, or :class:`NotFound`."""
        key = self._current().get(key_id)
        if key is None:
            raise NotFound(f"no API key with id {key_id[:32]!r}")
        return key

    # ------------------------------------------------------------------ writing

    def _write(self, keys: dict[str, ApiKey]) -> None:
        doc = {
            "schema": FILE_SCHEMA,
            "keys": [k._stored() for k in sorted(keys.values(), key=lambda k: k.created_at)],
        }
        atomic_write(self.path, json.dumps(doc, indent=2).encode() + b"\n", mode=0o600)

    def create(
        self,
        role: Role | str,
        *,
        models: Sequence[str] | None = None,
        expires_in: timedelta | None = None,
        description: str = "",
    ) -> tuple[ApiKey, str]:
        """Create a key; return its record and the key itself (the only time it exists).

        Example:
            >>> store = KeyStore(Path("/tmp/mp-doc/auth/keys.json"))
            >>> rec, key = store.create("viewer", expires_in=timedelta(days=30))
            >>> key.startswith("mpk_") and rec.digest != key
            True
        """
        role = role if isinstance(role, Role) else Role.parse(role)
        scope = _check_patterns(models)
        if len(description) > 256:
            raise InvalidArgument("a key description is at most 256 characters")
        if expires_in is not None and expires_in <= timedelta(0):
            raise InvalidArgument("a key must expire in the future")
        now = self._clock()
        key_id = secrets.token_hex(_ID_HEX // 2)
        secret = base64.urlsafe_b64encode(secrets.token_bytes(_SECRET_BYTES)).rstrip(b"=")
        token = f"{TOKEN_PREFIX}{key_id}_{secret.decode()}"
        record = ApiKey(
            id=key_id,
            role=role,
            digest=token_digest(token),
            created_at=now,
            models=scope,
            expires_at=now + expires_in if expires_in is not None else None,
            description=description,
        )
        with file_lock(self._lock_path):
            keys = self._read()
            keys[key_id] = record
            self._write(keys)
        return record, token

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke a key for good (idempotent); return its updated record."""
        with file_lock(self._lock_path):
            keys = self._read()
            key = keys.get(key_id)
            if key is None:
                raise NotFound(f"no API key with id {key_id[:32]!r}")
            if key.revoked_at is None:
                key = keys[key_id] = replace(key, revoked_at=self._clock())
                self._write(keys)
        return key

    # ------------------------------------------------------------------ verifying

    def verify(self, token: str) -> Principal:
        """The principal of a presented key, or :class:`Unauthenticated`.

        Malformed, unknown and wrong keys raise the same error after the same work:
        one SHA-256 and one constant-time comparison.
        """
        m = _TOKEN_RE.fullmatch(token)
        presented = token_digest(token)
        record = self._current().get(m.group(1)) if m else None
        expected = record.digest if record is not None else _DUMMY_DIGEST
        if not hmac.compare_digest(presented, expected) or record is None:
            raise Unauthenticated(_INVALID)
        status = record.status(self._clock())
        if status != "active":
            raise Unauthenticated(f"API key {status}")
        return record.principal()
