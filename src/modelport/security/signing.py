"""Ed25519 signatures over model version manifests, and their verification.

A version's manifest (see ``registry/records.py``) lists every file with its SHA-256,
the signature (tensor specs), lineage and the trust flag. Signing it signs the whole
version: a flipped byte changes a file digest, an added or removed file changes the file
list, and both change the manifest digest the signature covers.

The signed statement is small and self-describing (:class:`Signature`): schema, model
name, version, manifest digest, key id, signing time and an optional expiry, as
canonical JSON. Binding the name and version means a valid signature of another model
or of an older version cannot be attached to this one (mix-and-match, replay).

Signing keys live under ``<home>/keys`` (``NAME.key`` private PEM, mode 0600, and
``NAME.pub``); ``modelport keys create|list`` manage them. Verification trusts the public
keys of those signing keys and the public key files listed in ``trusted_public_keys``;
a key id is the first 16 hex characters of the SHA-256 of the raw public key.

Example:
    >>> ring = Keyring(Path("/tmp/mp-doc/keys"))                     # doctest: +SKIP
    >>> key = ring.create("release")                                 # doctest: +SKIP
    >>> sig = key.sign(version.manifest())                           # doctest: +SKIP
    >>> TrustStore(ring.public_keys()).verify(version.manifest(), sig).key_id == key.key_id
    True
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelport.core.config import Settings
from modelport.core.errors import (
    AlreadyExists,
    InvalidArgument,
    MissingDependency,
    NotFound,
    SignatureError,
    StorageError,
)
from modelport.security._files import atomic_write, private_dir

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

SIGNATURE_SCHEMA = "modelport.signature/v1"
#: File name of a detached signature next to an exported version's ``modelport.json``.
SIGNATURE_FILE = "modelport.sig"
ALGORITHM = "ed25519"
_KEY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def canonical_json(data: Mapping[str, Any]) -> bytes:
    """Sorted keys, no spaces, UTF-8: byte-identical to the registry's canonical form."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def manifest_digest(manifest: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical manifest (the registry's ``manifest_digest``)."""
    return hashlib.sha256(canonical_json(manifest)).hexdigest()


def _crypto() -> Any:
    try:
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError as e:
        raise MissingDependency.for_extra("cryptography", "security", "Model signing") from e
    return ed25519


def _raw_public(public: Ed25519PublicKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id_of(public: Ed25519PublicKey) -> str:
    """The id of a public key: 16 hex characters of the SHA-256 of its raw bytes."""
    return hashlib.sha256(_raw_public(public)).hexdigest()[:16]


def load_public_key(data: bytes) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM bytes, or :class:`InvalidArgument`."""
    from cryptography.hazmat.primitives import serialization

    ed = _crypto()
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as e:
        raise InvalidArgument(f"not a PEM public key: {e}") from e
    if not isinstance(key, ed.Ed25519PublicKey):
        raise InvalidArgument("the public key is not an Ed25519 key")
    public: Ed25519PublicKey = key
    return public


