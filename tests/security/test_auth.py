"""The authenticator: Authorization values in, principals out, failures audited (throttled)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from modelport.core.config import Settings
from modelport.core.errors import PermissionDenied, Unauthenticated
from modelport.security.audit import AuditLog
from modelport.security.auth import Authenticator, _Throttle
from modelport.security.keys import KeyStore
from modelport.security.policy import LOCAL_PRINCIPAL, Permission, Role


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", auth_enabled=True)


def test_auth_off_means_local_principal(tmp_path: Path):
    auth = Authenticator.from_settings(Settings(home=tmp_path))
    assert auth.authenticate(None) is LOCAL_PRINCIPAL
    assert auth.check("Bearer junk", Permission.KEYS) is LOCAL_PRINCIPAL


def test_bearer_api_key(settings: Settings):
    audit = AuditLog.from_settings(settings)
    auth = Authenticator.from_settings(settings, audit=audit)
    store = KeyStore.from_settings(settings)
    _, token = store.create(Role.PREDICTOR, models=["iris"])
    for header in (f"Bearer {token}", f"bearer {token}", f"  BEARER   {token}  "):
        assert auth.check(header, Permission.INFER, "iris") is not None
    with pytest.raises(PermissionDenied):
        auth.check(f"Bearer {token}", Permission.REPOSITORY_LOAD, "iris")
    with pytest.raises(PermissionDenied):
        auth.check(f"Bearer {token}", Permission.INFER, "digits")
    assert auth.check(None, Permission.HEALTH) is None
    assert auth.check("Bearer junk", Permission.HEALTH) is None
    assert list(audit.events()) == []  # 403s are not authentication failures


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "mpk_x", "Token abc", "Bearer a.b.c"],
)
def test_bad_headers_are_401(settings: Settings, header: str | None):
    auth = Authenticator.from_settings(settings)
    with pytest.raises(Unauthenticated):
        auth.check(header, Permission.METADATA)


def test_failures_are_audited_and_throttled(settings: Settings):
    audit = AuditLog.from_settings(settings)
    auth = Authenticator(
        enabled=True,
        keys=KeyStore.from_settings(settings),
        audit=audit,
        failures_audited_per_minute=3,
    )
    for _ in range(10):
        with pytest.raises(Unauthenticated):
            auth.authenticate("Bearer mpk_" + "0" * 16 + "_" + "A" * 43, peer="10.0.0.7")
    events = list(audit.events())
    assert len(events) == 3
    assert events[0].action == "auth.failure"
    assert events[0].actor == "peer:10.0.0.7"
    assert events[0].details == {"reason": "invalid credentials"}
    assert "mpk_" not in audit.path.read_text()  # the presented secret is never logged


def test_throttle_reports_what_it_dropped():
    now = [0.0]
    t = _Throttle(2, clock=lambda: now[0])
    assert [t.admit() for _ in range(5)] == [0, 0, None, None, None]
    now[0] = 61.0
    assert t.admit() == 3


def test_jwt_through_the_authenticator(settings: Settings, tmp_path: Path):
    key = ed25519.Ed25519PrivateKey.generate()
    jwk = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(key.public_key()))
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [jwk]}))
    s = settings.model_copy(update={"jwks_file": tmp_path / "jwks.json"})
    auth = Authenticator.from_settings(s)
    claims = {"sub": "svc", "exp": int(time.time()) + 60, "roles": "viewer"}
    token = jwt.encode(claims, key, "EdDSA")
    p = auth.check(f"Bearer {token}", Permission.METRICS)
    assert p is not None
    assert p.subject == "jwt:svc"
    with pytest.raises(PermissionDenied):
        auth.check(f"Bearer {token}", Permission.INFER, "iris")
