"""The route inventory: every REST route and gRPC method has an explicit policy entry."""

from __future__ import annotations

import pytest

from modelport.security.policy import Permission
from modelport.security.routes import (
    GRPC_METHODS,
    REST_ROUTES,
    UNLISTED,
    classify_grpc,
    classify_rest,
    rest_path_parts,
)

# Served by the REST adapter but not part of its OpenAPI document.
UNDOCUMENTED = {
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/v1/models/{model_name}/labels/{model_version}"),
    ("GET", "/v1/models/{model_name}/labels/{model_version}/metadata"),
}


def concrete(template: str, model: str = "iris", version: str = "1") -> bytes:
    return template.replace("{model_name}", model).replace("{model_version}", version).encode()


def test_every_documented_rest_route_has_exactly_one_policy():
    from modelport.serving.openapi import ROUTES

    served = {(m.upper(), path) for path, m, _ in ROUTES}
    listed = [(r.method, r.template) for r in REST_ROUTES]
    assert len(listed) == len(set(listed)), "a route is listed twice"
    missing = served - set(listed)
    assert missing == set(), f"routes without a policy: {sorted(missing)}"
    unknown = set(listed) - served - UNDOCUMENTED
    assert unknown == set(), f"policy entries for routes the server does not have: {unknown}"


@pytest.mark.parametrize("route", REST_ROUTES, ids=lambda r: f"{r.method} {r.template}")
def test_each_rest_route_classifies_to_its_own_entry(route):
    got = classify_rest(route.method, concrete(route.template))
    assert got.route == route
    assert got.permission == route.permission
    if "{model_name}" in route.template:
        assert got.model == "iris"
    if route.method == "GET":
        assert classify_rest("HEAD", concrete(route.template)).route == route


def test_every_grpc_method_has_a_policy():
    from tritonclient.grpc import service_pb2

    service = service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    names = {f"/inference.GRPCInferenceService/{m.name}" for m in service.methods}
    names |= {"/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch"}
    assert names - set(GRPC_METHODS) == set()
    assert set(GRPC_METHODS) - names == set()
    # the model-name field numbers point at the request's model name field
    for m in service.methods:
        rule = GRPC_METHODS[f"/inference.GRPCInferenceService/{m.name}"]
        if rule.model_field:
            field = m.input_type.fields_by_number[rule.model_field]
            assert field.name in ("name", "model_name"), m.name
        elif rule.permission != UNLISTED:  # admin-only methods need no model scope
            assert not {"name", "model_name"} & set(m.input_type.fields_by_name), m.name


def test_every_served_grpc_rpc_is_listed():
    from modelport.serving.grpc.server import RPCS, SERVICE

    for rpc in RPCS:
        assert f"/{SERVICE}/{rpc}" in GRPC_METHODS


def test_unlisted_routes_need_admin():
    assert UNLISTED == Permission.SERVER_CONFIG
    for method, path in [
        ("DELETE", b"/v2/models/iris"),
        ("PUT", b"/v2/repository/models/iris/load"),
        ("OPTIONS", b"/v2/models/iris/infer"),
        ("GET", b"/v2/repository/models/iris/load"),
        ("POST", b"/v2/logging"),
        ("POST", b"/v2/trace/setting"),
        ("POST", b"/v2/systemsharedmemory/region/x/register"),
        ("GET", b"/V2/models/iris"),
        ("GET", b"/etc/passwd"),
        ("POST", b"/v1/models/iris:classify"),
    ]:
        assert classify_rest(method, path).permission == UNLISTED, (method, path)
    assert classify_grpc("/inference.GRPCInferenceService/NewThing").permission == UNLISTED


@pytest.mark.parametrize(
    "path",
    [
        b"/v2/repository/models/iris/load/",
        b"//v2/repository/models/iris/load",
        b"/v2/repository/models/iris/load?x=1",
        b"/v2/%72epository/models/iris/load",
        b"/v2/repository%2Fmodels/iris/load",
        b"/%76%32/repository/models/iris/load",
    ],
)
def test_spelling_variants_the_adapter_accepts_classify_the_same(path: bytes):
    got = classify_rest("POST", path)
    assert got.permission == Permission.REPOSITORY_LOAD
    assert got.model == "iris"


def test_shared_canonical_form_matches_the_rest_adapter():
    # the adapter routes on exactly these parts (see serving/rest.py _route)
    assert rest_path_parts(b"/v2/models/iris/infer") == ["v2", "models", "iris", "infer"]
    assert rest_path_parts(b"/v2/models/%2e%2e%2fetc/infer") == [
        "v2",
        "models",
        "..",
        "etc",
        "infer",
    ]
    assert rest_path_parts(b"/v2/%2572") == ["v2", "%72"]  # decoded once, never twice
