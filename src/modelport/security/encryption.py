"""Encryption at rest: AES-256-GCM envelope encryption, one data key per artifact.

Each artifact gets a fresh random 256-bit data key. The data key encrypts the artifact;
a master key, held by a :class:`KeyProvider`, encrypts ("wraps") the data key, and the
wrapped key travels in the artifact's header. Rotating the master key re-wraps data keys
(:func:`rewrap`) without touching the artifact bodies, and a cloud KMS plugs in as
another provider.

The model name, version and file path are bound as associated data: an artifact copied
under another model or version does not decrypt. The body is cut into chunks (4 MiB by
default), each sealed with its own nonce (a random prefix, the chunk counter and a
last-chunk flag), so reordered, dropped or truncated chunks fail authentication, and
artifacts beyond GCM's single-call limit work. Decryption returns bytes in memory only
and returns nothing unless every chunk authenticated: a loader never sees unverified
plaintext, and plaintext never touches the disk.

Format: ``MPE1`` · header length (4 bytes, big-endian) · header (canonical JSON: alg,
chunk size, key id, wrapped key, nonce prefix) · chunks (ciphertext + 16-byte tag).

Example:
    >>> provider = LocalKeyProvider(generate_master_key())
    >>> ctx = Context("iris", 3, "model.onnx")
    >>> blob = encrypt(b"weights", provider, ctx)
    >>> decrypt(blob, provider, ctx)
    b'weights'
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol, runtime_checkable

from modelport.core.config import Settings
from modelport.core.errors import DecryptionError, InvalidArgument, MissingDependency

MAGIC = b"MPE1"
ALGORITHM = "AES-256-GCM"
DEFAULT_CHUNK = 4 << 20
MAX_CHUNK = 64 << 20
MAX_HEADER = 4096
TAG = 16
_PREFIX = 7


def _aesgcm(key: bytes) -> Any:
    try:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    except ImportError as e:
        raise MissingDependency.for_extra("cryptography", "security", "Encrypted models") from e
    return AESGCM(key)


def _invalid_tag() -> type[Exception]:
    from cryptography.exceptions import InvalidTag

    return InvalidTag


@dataclass(frozen=True, slots=True)
class Context:
    """What an artifact belongs to; authenticated, not secret."""

    model: str
    version: int
    path: str = ""

    def associated_data(self) -> bytes:
        doc = {"model": self.model, "version": self.version, "path": self.path}
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


@runtime_checkable
class KeyProvider(Protocol):
    """Wraps and unwraps data keys with a master key it never reveals.

    A KMS-backed provider implements the same three members: ``wrap`` and ``unwrap``
    call the KMS's encrypt/decrypt with ``aad`` as the encryption context.
    """

    @property
    def key_id(self) -> str: ...

    def wrap(self, data_key: bytes, aad: bytes) -> bytes: ...

    def unwrap(self, wrapped: bytes, aad: bytes) -> bytes: ...


def generate_master_key() -> bytes:
    """32 random bytes for a new master key."""
    return secrets.token_bytes(32)


def encode_master_key(key: bytes) -> str:
    """The text form of a master key (base64), as key files and settings hold it."""
    return base64.b64encode(key).decode()


class LocalKeyProvider:
    """A master key held in this process (from a key file or the environment)."""

    def __init__(self, master_key: bytes) -> None:
        if len(master_key) != 32:
            raise InvalidArgument("a master key is exactly 32 bytes (AES-256)")
        self._aead = _aesgcm(master_key)
        digest = hashlib.sha256(b"modelport.master-key-id/v1\x00" + master_key).hexdigest()
        self._key_id = "local:" + digest[:16]

    @classmethod
    def from_text(cls, text: str) -> LocalKeyProvider:
        """A provider from the base64 text of a key."""
        try:
            raw = base64.b64decode(text.strip(), validate=True)
        except ValueError:
            raise InvalidArgument("the master key is not valid base64") from None
        return cls(raw)

    @property
    def key_id(self) -> str:
        return self._key_id

    def wrap(self, data_key: bytes, aad: bytes) -> bytes:
        nonce = secrets.token_bytes(12)
        return nonce + bytes(self._aead.encrypt(nonce, data_key, aad))

    def unwrap(self, wrapped: bytes, aad: bytes) -> bytes:
        try:
            return bytes(self._aead.decrypt(wrapped[:12], wrapped[12:], aad))
        except (_invalid_tag(), ValueError):
            raise DecryptionError(
                "cannot unwrap the data key (wrong master key, or the artifact belongs to "
                "another model, version or file)"
            ) from None


def key_provider_from_settings(settings: Settings) -> KeyProvider | None:
    """The provider of ``master_key`` or ``master_key_file``; ``None`` if neither is set."""
    if settings.master_key is not None:
        return LocalKeyProvider.from_text(settings.master_key.get_secret_value())
    if settings.master_key_file is not None:
        path = settings.master_key_file.expanduser()
        try:
            text = path.read_text()
        except OSError as e:
            raise InvalidArgument(f"cannot read the master key file: {e.strerror}") from e
        return LocalKeyProvider.from_text(text)
    return None


def write_master_key_file(path: Path) -> str:
    """Create a new master key file (mode 0600, refusing to overwrite); return its id."""
    key = generate_master_key()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(encode_master_key(key) + "\n")
    return LocalKeyProvider(key).key_id


# ---------------------------------------------------------------------- format


def _nonce(prefix: bytes, counter: int, last: bool) -> bytes:
    return prefix + struct.pack(">I", counter) + (b"\x01" if last else b"\x00")


def _pack_header(chunk: int, key_id: str, wrapped: bytes, prefix: bytes) -> bytes:
    header = json.dumps(
        {
            "alg": ALGORITHM,
            "chunk": chunk,
            "kid": key_id,
            "wrapped": base64.b64encode(wrapped).decode(),
            "nonce": base64.b64encode(prefix).decode(),
        },
        sort_keys=True,
        separators=(",", ":"),
    ).encode()
    return MAGIC + struct.pack(">I", len(header)) + header


def _header(provider: KeyProvider, ctx: Context, chunk: int) -> tuple[bytes, bytes, bytes]:
    data_key = _aesgcm_key()
    wrapped = provider.wrap(data_key, _wrap_aad(provider.key_id, ctx))
    prefix = secrets.token_bytes(_PREFIX)
    return _pack_header(chunk, provider.key_id, wrapped, prefix), data_key, prefix


def _aesgcm_key() -> bytes:
    return secrets.token_bytes(32)


def _body_aad(chunk: int, prefix: bytes, ctx: Context) -> bytes:
    # The chunk size and nonce prefix are authenticated with every chunk; the key id
    # and wrapped key are authenticated by the wrap itself, so a new master key can
    # replace them without touching the body (see rewrap).
    return MAGIC + struct.pack(">I", chunk) + prefix + ctx.associated_data()


def _wrap_aad(key_id: str, ctx: Context) -> bytes:
    return b"modelport.data-key/v1\x00" + key_id.encode() + b"\x00" + ctx.associated_data()


def _chunks(src: BinaryIO, size: int) -> Iterator[tuple[bytes, bool]]:
    current = src.read(size)
    while True:
        following = src.read(size) if len(current) == size else b""
        last = not following
        yield current, last
        if last:
            return
        current = following


def encrypt_stream(
    src: BinaryIO, dst: BinaryIO, provider: KeyProvider, ctx: Context, *, chunk: int = DEFAULT_CHUNK
) -> int:
    """Encrypt ``src`` into ``dst`` chunk by chunk; return the bytes written."""
    if not 0 < chunk <= MAX_CHUNK:
        raise InvalidArgument(f"chunk size must be 1..{MAX_CHUNK}")
    header, data_key, prefix = _header(provider, ctx, chunk)
    aead = _aesgcm(data_key)
    aad = _body_aad(chunk, prefix, ctx)
    written = dst.write(header)
    for counter, (piece, last) in enumerate(_chunks(src, chunk)):
        written += dst.write(aead.encrypt(_nonce(prefix, counter, last), piece, aad))
    return written


def encrypt(
    plaintext: bytes, provider: KeyProvider, ctx: Context, *, chunk: int = DEFAULT_CHUNK
) -> bytes:
    """Encrypt bytes in memory (see the module docstring for the format)."""
    import io

    out = io.BytesIO()
    encrypt_stream(io.BytesIO(plaintext), out, provider, ctx, chunk=chunk)
    return out.getvalue()


def encrypt_file(src: Path, dst: Path, provider: KeyProvider, ctx: Context) -> int:
    """Encrypt the file ``src`` into ``dst`` (ciphertext only reaches the disk)."""
    with open(src, "rb") as fi, open(dst, "xb") as fo:
        n = encrypt_stream(fi, fo, provider, ctx)
        fo.flush()
        os.fsync(fo.fileno())
    return n


def is_encrypted(data: bytes) -> bool:
    """Whether ``data`` starts like an artifact this module encrypted."""
    return data[:4] == MAGIC


def _parse(blob: bytes) -> tuple[dict[str, Any], int]:
    if len(blob) < 8 or blob[:4] != MAGIC:
        raise DecryptionError("not an encrypted modelport artifact")
    (n,) = struct.unpack(">I", blob[4:8])
    if n > MAX_HEADER or len(blob) < 8 + n:
        raise DecryptionError("encrypted artifact header is truncated or malformed")
    raw = blob[8 : 8 + n]
    try:
        header = json.loads(raw)
        ok = (
            header["alg"] == ALGORITHM
            and isinstance(header["chunk"], int)
            and 0 < header["chunk"] <= MAX_CHUNK
            and isinstance(header["kid"], str)
        )
    except (ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        raise DecryptionError("encrypted artifact header is malformed")
    return header, 8 + n


def key_id_of(blob: bytes) -> str:
    """The id of the master key that wrapped this artifact's data key."""
    header, _ = _parse(blob)
    return str(header["kid"])


