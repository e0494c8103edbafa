"""JWT bearer tokens against a JWKS: good, expired, wrong signature, alg none, confusions."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from modelport.core.config import Settings
from modelport.core.errors import InvalidArgument, Unauthenticated
from modelport.security.policy import Role
from modelport.security.tokens import JwtVerifier


def jwk(public: Any, kid: str, alg: str | None = None) -> dict[str, Any]:
    algo = {
        rsa.RSAPublicKey: jwt.algorithms.RSAAlgorithm,
        ec.EllipticCurvePublicKey: jwt.algorithms.ECAlgorithm,
        ed25519.Ed25519PublicKey: jwt.algorithms.OKPAlgorithm,
    }
    for base, cls in algo.items():
        if isinstance(public, base):
            d = json.loads(cls.to_jwk(public))
            break
    d["kid"] = kid
    if alg:
        d["alg"] = alg
    return d


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def verifier(rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey) -> JwtVerifier:
    jwks = {"keys": [jwk(rsa_key.public_key(), "rsa-1"), jwk(ec_key.public_key(), "ec-1")]}
    return JwtVerifier(jwks, role_claim="roles", audience="modelport", issuer="https://idp")


def claims(**over: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {
        "sub": "alice",
        "aud": "modelport",
        "iss": "https://idp",
        "iat": now,
        "exp": now + 300,
        "roles": ["deployer", "unknown-role"],
    }
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def sign(key: Any, kid: str, alg: str, **over: Any) -> str:
    return jwt.encode(claims(**over), key, algorithm=alg, headers={"kid": kid})


def b64(d: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()


def test_good_tokens_rsa_and_ec(verifier: JwtVerifier, rsa_key: Any, ec_key: Any):
    p = verifier.verify(sign(rsa_key, "rsa-1", "RS256"))
    assert p.subject == "jwt:alice"
    assert p.roles == {Role.DEPLOYER}
    assert p.via == "jwt"
    p = verifier.verify(sign(rsa_key, "rsa-1", "PS256", roles="viewer"))
    assert p.roles == {Role.VIEWER}
    assert verifier.verify(sign(ec_key, "ec-1", "ES256")).roles == {Role.DEPLOYER}


def test_token_without_known_role_authenticates_with_no_role(verifier: JwtVerifier, rsa_key: Any):
    assert verifier.verify(sign(rsa_key, "rsa-1", "RS256", roles=["root"])).roles == frozenset()
    assert verifier.verify(sign(rsa_key, "rsa-1", "RS256", roles=None)).roles == frozenset()


def test_expired(verifier: JwtVerifier, rsa_key: Any):
    token = sign(rsa_key, "rsa-1", "RS256", exp=int(time.time()) - 3600)
    with pytest.raises(Unauthenticated, match="token expired"):
        verifier.verify(token)


def test_wrong_signature_and_tampered_payload(verifier: JwtVerifier, rsa_key: Any):
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(Unauthenticated, match="invalid credentials"):
        verifier.verify(sign(other, "rsa-1", "RS256"))
    good = sign(rsa_key, "rsa-1", "RS256", roles=["viewer"])
    head, _, sig = good.split(".")
    forged = ".".join([head, b64(claims(roles=["admin"])), sig])
    with pytest.raises(Unauthenticated, match="invalid credentials"):
        verifier.verify(forged)


def test_alg_none_is_refused(verifier: JwtVerifier):
    for header in ({"alg": "none", "kid": "rsa-1"}, {"alg": "None"}, {"alg": "none"}):
        token = f"{b64(header)}.{b64(claims(roles=['admin']))}."
        with pytest.raises(Unauthenticated, match="invalid credentials"):
            verifier.verify(token)


def test_hmac_with_the_public_key_is_refused(verifier: JwtVerifier, rsa_key: Any):
    pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "kid": "rsa-1", "typ": "JWT"}
    import hashlib
    import hmac

    signing_input = f"{b64(header)}.{b64(claims(roles=['admin']))}"
    mac = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    token = signing_input + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
    with pytest.raises(Unauthenticated):
        verifier.verify(token)


def test_algorithm_must_fit_the_key(verifier: JwtVerifier, ec_key: Any):
    # an EC key named by an RSA kid, or an ES384 claim for a P-256 key
    with pytest.raises(Unauthenticated):
        verifier.verify(sign(ec_key, "rsa-1", "ES256"))
    _, body, sig = sign(ec_key, "ec-1", "ES256").split(".")
    relabelled = ".".join([b64({"alg": "ES384", "kid": "ec-1"}), body, sig])
    with pytest.raises(Unauthenticated):
        verifier.verify(relabelled)


@pytest.mark.parametrize(
    "over",
    [
        {"aud": "someone-else"},
        {"aud": None},
        {"iss": "https://evil"},
        {"exp": None},
        {"nbf": int(time.time()) + 3600},
    ],
)
def test_claims_are_enforced(verifier: JwtVerifier, rsa_key: Any, over: dict[str, Any]):
    with pytest.raises(Unauthenticated, match="invalid credentials"):
        verifier.verify(sign(rsa_key, "rsa-1", "RS256", **over))


def test_unknown_kid_garbage_and_oversized(verifier: JwtVerifier, rsa_key: Any):
    for bad in (
        sign(rsa_key, "rsa-9", "RS256"),
        "a.b.c",
        "not-a-jwt",
        "x" * 10_000,
        sign(rsa_key, "rsa-1", "RS256") + "x" * 9000,
    ):
        with pytest.raises(Unauthenticated, match="invalid credentials"):
            verifier.verify(bad)


def test_symmetric_keys_do_not_belong_in_the_jwks():
    with pytest.raises(InvalidArgument, match="symmetric"):
        JwtVerifier({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "h"}]})
    with pytest.raises(InvalidArgument, match="no usable"):
        JwtVerifier({"keys": []})


def test_from_settings(tmp_path: Path, rsa_key: Any):
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [jwk(rsa_key.public_key(), "k1", "RS256")]}))
    assert JwtVerifier.from_settings(Settings(home=tmp_path)) is None
    v = JwtVerifier.from_settings(Settings(home=tmp_path, jwks_file=path, jwt_role_claim="groups"))
    assert v is not None
    token = jwt.encode(
        {"sub": "bob", "exp": int(time.time()) + 60, "groups": "admin"},
        rsa_key,
        algorithm="RS256",
        headers={"kid": "k1"},
    )
    assert v.verify(token).roles == {Role.ADMIN}
    # a key that declares RS256 does not accept PS256
    ps = jwt.encode(
        {"sub": "bob", "exp": int(time.time()) + 60}, rsa_key, "PS256", headers={"kid": "k1"}
    )
    with pytest.raises(Unauthenticated):
        v.verify(ps)
