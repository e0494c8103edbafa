"""The policy table: every permission has an entry, roles get what the issue promises."""

from __future__ import annotations

import pytest

from modelport.core.errors import PermissionDenied, Unauthenticated
from modelport.security.policy import (
    LOCAL_PRINCIPAL,
    POLICY,
    PUBLIC,
    Permission,
    Principal,
    Role,
    authorize,
    roles_allowed,
)


def principal(role: Role, models: tuple[str, ...] | None = None) -> Principal:
    return Principal(f"test:{role}", frozenset({role}), models)


def test_every_permission_has_exactly_one_policy_entry():
    assert set(POLICY) == set(Permission)
    assert all(POLICY[p] for p in Permission), "a permission nobody may use is a dead route"


def test_only_health_is_public():
    assert {Permission.HEALTH} == PUBLIC


@pytest.mark.parametrize(
    ("role", "allowed"),
    [
        (Role.ADMIN, set(Permission)),
        (
            Role.DEPLOYER,
            {
                Permission.HEALTH,
                Permission.SERVER_METADATA,
                Permission.METADATA,
                Permission.METRICS,
                Permission.REPOSITORY_INDEX,
                Permission.REPOSITORY_LOAD,
                Permission.REPOSITORY_UNLOAD,
                Permission.REGISTER,
                Permission.CONVERT,
                Permission.OPTIMIZE,
                Permission.ALIAS,
                Permission.ROLLOUT,
                Permission.DELETE,
            },
        ),
        (
            Role.PREDICTOR,
            {
                Permission.HEALTH,
                Permission.SERVER_METADATA,
                Permission.METADATA,
                Permission.REPOSITORY_INDEX,
                Permission.INFER,
                Permission.FEEDBACK,
            },
        ),
        (
            Role.VIEWER,
            {
                Permission.HEALTH,
                Permission.SERVER_METADATA,
                Permission.METADATA,
                Permission.REPOSITORY_INDEX,
                Permission.METRICS,
            },
        ),
    ],
)
def test_each_role_gets_exactly_its_permissions(role: Role, allowed: set[Permission]):
    p = principal(role)
    for perm in Permission:
        if perm in allowed:
            authorize(p, perm, "iris")
        else:
            with pytest.raises(PermissionDenied):
                authorize(p, perm, "iris")


def test_no_principal_is_401_except_public():
    authorize(None, Permission.HEALTH)
    for perm in set(Permission) - PUBLIC:
        with pytest.raises(Unauthenticated):
            authorize(None, perm)


def test_model_scope_globs():
    p = principal(Role.PREDICTOR, ("iris*", "fraud-?"))
    authorize(p, Permission.INFER, "iris")
    authorize(p, Permission.INFER, "iris-v2")
    authorize(p, Permission.INFER, "fraud-a")
    for other in ("digits", "fraud-ab", "IRIS", "xiris"):
        with pytest.raises(PermissionDenied, match="not valid for model"):
            authorize(p, Permission.INFER, other)
    # routes that name no model pass the scope check (listing is filtered separately)
    authorize(p, Permission.REPOSITORY_INDEX)
    assert [m for m in ("iris", "digits") if p.may_access(m)] == ["iris"]


def test_principal_without_roles_may_do_nothing_but_health():
    p = Principal("jwt:nobody", frozenset())
    authorize(p, Permission.HEALTH)
    with pytest.raises(PermissionDenied, match="no role may not metadata"):
        authorize(p, Permission.METADATA)


def test_local_principal_may_do_everything():
    for perm in Permission:
        authorize(LOCAL_PRINCIPAL, perm, "any")


def test_role_parse_and_listing():
    assert Role.parse(" ADMIN ") is Role.ADMIN
    with pytest.raises(Exception, match="roles: admin, deployer, predictor, viewer"):
        Role.parse("root")
    assert roles_allowed(Permission.INFER) == ["admin", "predictor"]
    assert principal(Role.VIEWER).actor == "test:viewer (viewer)"
