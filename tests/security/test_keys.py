"""API keys: shown once, stored as a hash, expiring, revocable, scoped, constant-time."""

from __future__ import annotations

import contextlib
import json
import stat
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from modelport.core.errors import InvalidArgument, NotFound, StorageError, Unauthenticated
from modelport.security import keys as keys_mod
from modelport.security.keys import KeyStore, parse_duration, token_digest
from modelport.security.policy import Permission, Role, authorize


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> KeyStore:
    return KeyStore(tmp_path / "auth" / "keys.json", clock=clock)


def test_key_is_high_entropy_and_only_its_hash_is_stored(store: KeyStore):
    record, token = store.create(Role.DEPLOYER, description="ci")
    assert token.startswith(f"mpk_{record.id}_")
    assert len(token) == 4 + 16 + 1 + 43
    raw = store.path.read_text()
    secret = token.rsplit("_", 1)[1]
    assert token not in raw
    assert secret not in raw
    assert token_digest(token) in raw
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.path.parent.stat().st_mode) == 0o700
    doc = json.loads(raw)
    assert doc["keys"][0]["role"] == "deployer"
    assert "sha256" in doc["keys"][0]
    # two keys never share a secret
    _, other = store.create(Role.DEPLOYER)
    assert other != token


def test_valid_key_authenticates_with_its_role_and_scope(store: KeyStore):
    record, token = store.create("predictor", models=["iris*"])
    p = store.verify(token)
    assert p.subject == f"key:{record.id}"
    assert p.roles == {Role.PREDICTOR}
    assert p.models == ("iris*",)
    authorize(p, Permission.INFER, "iris-2")
    with pytest.raises(Exception, match="not valid for model"):
        authorize(p, Permission.INFER, "digits")


def test_unknown_wrong_and_malformed_keys_look_the_same(store: KeyStore):
    _record, token = store.create(Role.VIEWER)
    unknown = "mpk_" + "0" * 16 + token[20:]
    wrong = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    cases = [unknown, wrong, "mpk_short", "", token + "x", token.upper(), "Bearer " + token]
    messages = set()
    for bad in cases:
        with pytest.raises(Unauthenticated) as e:
            store.verify(bad)
        messages.add(str(e.value))
    assert messages == {"invalid credentials"}


def test_every_path_does_one_constant_time_comparison(
    store: KeyStore, monkeypatch: pytest.MonkeyPatch
):
    _, token = store.create(Role.VIEWER)
    calls: list[tuple[int, int]] = []
    real = keys_mod.hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        calls.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(keys_mod.hmac, "compare_digest", spy)
    for candidate in (token, "mpk_" + "f" * 16 + token[20:], token[:-1] + "A", "junk"):
        calls.clear()
        with contextlib.suppress(Unauthenticated):
            store.verify(candidate)
        assert calls == [(64, 64)], candidate


def test_expiry(store: KeyStore, clock: Clock):
    record, token = store.create(Role.VIEWER, expires_in=parse_duration("30d"))
    assert record.expires_at == clock.now + timedelta(days=30)
    store.verify(token)
    clock.now += timedelta(days=30)
    with pytest.raises(Unauthenticated, match="API key expired"):
        store.verify(token)
    assert store.list()[0].to_dict(clock.now)["status"] == "expired"


def test_revocation_reaches_a_running_store_without_restart(tmp_path: Path, clock: Clock):
    path = tmp_path / "keys.json"
    server_side = KeyStore(path, clock=clock)
    cli_side = KeyStore(path, clock=clock)
    record, token = cli_side.create(Role.PREDICTOR)
    server_side.verify(token)
    revoked = cli_side.revoke(record.id)
    assert revoked.revoked_at == clock.now
    with pytest.raises(Unauthenticated, match="API key revoked"):
        server_side.verify(token)
    assert cli_side.revoke(record.id).revoked_at == revoked.revoked_at  # idempotent
    with pytest.raises(NotFound):
        cli_side.revoke("0123456789abcdef")


def test_concurrent_creators_lose_no_key(tmp_path: Path):
    path = tmp_path / "keys.json"
    tokens: list[str] = []

    def worker() -> None:
        for _ in range(5):
            tokens.append(KeyStore(path).create(Role.VIEWER)[1])

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store = KeyStore(path)
    assert len(store.list()) == 20
    for token in tokens:
        store.verify(token)


def test_damaged_key_file_fails_closed(store: KeyStore):
    _, token = store.create(Role.ADMIN)
    store.path.write_text("{not json")
    with pytest.raises(StorageError, match="damaged"):
        store.verify(token)


def test_input_validation(store: KeyStore):
    with pytest.raises(InvalidArgument, match="unknown role"):
        store.create("root")
    with pytest.raises(InvalidArgument, match="invalid model pattern"):
        store.create(Role.VIEWER, models=["../x"])
    with pytest.raises(InvalidArgument, match="at least one"):
        store.create(Role.VIEWER, models=[])
    for bad in ("30", "d", "-1d", "0h", "5y", "1000000w"):
        with pytest.raises(InvalidArgument):
            parse_duration(bad)
    assert parse_duration("12h") == timedelta(hours=12)
    assert parse_duration("2w") == timedelta(weeks=2)
    assert store.list() == []
