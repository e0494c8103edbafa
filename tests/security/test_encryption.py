"""Envelope encryption: roundtrip, wrong key, truncation, modified AAD, rotation."""

from __future__ import annotations

import io
import os
import struct
from pathlib import Path

import numpy as np
import pytest

from modelport.core.config import Settings
from modelport.core.errors import DecryptionError, InvalidArgument
from modelport.security.encryption import (
    MAGIC,
    Context,
    KeyProvider,
    LocalKeyProvider,
    decrypt,
    encode_master_key,
    encrypt,
    encrypt_file,
    generate_master_key,
    is_encrypted,
    key_id_of,
    key_provider_from_settings,
    rewrap,
    write_master_key_file,
)

CTX = Context("iris", 3, "model.onnx")
PAYLOAD = np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes()


@pytest.fixture
def provider() -> LocalKeyProvider:
    return LocalKeyProvider(generate_master_key())


@pytest.mark.parametrize("size", [0, 1, 999, 1000, 1001, 5000])
def test_roundtrip_across_chunk_boundaries(provider: LocalKeyProvider, size: int):
    data = PAYLOAD[:size]
    blob = encrypt(data, provider, CTX, chunk=1000)
    assert is_encrypted(blob)
    assert size < 16 or data[:64] not in blob  # short plaintexts may occur by chance
    assert decrypt(blob, provider, CTX) == data
    assert key_id_of(blob) == provider.key_id


def test_each_artifact_gets_its_own_data_key_and_nonce(provider: LocalKeyProvider):
    a, b = encrypt(PAYLOAD, provider, CTX), encrypt(PAYLOAD, provider, CTX)
    assert a != b
    assert a[-1000:] != b[-1000:]


def test_wrong_master_key(provider: LocalKeyProvider):
    blob = encrypt(PAYLOAD, provider, CTX)
    with pytest.raises(DecryptionError, match="not the configured"):
        decrypt(blob, LocalKeyProvider(generate_master_key()), CTX)


class SameIdProvider:
    """A provider claiming the right key id while holding another key."""

    def __init__(self, real: LocalKeyProvider) -> None:
        self.inner = LocalKeyProvider(generate_master_key())
        self._id = real.key_id

    @property
    def key_id(self) -> str:
        return self._id

    def wrap(self, data_key: bytes, aad: bytes) -> bytes:
        return self.inner.wrap(data_key, aad)

    def unwrap(self, wrapped: bytes, aad: bytes) -> bytes:
        return self.inner.unwrap(wrapped, aad)


def test_wrong_key_behind_the_right_key_id(provider: LocalKeyProvider):
    blob = encrypt(PAYLOAD, provider, CTX)
    impostor = SameIdProvider(provider)
    assert isinstance(impostor, KeyProvider)
    with pytest.raises(DecryptionError, match="cannot unwrap"):
        decrypt(blob, impostor, CTX)


@pytest.mark.parametrize(
    "ctx",
    [Context("iris", 4, "model.onnx"), Context("digits", 3, "model.onnx"), Context("iris", 3, "x")],
)
def test_modified_associated_data(provider: LocalKeyProvider, ctx: Context):
    blob = encrypt(PAYLOAD, provider, CTX)
    with pytest.raises(DecryptionError):
        decrypt(blob, provider, ctx)


def test_truncated_ciphertext(provider: LocalKeyProvider):
    blob = encrypt(PAYLOAD, provider, CTX, chunk=1000)
    header_len = 8 + struct.unpack(">I", blob[4:8])[0]
    chunk = 1000 + 16
    cuts = [
        len(blob) - 1,
        len(blob) - 17,
        header_len + 10 * chunk,  # exactly at a chunk boundary
        header_len + 5,
        header_len,
        header_len - 3,
        6,
        0,
    ]
    for cut in cuts:
        with pytest.raises(DecryptionError):
            decrypt(blob[:cut], provider, CTX)