@dataclass(frozen=True, slots=True)
class Signature:
    """A signed statement about one version's manifest."""

    name: str
    version: int
    manifest_digest: str
    key_id: str
    signed_at: str
    value: str
    expires_at: str | None = None
    algorithm: str = ALGORITHM

    def payload(self) -> bytes:
        """The exact bytes the signature covers."""
        return canonical_json(
            {
                "schema": SIGNATURE_SCHEMA,
                "algorithm": self.algorithm,
                "name": self.name,
                "version": self.version,
                "manifest_digest": self.manifest_digest,
                "key_id": self.key_id,
                "signed_at": self.signed_at,
                "expires_at": self.expires_at,
            }
        )

    def to_dict(self) -> dict[str, Any]:
        d = json.loads(self.payload())
        d["signature"] = self.value
        return dict(d)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Signature:
        """Parse a signature document, or :class:`SignatureError` if malformed."""
        try:
            if d["schema"] != SIGNATURE_SCHEMA:
                raise ValueError(f"unknown schema {d['schema']!r}")
            return cls(
                name=str(d["name"]),
                version=int(d["version"]),
                manifest_digest=str(d["manifest_digest"]),
                key_id=str(d["key_id"]),
                signed_at=str(d["signed_at"]),
                value=str(d["signature"]),
                expires_at=None if d.get("expires_at") is None else str(d["expires_at"]),
                algorithm=str(d["algorithm"]),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise SignatureError(f"malformed signature document: {e}") from e

    @classmethod
    def from_json(cls, data: bytes) -> Signature:
        try:
            doc = json.loads(data)
        except ValueError as e:
            raise SignatureError("malformed signature document: not JSON") from e
        if not isinstance(doc, dict):
            raise SignatureError("malformed signature document: not an object")
        return cls.from_dict(doc)


class SigningKey:
    """A named Ed25519 private key that signs manifests."""

    def __init__(self, name: str, private: Ed25519PrivateKey) -> None:
        self.name = name
        self._private = private
        self.public = private.public_key()
        self.key_id = key_id_of(self.public)

    def sign(
        self, manifest: Mapping[str, Any], *, expires_in: timedelta | None = None
    ) -> Signature:
        """Sign a version's manifest (a dict with at least ``name`` and ``version``)."""
        try:
            name, version = str(manifest["name"]), int(manifest["version"])
        except (KeyError, TypeError, ValueError) as e:
            raise InvalidArgument("a manifest needs a name and a version to be signed") from e
        now = datetime.now(UTC).replace(microsecond=0)
        unsigned = Signature(
            name=name,
            version=version,
            manifest_digest=manifest_digest(manifest),
            key_id=self.key_id,
            signed_at=now.isoformat(),
            value="",
            expires_at=(now + expires_in).isoformat() if expires_in else None,
        )
        value = base64.b64encode(self._private.sign(unsigned.payload())).decode()
        return Signature(**{**_fields(unsigned), "value": value})

    def public_pem(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return self.public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def _fields(sig: Signature) -> dict[str, Any]:
    return {f: getattr(sig, f) for f in Signature.__slots__}


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """A signing key as ``modelport keys list`` shows it."""

    name: str
    key_id: str
    public_key_file: Path
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "key_id": self.key_id,
            "public_key_file": str(self.public_key_file),
            "created_at": self.created_at.isoformat(),
        }


class Keyring:
    """Signing keys in one directory: ``NAME.key`` (private, 0600) and ``NAME.pub``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @classmethod
    def from_settings(cls, settings: Settings) -> Keyring:
        return cls(settings.signing_keys_dir)

    def create(self, name: str) -> SigningKey:
        """Generate a new key pair named ``name``; refuse to overwrite one."""
        from cryptography.hazmat.primitives import serialization

        if not _KEY_NAME.fullmatch(name):
            raise InvalidArgument(f"invalid key name {name[:64]!r}: letters, digits, . _ -")
        private_dir(self.directory)
        priv_path = self.directory / f"{name}.key"
        if priv_path.exists():
            raise AlreadyExists(f"signing key {name!r} already exists")
        key = SigningKey(name, _crypto().Ed25519PrivateKey.generate())
        pem = key._private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        atomic_write(priv_path, pem, mode=0o600)
        atomic_write(self.directory / f"{name}.pub", key.public_pem(), mode=0o644)
        return key

    def load(self, name: str) -> SigningKey:
        """The signing key named ``name``, or :class:`NotFound`."""
        from cryptography.hazmat.primitives import serialization

        if not _KEY_NAME.fullmatch(name):
            raise InvalidArgument(f"invalid key name {name[:64]!r}")
        path = self.directory / f"{name}.key"
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise NotFound(f"no signing key named {name!r}") from None
        except OSError as e:
            raise StorageError(f"cannot read signing key {name!r}: {e.strerror}") from e
        key = serialization.load_pem_private_key(data, password=None)
        if not isinstance(key, _crypto().Ed25519PrivateKey):
            raise InvalidArgument(f"signing key {name!r} is not an Ed25519 key")
        return SigningKey(name, key)

    def list(self) -> list[KeyInfo]:
        """Every key pair in the directory, by name."""
        out: list[KeyInfo] = []
        if not self.directory.is_dir():
            return out
        for pub in sorted(self.directory.glob("*.pub")):
            if not (pub.with_suffix(".key")).exists():
                continue
            key = load_public_key(pub.read_bytes())
            created = datetime.fromtimestamp(pub.stat().st_mtime, UTC)
            out.append(KeyInfo(pub.stem, key_id_of(key), pub, created))
        return out

    def public_keys(self) -> dict[str, Ed25519PublicKey]:
        """The public keys of every signing key here, by key id."""
        return {
            info.key_id: load_public_key(info.public_key_file.read_bytes()) for info in self.list()
        }


def _parse_time(s: str) -> datetime:
    try:
        dt = datetime.fromisoformat(s)
    except ValueError as e:
        raise SignatureError(f"malformed signature time {s[:40]!r}") from e
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


class TrustStore:
    """The public keys whose signatures a loader accepts, and the verification rules."""

    def __init__(self, keys: Mapping[str, Ed25519PublicKey], *, require: bool = False) -> None:
        self.keys = dict(keys)
        self.require = require

    @classmethod
    def from_settings(cls, settings: Settings) -> TrustStore:
        """Own signing keys plus ``trusted_public_keys``; ``require_signatures`` applies."""
        keys = Keyring.from_settings(settings).public_keys()
        for path in settings.trusted_public_keys:
            try:
                public = load_public_key(path.expanduser().read_bytes())
            except OSError as e:
                raise InvalidArgument(f"cannot read trusted key {path}: {e.strerror}") from e
            keys[key_id_of(public)] = public
        return cls(keys, require=settings.require_signatures)

    def verify(
        self,
        manifest: Mapping[str, Any],
        signature: Signature | None,
        *,
        now: datetime | None = None,
    ) -> Signature | None:
        """Check ``signature`` against ``manifest``; return it, or ``None`` if unsigned.

        Raises :class:`SignatureError` when the manifest is unsigned and signatures are
        required, or when the signature is by an untrusted key, does not verify, covers
        another manifest, another model or version, or has expired.
        """
        from cryptography.exceptions import InvalidSignature

        if signature is None:
            if self.require:
                raise SignatureError(
                    f"{manifest.get('name')}:{manifest.get('version')} is not signed and "
                    "signatures are required"
                )
            return None
        ref = f"{manifest.get('name')}:{manifest.get('version')}"
        if signature.algorithm != ALGORITHM:
            raise SignatureError(f"{ref}: unsupported signature algorithm")
        public = self.keys.get(signature.key_id)
        if public is None:
            raise SignatureError(
                f"{ref}: signed by key {signature.key_id[:16]} which is not trusted"
            )
        try:
            public.verify(base64.b64decode(signature.value, validate=True), signature.payload())
        except (InvalidSignature, ValueError):
            raise SignatureError(f"{ref}: signature verification failed") from None
        if (signature.name, signature.version) != (manifest.get("name"), manifest.get("version")):
            raise SignatureError(
                f"{ref}: the signature belongs to {signature.name}:{signature.version}"
            )
        if signature.manifest_digest != manifest_digest(manifest):
            raise SignatureError(
                f"{ref}: signature verification failed (the manifest was changed after signing)"
            )
        if signature.expires_at is not None and (now or datetime.now(UTC)) >= _parse_time(
            signature.expires_at
        ):
            raise SignatureError(f"{ref}: the signature expired at {signature.expires_at}")
        return signature
