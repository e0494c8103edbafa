"""Authentication at the edge: one ``Authorization`` value in, one principal out.

REST passes its ``Authorization`` header, gRPC its ``authorization`` metadata; both
get the same answer. ``mpk_…`` bearer values are API keys, other bearer values are
JWTs when a JWKS is configured. Every failure is :class:`Unauthenticated` (HTTP 401
with ``WWW-Authenticate``, gRPC ``UNAUTHENTICATED``) and failures are written to the
audit log, throttled so a flood of bad requests cannot flood the disk.

With authentication off (the default for a server on 127.0.0.1), every call runs as
:data:`~modelport.security.policy.LOCAL_PRINCIPAL`.

Example:
    >>> auth = Authenticator(enabled=True, keys=store)                    # doctest: +SKIP
    >>> p = auth.check(f"Bearer {key}", Permission.INFER, "iris")         # doctest: +SKIP
    >>> p.subject                                                         # doctest: +SKIP
    'key:3f2a9c0d1e4b5a6f'
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from modelport.core.config import Settings
from modelport.core.errors import Unauthenticated
from modelport.security.audit import AuditLog
from modelport.security.keys import TOKEN_PREFIX, KeyStore
from modelport.security.policy import (
    LOCAL_PRINCIPAL,
    PUBLIC,
    Permission,
    Principal,
    authorize,
)
from modelport.security.tokens import JwtVerifier

#: The value of the ``WWW-Authenticate`` header on every 401.
WWW_AUTHENTICATE = 'Bearer realm="modelport"'
MAX_CREDENTIAL_LENGTH = 8192


class _Throttle:
    """At most ``per_minute`` events pass; the rest are counted until the next pass."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._window_start = clock()
        self._passed = 0
        self._suppressed = 0
        self._lock = threading.Lock()

    def admit(self) -> int | None:
        """``None`` to drop this event, else how many were dropped since the last one."""
        with self._lock:
            now = self._clock()
            if now - self._window_start >= 60.0:
                self._window_start, self._passed = now, 0
            if self._passed >= self.per_minute:
                self._suppressed += 1
                return None
            self._passed += 1
            dropped, self._suppressed = self._suppressed, 0
            return dropped


class Authenticator:
    """Turns credentials into a :class:`Principal` and checks it against the policy."""

    def __init__(
        self,
        *,
        enabled: bool,
        keys: KeyStore | None = None,
        jwt: JwtVerifier | None = None,
        audit: AuditLog | None = None,
        failures_audited_per_minute: int = 30,
    ) -> None:
        self.enabled = enabled
        self.keys = keys
        self.jwt = jwt
        self.audit = audit
        self._throttle = _Throttle(failures_audited_per_minute)

    @classmethod
    def from_settings(cls, settings: Settings, *, audit: AuditLog | None = None) -> Authenticator:
        """The authenticator the settings describe (API keys always, JWT if configured)."""
        return cls(
            enabled=settings.auth_enabled,
            keys=KeyStore.from_settings(settings),
            jwt=JwtVerifier.from_settings(settings),
            audit=audit,
        )

    def authenticate(self, authorization: str | None, *, peer: str = "") -> Principal:
        """The caller behind an ``Authorization`` value, or :class:`Unauthenticated`.

        ``peer`` (client address) only goes into the audit record of a failure.
        """
        if not self.enabled:
            return LOCAL_PRINCIPAL
        try:
            return self._authenticate(authorization)
        except Unauthenticated as e:
            self._record_failure(str(e), peer)
            raise

    def _authenticate(self, authorization: str | None) -> Principal:
        if not authorization:
            raise Unauthenticated("authentication required")
        if len(authorization) > MAX_CREDENTIAL_LENGTH:
            raise Unauthenticated("invalid credentials")
        scheme, _, credential = authorization.strip().partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            raise Unauthenticated("invalid credentials: use 'Authorization: Bearer <key>'")
        if credential.startswith(TOKEN_PREFIX):
            if self.keys is None:
                raise Unauthenticated("invalid credentials")
            return self.keys.verify(credential)
        if self.jwt is not None and credential.count(".") == 2:
            return self.jwt.verify(credential)
        raise Unauthenticated("invalid credentials")

    def check(
        self,
        authorization: str | None,
        permission: Permission,
        model: str | None = None,
        *,
        peer: str = "",
    ) -> Principal | None:
        """Authenticate and authorize in one call; call it before any side effect.

        Returns the principal, or ``None`` for a public permission (health), which is
        answered whatever credentials come with it.
        """
        if permission in PUBLIC:
            return None
        principal = self.authenticate(authorization, peer=peer)
        authorize(principal, permission, model)
        return principal

    def _record_failure(self, reason: str, peer: str) -> None:
        if self.audit is None:
            return
        dropped = self._throttle.admit()
        if dropped is None:
            return
        details: dict[str, object] = {"reason": reason}
        if dropped:
            details["unrecorded_failures_before"] = dropped
        self.audit.append(
            actor=f"peer:{peer}" if peer else "unknown",
            action="auth.failure",
            outcome="denied",
            details=details,
        )