def test_flipped_bits_and_reordered_chunks(provider: LocalKeyProvider):
    blob = bytearray(encrypt(PAYLOAD, provider, CTX, chunk=1000))
    header_len = 8 + struct.unpack(">I", blob[4:8])[0]
    for pos in (header_len + 1, len(blob) // 2, len(blob) - 1):
        bad = bytearray(blob)
        bad[pos] ^= 0x80
        with pytest.raises(DecryptionError):
            decrypt(bytes(bad), provider, CTX)
    chunk = 1016
    c0 = blob[header_len : header_len + chunk]
    c1 = blob[header_len + chunk : header_len + 2 * chunk]
    swapped = blob[:header_len] + c1 + c0 + blob[header_len + 2 * chunk :]
    with pytest.raises(DecryptionError):
        decrypt(bytes(swapped), provider, CTX)
    # a tampered header (chunk size) fails authentication as well
    with pytest.raises(DecryptionError):
        decrypt(bytes(blob).replace(b'"chunk":1000', b'"chunk":2000'), provider, CTX)


def test_malformed_headers(provider: LocalKeyProvider):
    for blob in (b"", b"MPE1", b"PK\x03\x04" + PAYLOAD, MAGIC + struct.pack(">I", 10**6) + b"{}"):
        with pytest.raises(DecryptionError):
            decrypt(blob, provider, CTX)
    bad_json = MAGIC + struct.pack(">I", 2) + b"{]"
    with pytest.raises(DecryptionError, match="malformed"):
        decrypt(bad_json, provider, CTX)


def test_rewrap_rotates_the_master_key_without_touching_the_body(provider: LocalKeyProvider):
    blob = encrypt(PAYLOAD, provider, CTX, chunk=1000)
    new = LocalKeyProvider(generate_master_key())
    rotated = rewrap(blob, provider, new, CTX)
    assert rotated[-5000:] == blob[-5000:]
    assert decrypt(rotated, new, CTX) == PAYLOAD
    with pytest.raises(DecryptionError):
        decrypt(rotated, provider, CTX)


def test_file_encryption_writes_only_ciphertext(provider: LocalKeyProvider, tmp_path: Path):
    src = tmp_path / "model.onnx"
    src.write_bytes(PAYLOAD)
    dst = tmp_path / "model.onnx.enc"
    encrypt_file(src, dst, provider, CTX)
    assert PAYLOAD[:256] not in dst.read_bytes()
    assert decrypt(dst.read_bytes(), provider, CTX) == PAYLOAD
    with pytest.raises(FileExistsError):
        encrypt_file(src, dst, provider, CTX)


def test_providers_from_settings(tmp_path: Path):
    assert key_provider_from_settings(Settings(home=tmp_path)) is None
    key = generate_master_key()
    by_env = key_provider_from_settings(Settings(home=tmp_path, master_key=encode_master_key(key)))
    path = tmp_path / "master.key"
    kid = write_master_key_file(path)
    assert (path.stat().st_mode & 0o777) == 0o600
    by_file = key_provider_from_settings(Settings(home=tmp_path, master_key_file=path))
    assert by_env is not None
    assert by_file is not None
    assert by_file.key_id == kid
    assert by_env.key_id == LocalKeyProvider(key).key_id
    with pytest.raises(FileExistsError):
        write_master_key_file(path)
    with pytest.raises(InvalidArgument):
        LocalKeyProvider.from_text("not base64!")
    with pytest.raises(InvalidArgument):
        LocalKeyProvider(os.urandom(16))
    secret = Settings(home=tmp_path, master_key=encode_master_key(key))
    assert encode_master_key(key) not in repr(secret)


def test_streaming_large_payload_in_chunks(provider: LocalKeyProvider):
    from modelport.security.encryption import encrypt_stream

    data = PAYLOAD * 20
    out = io.BytesIO()
    encrypt_stream(io.BytesIO(data), out, provider, CTX, chunk=4096)
    assert decrypt(out.getvalue(), provider, CTX) == data
