"""Who may do what: the one table of roles per permission, and ``authorize``.

Every operation a server exposes maps to one :class:`Permission`; every permission has
exactly one entry in :data:`POLICY` naming the roles allowed to use it. Transports
(REST routes, gRPC methods) map their routes to permissions in their own tables, and a
test fails if a route has no entry there, so nothing is reachable by omission.

Roles:

- ``admin``: everything, including API keys and the audit log;
- ``deployer``: register, convert, optimize, load/unload, aliases, rollouts, plus
  reading metadata and metrics to check its work;
- ``predictor``: inference, metadata and feedback;
- ``viewer``: metadata and metrics.

Health checks (liveness/readiness) are the only public permission: orchestrators
probe them without credentials, and they reveal nothing but "up".

Example:
    >>> p = Principal("key:0a1b", frozenset({Role.PREDICTOR}), models=("iris*",))
    >>> authorize(p, Permission.INFER, "iris-v2")
    >>> authorize(p, Permission.REPOSITORY_LOAD, "iris-v2")
    Traceback (most recent call last):
    ...
    modelport.core.errors.PermissionDenied: role predictor may not repository.load
"""

from __future__ import annotations

import enum
import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass

from modelport.core.errors import InvalidArgument, PermissionDenied, Unauthenticated


class Role(enum.StrEnum):
    """The four roles, from most to least powerful."""

    ADMIN = "admin"
    DEPLOYER = "deployer"
    PREDICTOR = "predictor"
    VIEWER = "viewer"

    @classmethod
    def parse(cls, value: str) -> Role:
        """The role named ``value`` (case-insensitive), or :class:`InvalidArgument`.

        Example:
            >>> Role.parse("Deployer")
            <Role.DEPLOYER: 'deployer'>
        """
        try:
            return cls(value.strip().lower())
        except ValueError:
            names = ", ".join(r.value for r in cls)
            raise InvalidArgument(f"unknown role {value!r}; roles: {names}") from None


class Permission(enum.StrEnum):
    """One operation of the platform, as the policy table names it."""

    HEALTH = "health"
    SERVER_METADATA = "server.metadata"
    METADATA = "metadata"
    INFER = "infer"
    FEEDBACK = "feedback"
    METRICS = "metrics"
    REPOSITORY_INDEX = "repository.index"
    REPOSITORY_LOAD = "repository.load"
    REPOSITORY_UNLOAD = "repository.unload"
    REGISTER = "register"
    CONVERT = "convert"
    OPTIMIZE = "optimize"
    ALIAS = "alias"
    ROLLOUT = "rollout"
    DELETE = "delete"
    SERVER_CONFIG = "server.config"
    KEYS = "keys"
    AUDIT = "audit"


_ALL = frozenset(Role)
_ADMIN = frozenset({Role.ADMIN})
_DEPLOY = frozenset({Role.ADMIN, Role.DEPLOYER})
_PREDICT = frozenset({Role.ADMIN, Role.PREDICTOR})
_READ = frozenset({Role.ADMIN, Role.DEPLOYER, Role.VIEWER})

#: THE table: the roles allowed each permission. ``HEALTH`` is public (see PUBLIC).
POLICY: Mapping[Permission, frozenset[Role]] = {
    Permission.HEALTH: _ALL,
    Permission.SERVER_METADATA: _ALL,
    Permission.METADATA: _ALL,
    Permission.INFER: _PREDICT,
    Permission.FEEDBACK: _PREDICT,
    Permission.METRICS: _READ,
    Permission.REPOSITORY_INDEX: _ALL,
    Permission.REPOSITORY_LOAD: _DEPLOY,
    Permission.REPOSITORY_UNLOAD: _DEPLOY,
    Permission.REGISTER: _DEPLOY,
    Permission.CONVERT: _DEPLOY,
    Permission.OPTIMIZE: _DEPLOY,
    Permission.ALIAS: _DEPLOY,
    Permission.ROLLOUT: _DEPLOY,
    Permission.DELETE: _DEPLOY,
    Permission.SERVER_CONFIG: _ADMIN,
    Permission.KEYS: _ADMIN,
    Permission.AUDIT: _ADMIN,
}

#: Permissions that need no credentials at all.
PUBLIC: frozenset[Permission] = frozenset({Permission.HEALTH})


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: who, with which roles, limited to which models.

    ``models`` holds glob patterns (``iris*``, ``fraud-?``); ``None`` means every model.
    ``via`` says how the caller proved itself (``api-key``, ``jwt``, ``none`` when
    authentication is off).

    Example:
        >>> Principal("key:1", frozenset({Role.VIEWER}), models=("iris*",)).may_access("digits")
        False
    """

    subject: str
    roles: frozenset[Role]
    models: tuple[str, ...] | None = None
    via: str = "api-key"

    def may_access(self, model: str) -> bool:
        """Whether ``model`` falls inside this principal's model scope."""
        if self.models is None:
            return True
        return any(fnmatch.fnmatchcase(model, pattern) for pattern in self.models)

    def allows(self, permission: Permission) -> bool:
        """Whether one of this principal's roles grants ``permission``."""
        return bool(self.roles & POLICY[permission])

    @property
    def actor(self) -> str:
        """How the audit log names this principal."""
        roles = ",".join(sorted(r.value for r in self.roles))
        return f"{self.subject} ({roles})" if roles else self.subject


#: The principal every request runs as when authentication is switched off.
LOCAL_PRINCIPAL = Principal("anonymous", _ALL, None, via="none")


def authorize(
    principal: Principal | None, permission: Permission, model: str | None = None
) -> None:
    """Allow the call or raise: 401 without a principal, 403 without the right.

    Checks, in order: public permissions pass; no principal → :class:`Unauthenticated`;
    no role granting ``permission`` → :class:`PermissionDenied`; ``model`` outside the
    principal's scope → :class:`PermissionDenied`. Call it before any side effect.

    Example:
        >>> authorize(None, Permission.HEALTH)
        >>> authorize(None, Permission.INFER)
        Traceback (most recent call last):
        ...
        modelport.core.errors.Unauthenticated: authentication required
    """
    if permission in PUBLIC:
        return
    if principal is None:
        raise Unauthenticated("authentication required")
    if not principal.allows(permission):
        roles = ", ".join(sorted(r.value for r in principal.roles)) or "no role"
        noun = "role" if len(principal.roles) == 1 else "roles"
        raise PermissionDenied(f"{noun} {roles} may not {permission.value}")
    if model is not None and not principal.may_access(model):
        raise PermissionDenied(f"this credential is not valid for model {model[:128]!r}")


def roles_allowed(permission: Permission) -> list[str]:
    """The role names that may use ``permission``, most powerful first (for docs, CLI).

    Example:
        >>> roles_allowed(Permission.REPOSITORY_LOAD)
        ['admin', 'deployer']
    """
    return [r.value for r in Role if r in POLICY[permission]]
