"""JWT bearer tokens from an identity provider (OIDC), verified against a JWKS file.

Only asymmetric algorithms are accepted, and only the ones that fit the key a token
names (RSA keys: RS*/PS*; EC keys: ES*; OKP keys: EdDSA), so ``alg: none`` and the
HMAC-with-a-public-key confusion are both refused. ``exp`` is required; ``aud`` and
``iss`` are checked when configured. Roles come from a configured claim (a string or a
list of strings); unknown role names are ignored, so a token with no known role
authenticates but may do nothing (403).

Example:
    >>> verifier = JwtVerifier.from_file(Path("jwks.json"), role_claim="roles")  # doctest: +SKIP
    >>> verifier.verify(token).roles                                            # doctest: +SKIP
    frozenset({<Role.DEPLOYER: 'deployer'>})
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from modelport.core.config import Settings
from modelport.core.errors import InvalidArgument, MissingDependency, Unauthenticated
from modelport.security.policy import Principal, Role

MAX_TOKEN_BYTES = 8192
_FAMILIES: Mapping[str, frozenset[str]] = {
    "RSA": frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}),
    "EC": frozenset({"ES256", "ES384", "ES512"}),
    "OKP": frozenset({"EdDSA"}),
}
_INVALID = "invalid credentials"


def _jwt() -> Any:
    try:
        import jwt
    except ImportError as e:
        raise MissingDependency.for_extra("pyjwt", "security", "JWT bearer tokens") from e
    return jwt


class JwtVerifier:
    """Checks bearer JWTs against the public keys of a JSON Web Key Set."""

    def __init__(
        self,
        jwks: Mapping[str, Any],
        *,
        role_claim: str = "roles",
        audience: str | None = None,
        issuer: str | None = None,
        leeway_seconds: float = 30.0,
    ) -> None:
        jwt = _jwt()
        self.role_claim = role_claim
        self.audience = audience
        self.issuer = issuer
        self.leeway = leeway_seconds
        keys = [k for k in jwks.get("keys", []) if isinstance(k, dict)]
        if any(k.get("kty") == "oct" for k in keys):
            raise InvalidArgument("the JWKS holds a symmetric (oct) key; only public keys belong")
        try:
            self._keys = list(jwt.PyJWKSet.from_dict({"keys": keys}).keys)
        except jwt.PyJWTError as e:
            raise InvalidArgument(f"the JWKS holds no usable public key: {e}") from e

    @classmethod
    def from_file(cls, path: Path, **options: Any) -> JwtVerifier:
        """Read the key set from a JWKS JSON file."""
        try:
            data = json.loads(path.read_bytes())
        except (OSError, ValueError) as e:
            raise InvalidArgument(f"cannot read JWKS file {path.name}: {e}") from e
        if not isinstance(data, dict):
            raise InvalidArgument(f"JWKS file {path.name} is not a JSON object")
        return cls(data, **options)

    @classmethod
    def from_settings(cls, settings: Settings) -> JwtVerifier | None:
        """The verifier the settings configure, or ``None`` without ``jwks_file``."""
        if settings.jwks_file is None:
            return None
        return cls.from_file(
            settings.jwks_file.expanduser(),
            role_claim=settings.jwt_role_claim,
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
        )

    def _key_for(self, header: Mapping[str, Any]) -> Any:
        kid = header.get("kid")
        if kid is None:
            candidates = self._keys if len(self._keys) == 1 else []
        else:
            candidates = [k for k in self._keys if k.key_id == kid]
        alg = header.get("alg")
        for k in candidates:
            allowed = _FAMILIES.get(k.key_type, frozenset())
            if k.key_type != "RSA" or "alg" in k._jwk_data:
                # EC and OKP keys fix the algorithm through their curve; a declared
                # "alg" fixes it for any key.
                allowed = allowed & {k.algorithm_name}
            if alg in allowed:
                return k
        raise Unauthenticated(_INVALID)

    def verify(self, token: str) -> Principal:
        """The principal of a valid token, or :class:`Unauthenticated`."""
        jwt = _jwt()
        if len(token) > MAX_TOKEN_BYTES:
            raise Unauthenticated(_INVALID)
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthenticated(_INVALID) from None
        key = self._key_for(header)
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[header["alg"]],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": ["exp"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("token expired") from None
        except (jwt.PyJWTError, ValueError, TypeError):
            raise Unauthenticated(_INVALID) from None
        return Principal(
            f"jwt:{str(claims.get('sub', '?'))[:128]}",
            self._roles(claims),
            None,
            via="jwt",
        )

    def _roles(self, claims: Mapping[str, Any]) -> frozenset[Role]:
        value = claims.get(self.role_claim)
        names = [value] if isinstance(value, str) else value if isinstance(value, list) else []
        known = {r.value for r in Role}
        return frozenset(Role(n) for n in names if isinstance(n, str) and n in known)