def decrypt(blob: bytes, provider: KeyProvider, ctx: Context) -> bytes:
    """Authenticate and decrypt an artifact into memory, or raise :class:`DecryptionError`.

    Nothing is returned unless every chunk authenticated and the last one is flagged
    as last; a wrong key, another model's or version's context, a flipped bit or a
    truncation all fail the same way.
    """
    header, offset = _parse(blob)
    data_key, prefix = _open_key(header, provider, ctx)
    aead = _aesgcm(data_key)
    aad = _body_aad(header["chunk"], prefix, ctx)
    step = header["chunk"] + TAG
    body = memoryview(blob)[offset:]
    pieces: list[bytes] = []
    counter = pos = 0
    invalid = _invalid_tag()
    while True:
        last = len(body) - pos <= step
        end = len(body) if last else pos + step
        if end - pos < TAG:
            raise DecryptionError("encrypted artifact is truncated")
        try:
            pieces.append(aead.decrypt(_nonce(prefix, counter, last), body[pos:end], aad))
        except invalid:
            raise DecryptionError(
                "encrypted artifact failed authentication (wrong key, other model or "
                "version, modified or truncated data)"
            ) from None
        if last:
            break
        pos, counter = end, counter + 1
    return b"".join(pieces)


def _open_key(header: dict[str, Any], provider: KeyProvider, ctx: Context) -> tuple[bytes, bytes]:
    if header["kid"] != provider.key_id:
        raise DecryptionError(
            f"the artifact was encrypted with master key {header['kid'][:40]!r}, "
            f"not the configured {provider.key_id}"
        )
    try:
        wrapped = base64.b64decode(header["wrapped"], validate=True)
        prefix = base64.b64decode(header["nonce"], validate=True)
    except (ValueError, TypeError):
        raise DecryptionError("encrypted artifact header is malformed") from None
    if len(prefix) != _PREFIX:
        raise DecryptionError("encrypted artifact header is malformed")
    return provider.unwrap(wrapped, _wrap_aad(provider.key_id, ctx)), prefix


def rewrap(blob: bytes, old: KeyProvider, new: KeyProvider, ctx: Context) -> bytes:
    """The same artifact with its data key wrapped by ``new`` instead of ``old``.

    Only the header changes: the body is neither decrypted nor rewritten, so rotating
    a master key costs one unwrap and one wrap per artifact.
    """
    header, offset = _parse(blob)
    data_key, prefix = _open_key(header, old, ctx)
    wrapped = new.wrap(data_key, _wrap_aad(new.key_id, ctx))
    return _pack_header(int(header["chunk"]), new.key_id, wrapped, prefix) + blob[offset:]
