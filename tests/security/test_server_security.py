"""The security suite against a real server: keys, roles × routes, variants, hostile input.

Every case ends by checking that the server is still live and that a valid request
still succeeds (threats.md §5 convention).
"""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from tritonclient.grpc import service_pb2 as pb

from modelport.core.config import Settings
from modelport.registry import Registry
from modelport.security.audit import AuditLog
from modelport.security.keys import KeyStore
from modelport.security.policy import POLICY, PUBLIC, Permission, Role
from modelport.security.routes import GRPC_METHODS, REST_ROUTES, RestRoute
from modelport.serving.config import ModelConfig, ServeConfig
from tests.security.server_harness import SecureServer, opened_files, raw_request

IRIS_ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
V2_BODY = json.dumps(
    {"inputs": [{"name": "X", "shape": [2, 4], "datatype": "FP32", "data": IRIS_ROWS}]}
).encode()
TFS_BODY = json.dumps({"instances": IRIS_ROWS}).encode()
MAX_BODY = 256 * 1024
ROLES = [Role.ADMIN, Role.DEPLOYER, Role.PREDICTOR, Role.VIEWER]
LEAKS = ("Traceback", "/tmp", "/home", "site-packages", "mpk_", '.py"', 'File "')


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, iris_onnx: Path, iris_onnx_b: Path) -> Settings:
    settings = Settings(home=tmp_path_factory.mktemp("secure-home"), auth_enabled=True)
    reg = Registry.from_settings(settings)
    reg.register(iris_onnx, "iris")
    reg.set_alias("iris", "production", 1)
    reg.register(iris_onnx_b, "other")
    reg.register(iris_onnx, "spare")
    reg.close()
    return settings


@pytest.fixture(scope="module")
def keys(home: Settings) -> dict[str, str]:
    store = KeyStore.from_settings(home)
    out = {role.value: store.create(role)[1] for role in ROLES}
    out["scoped"] = store.create(Role.PREDICTOR, models=["iris"])[1]
    return out


@pytest.fixture(scope="module")
def server(home: Settings, keys: dict[str, str]) -> Iterator[SecureServer]:
    config = ServeConfig.load(
        None,
        {
            "models": [ModelConfig(ref="iris"), ModelConfig(ref="other")],
            "max_body_bytes": MAX_BODY,
            "poll_interval_s": 60,
        },
    )
    srv = SecureServer(home, config).start()
    yield srv
    srv.stop()


def call(
    server: SecureServer,
    method: str,
    target: str | bytes,
    key: str | None = None,
    body: bytes = b"",
    **kw: Any,
) -> Any:
    headers = dict(kw.pop("headers", {}))
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    if body:
        headers.setdefault("Content-Type", "application/json")
    t = target.encode() if isinstance(target, str) else target
    return raw_request(server.http_port, method, t, headers=headers, body=body, **kw)


def assert_alive(server: SecureServer, keys: dict[str, str]) -> None:
    live = call(server, "GET", "/v2/health/live")
    assert live.status == 200, live.body
    r = call(server, "POST", "/v2/models/iris/infer", keys["predictor"], V2_BODY)
    assert r.status == 200, r.body
    assert r.json()["outputs"]


def assert_clean_error(r: Any) -> None:
    text = r.body.decode(errors="replace")
    for leak in LEAKS:
        assert leak not in text, text
    assert set(r.json()) == {"error"}


# ----------------------------------------------------------------------------- credentials


def test_missing_wrong_unknown_expired_revoked_keys(server: SecureServer, keys: dict[str, str]):
    store = KeyStore.from_settings(server.settings)
    expiring_record, expiring = store.create(Role.PREDICTOR, expires_in=timedelta(seconds=1))
    revoked_record, revoked = store.create(Role.PREDICTOR)
    assert call(server, "POST", "/v2/models/iris/infer", revoked, V2_BODY).status == 200
    store.revoke(revoked_record.id)
    good = keys["predictor"]
    cases: dict[str, dict[str, str]] = {
        "missing": {},
        "wrong": {"Authorization": f"Bearer {good[:-4]}AAAA"},
        "unknown": {"Authorization": "Bearer mpk_" + "0" * 16 + "_" + "A" * 43},
        "revoked": {"Authorization": f"Bearer {revoked}"},
        "basic": {"Authorization": "Basic YWRtaW46YWRtaW4="},
        "bare key": {"Authorization": good},
        "empty bearer": {"Authorization": "Bearer "},
        "garbage jwt": {"Authorization": "Bearer eyJhbGciOiJub25lIn0.eyJyb2xlcyI6ImFkbWluIn0."},
    }
    time.sleep(1.1)
    cases["expired"] = {"Authorization": f"Bearer {expiring}"}
    for name, headers in cases.items():
        r = call(server, "POST", "/v2/models/iris/infer", body=V2_BODY, headers=headers)
        assert r.status == 401, (name, r.body)
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert_clean_error(r)
        assert_alive(server, keys)
    # unknown and wrong keys are indistinguishable
    bodies = {
        call(server, "GET", "/v2", body=b"", headers=cases[c]).body for c in ("wrong", "unknown")
    }
    assert len(bodies) == 1
    # two Authorization headers: refused, whatever they hold
    r = raw_request(
        server.http_port,
        "GET",
        b"/v2",
        headers={"Authorization": f"Bearer {good}", "authorization": f"Bearer {keys['admin']}"},
    )
    assert r.status == 401
    assert expiring_record.id not in r.body.decode()
    # failures were audited without the secrets, and the chain is intact
    log = AuditLog.from_settings(server.settings)
    failures = [e for e in log.events() if e.action == "auth.failure"]
    assert len(failures) >= len(cases)
    assert "mpk_" not in log.path.read_text()
    assert log.verify().ok


# ----------------------------------------------------------------------------- roles × routes


def _request_for(route: RestRoute) -> tuple[str, bytes]:
    model = "spare" if "repository/models" in route.template else "iris"
    path = route.template.replace("{model_name}", model).replace("{model_version}", "1")
    if route.template.startswith("/v1") and "labels" in route.template:
        path = path.replace("/labels/1", "/labels/production")
    body = b""
    if route.permission == Permission.INFER:
        body = TFS_BODY if route.template.startswith("/v1") else V2_BODY
    elif route.method == "POST":
        body = b"{}"
    return path, body


@pytest.mark.parametrize("route", REST_ROUTES, ids=lambda r: f"{r.method} {r.template}")
def test_each_role_against_each_rest_route(
    server: SecureServer, keys: dict[str, str], route: RestRoute
):
    path, body = _request_for(route)
    for role in [None, *ROLES]:
        key = keys[role.value] if role else None
        r = call(server, route.method, path, key, body)
        if route.permission in PUBLIC:
            assert r.status not in (401, 403), (role, r.status)
        elif role is None:
            assert r.status == 401, r.body
        elif role in POLICY[route.permission]:
            assert r.status not in (401, 403), (role, r.status, r.body)
        else:
            assert r.status == 403, (role, r.status, r.body)
            assert_clean_error(r)
    assert_alive(server, keys)


def _spare_loaded(server: SecureServer) -> bool:
    return "spare" in server.app.manager.models and not server.app.manager.models["spare"].unloaded


ROUTE_VARIANTS = [
    ("POST", b"/v2/repository/models/spare/load"),
    ("POST", b"/v2/repository/models/spare/load/"),
    ("POST", b"//v2//repository/models/spare/load"),
    ("POST", b"/v2/repository/models/spare/load?x=1"),
    ("POST", b"/v2/%72epository/models/spare/load"),
    ("POST", b"/%76%32/repository/models/spare/load"),
    ("POST", b"/v2/repository%2Fmodels%2Fspare%2Fload"),
    ("POST", b"/V2/repository/models/spare/load"),
    ("POST", b"/v2/Repository/models/spare/load"),
    ("PUT", b"/v2/repository/models/spare/load"),
    ("GET", b"/v2/repository/models/spare/load"),
    ("HEAD", b"/v2/repository/models/spare/load"),
    ("OPTIONS", b"/v2/repository/models/spare/load"),
    ("DELETE", b"/v2/models/iris"),
    ("POST", b"/v2/logging"),
]


@pytest.mark.parametrize(("method", "target"), ROUTE_VARIANTS)
def test_route_spelling_variants_have_no_side_effect_for_read_only_roles(
    server: SecureServer, keys: dict[str, str], method: str, target: bytes
):
    assert not _spare_loaded(server)
    for role in ("viewer", "predictor"):
        for override in ({}, {"X-HTTP-Method-Override": "POST"}):
            r = call(server, method, target, keys[role], b"{}", headers=override)
            assert r.status in (403, 404, 405), (role, r.status, r.body)
            if r.status != 404:
                assert r.status != 200
    assert not _spare_loaded(server)
    assert_alive(server, keys)


def test_load_and_unload_by_a_deployer_work(server: SecureServer, keys: dict[str, str]):
    r = call(server, "POST", "/v2/repository/models/spare/load", keys["deployer"], b"{}")
    assert r.status == 200, r.body
    assert _spare_loaded(server)
    r = call(server, "POST", "/v2/repository/models/spare/unload", keys["deployer"], b"{}")
    assert r.status == 200, r.body
    assert not _spare_loaded(server)
    assert_alive(server, keys)


def test_model_scoped_key(server: SecureServer, keys: dict[str, str]):
    scoped = keys["scoped"]
    assert call(server, "POST", "/v2/models/iris/infer", scoped, V2_BODY).status == 200
    for path in ("/v2/models/other/infer", "/v2/models/other/versions/1/infer"):
        r = call(server, "POST", path, scoped, V2_BODY)
        assert r.status == 403
        assert_clean_error(r)
    assert call(server, "POST", "/v1/models/other:predict", scoped, TFS_BODY).status == 403
    assert call(server, "GET", "/v2/models/other", scoped).status == 403
    assert_alive(server, keys)


# ----------------------------------------------------------------------------- hostile input

TRAVERSALS = [
    b"..%2fx",
    b"%2e%2e%2f",
    b"%2e%2e%2fetc%2fpasswd",
    b"..",
    b"..%5c..%5cetc",
    b"%2fetc%2fpasswd",
    b"iris%00.onnx",
    b"%20..",
    b"a" * 300,
    b"%252e%252e%252f",
]


@pytest.mark.parametrize("name", TRAVERSALS, ids=lambda n: n[:24].decode())
def test_traversal_names_on_every_name_route(
    server: SecureServer, keys: dict[str, str], name: bytes
):
    admin = keys["admin"]
    with opened_files() as opened:
        for route in REST_ROUTES:
            if "{model_name}" not in route.template:
                continue
            tmpl = route.template.encode()
            target = tmpl.replace(b"{model_name}", name).replace(b"{model_version}", b"1")
            _, body = _request_for(route)
            r = call(server, route.method, target, admin, body)
            assert r.status in (400, 404), (target, r.status, r.body)
            assert_clean_error(r)
        Path(__file__).read_bytes()  # control: the hook does see opens
    assert __file__ in opened
    assert not [p for p in opened if "passwd" in p or "/.." in p or "\x00" in p]
    for name_in_version in (b"..%2f..%2fetc", b"%00"):
        r = call(server, "GET", b"/v2/models/iris/versions/" + name_in_version, admin)
        assert r.status in (400, 404)
    assert_alive(server, keys)


def test_oversized_compressed_nested_and_pickle_bodies(server: SecureServer, keys: dict[str, str]):
    key = keys["predictor"]
    big = b'{"inputs":[' + b" " * (MAX_BODY + 10) + b"]}"
    r = call(server, "POST", "/v2/models/iris/infer", key, big)
    assert r.status == 413
    r = call(server, "POST", "/v2/models/iris/infer", key, big, chunked=True)
    assert r.status == 413
    bomb = gzip.compress(b'{"inputs":[' + b" " * (20 << 20) + b"]}", 9)
    assert len(bomb) < MAX_BODY
    r = call(
        server, "POST", "/v2/models/iris/infer", key, bomb, headers={"Content-Encoding": "gzip"}
    )
    assert r.status == 413
    nested = b'{"inputs":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    r = call(server, "POST", "/v2/models/iris/infer", key, nested[: MAX_BODY - 1])
    assert r.status == 400
    deep = b'{"inputs":' + b"[" * 5000 + b"]" * 5000 + b"}"
    r = call(server, "POST", "/v2/models/iris/infer", key, deep)
    assert r.status == 400
    assert "depth" in r.json()["error"]
    for ctype in ("application/x-pickle", "application/vnd.bentoml+pickle", "text/x-python"):
        r = call(
            server,
            "POST",
            "/v2/models/iris/infer",
            key,
            b"\x80\x04.",
            headers={"Content-Type": ctype},
        )
        assert r.status == 415, ctype
    for r in (call(server, "POST", "/v2/models/iris/infer", key, b'{"inputs": [}'),):
        assert r.status == 400
        assert_clean_error(r)
    assert_alive(server, keys)


def test_foreign_host_and_cross_origin_requests(server: SecureServer, keys: dict[str, str]):
    admin = keys["admin"]
    r = call(server, "GET", "/v2", admin, headers={"Host": "attacker.example"})
    assert r.status == 403
    for host in ("localhost:1", "[::1]:1", f"127.0.0.1:{server.http_port}"):
        assert call(server, "GET", "/v2", admin, headers={"Host": host}).status == 200
    r = call(
        server,
        "POST",
        "/v2/repository/models/spare/load",
        admin,
        b"{}",
        headers={"Origin": "https://attacker.example"},
    )
    assert r.status == 403
    r = call(
        server,
        "POST",
        "/v2/repository/models/spare/load",
        admin,
        b"{}",
        headers={"Sec-Fetch-Site": "cross-site"},
    )
    assert r.status == 403
    assert not _spare_loaded(server)
    assert_alive(server, keys)


# ----------------------------------------------------------------------------- gRPC

GRPC_REQUESTS: dict[str, Any] = {
    "ServerLive": pb.ServerLiveRequest(),
    "ServerReady": pb.ServerReadyRequest(),
    "ModelReady": pb.ModelReadyRequest(name="iris"),
    "ServerMetadata": pb.ServerMetadataRequest(),
    "ModelMetadata": pb.ModelMetadataRequest(name="iris"),
    "ModelConfig": pb.ModelConfigRequest(name="iris"),
    "ModelStatistics": pb.ModelStatisticsRequest(name="iris"),
    "RepositoryIndex": pb.RepositoryIndexRequest(),
    "RepositoryModelLoad": pb.RepositoryModelLoadRequest(model_name="spare"),
    "RepositoryModelUnload": pb.RepositoryModelUnloadRequest(model_name="spare"),
    "SystemSharedMemoryStatus": pb.SystemSharedMemoryStatusRequest(),
    "TraceSetting": pb.TraceSettingRequest(),
    "LogSettings": pb.LogSettingsRequest(),
}


def infer_request(model: str = "iris") -> Any:
    import numpy as np

    req = pb.ModelInferRequest(model_name=model)
    t = req.inputs.add(name="X", datatype="FP32", shape=[2, 4])
    req.raw_input_contents.append(np.asarray(IRIS_ROWS, np.float32).tobytes())
    del t
    return req


def grpc_call(
    server: SecureServer, rpc: str, request: Any, key: str | None
) -> tuple[grpc.StatusCode, Any]:
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        fn = channel.unary_unary(
            f"/inference.GRPCInferenceService/{rpc}",
            request_serializer=lambda m: m if isinstance(m, bytes) else m.SerializeToString(),
            response_deserializer=lambda b: b,
        )
        metadata = [("authorization", f"Bearer {key}")] if key else []
        try:
            return grpc.StatusCode.OK, fn(request, metadata=metadata, timeout=30)
        except grpc.RpcError as e:
            return e.code(), e.details()


def test_each_role_against_each_grpc_method(server: SecureServer, keys: dict[str, str]):
    requests = {**GRPC_REQUESTS, "ModelInfer": infer_request()}
    for rpc, request in requests.items():
        permission = GRPC_METHODS[f"/inference.GRPCInferenceService/{rpc}"].permission
        for role in [None, *ROLES]:
            code, detail = grpc_call(server, rpc, request, keys[role.value] if role else None)
            if permission in PUBLIC:
                assert code == grpc.StatusCode.OK, (rpc, role)
            elif role is None:
                assert code == grpc.StatusCode.UNAUTHENTICATED, (rpc, detail)
            elif role in POLICY[permission]:
                assert code not in (
                    grpc.StatusCode.UNAUTHENTICATED,
                    grpc.StatusCode.PERMISSION_DENIED,
                ), (rpc, role, code, detail)
            else:
                assert code == grpc.StatusCode.PERMISSION_DENIED, (rpc, role, code, detail)
    assert not _spare_loaded(server)  # the last allowed call was an unload
    code, _ = grpc_call(server, "ModelInfer", infer_request(), keys["predictor"])
    assert code == grpc.StatusCode.OK
    assert_alive(server, keys)


def test_grpc_credentials_scope_and_hostile_messages(server: SecureServer, keys: dict[str, str]):
    for bad in (None, "mpk_" + "0" * 16 + "_" + "A" * 43, keys["admin"][:-3] + "xyz"):
        code, _ = grpc_call(server, "ModelInfer", infer_request(), bad)
        assert code == grpc.StatusCode.UNAUTHENTICATED
    scoped = keys["scoped"]
    assert grpc_call(server, "ModelInfer", infer_request("iris"), scoped)[0] == grpc.StatusCode.OK
    code, _ = grpc_call(server, "ModelInfer", infer_request("other"), scoped)
    assert code == grpc.StatusCode.PERMISSION_DENIED
    # the model name appears twice on the wire: the last one counts (as in protobuf)
    twice = infer_request("iris").SerializeToString() + b"\x0a\x05other"
    code, _ = grpc_call(server, "ModelInfer", twice, scoped)
    assert code == grpc.StatusCode.PERMISSION_DENIED
    admin = keys["admin"]
    for name in ("../x", "/etc/passwd", "iris\x00", "a" * 300, "%2e%2e%2f"):
        code, _ = grpc_call(server, "ModelInfer", infer_request(name), admin)
        assert code == grpc.StatusCode.INVALID_ARGUMENT, name
    code, _ = grpc_call(server, "ModelInfer", b"\xff\xff\xff garbage", admin)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    code, _ = grpc_call(server, "ModelInfer", b"\x0a" + b"\xff" * 12, scoped)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    big = infer_request()
    big.raw_input_contents[0] = b"\0" * (MAX_BODY + 1024)
    code, _ = grpc_call(server, "ModelInfer", big, admin)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert status.status == health_pb2.HealthCheckResponse.SERVING
    assert grpc_call(server, "ModelInfer", infer_request(), keys["predictor"])[0] == (
        grpc.StatusCode.OK
    )
    assert_alive(server, keys)


def grpc_stream(
    server: SecureServer, requests: list[Any], key: str | None
) -> tuple[grpc.StatusCode, list[Any]]:
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        fn = channel.stream_stream(
            "/inference.GRPCInferenceService/ModelStreamInfer",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=pb.ModelStreamInferResponse.FromString,
        )
        metadata = [("authorization", f"Bearer {key}")] if key else []
        answers: list[Any] = []
        try:
            for answer in fn(iter(requests), metadata=metadata, timeout=30):
                answers.append(answer)
        except grpc.RpcError as e:
            return e.code(), answers
        return grpc.StatusCode.OK, answers


def test_stream_infer_is_authenticated_and_scoped(server: SecureServer, keys: dict[str, str]):
    code, answers = grpc_stream(server, [infer_request()], None)
    assert (code, answers) == (grpc.StatusCode.UNAUTHENTICATED, [])
    code, answers = grpc_stream(server, [infer_request()], keys["viewer"])
    assert (code, answers) == (grpc.StatusCode.PERMISSION_DENIED, [])
    code, answers = grpc_stream(server, [infer_request("iris")] * 3, keys["scoped"])
    assert code == grpc.StatusCode.OK
    assert [a.error_message for a in answers] == ["", "", ""]
    # a request for a model outside the key's scope ends the stream, nothing runs for it
    code, answers = grpc_stream(server, [infer_request("other")], keys["scoped"])
    assert (code, answers) == (grpc.StatusCode.PERMISSION_DENIED, [])
    assert_alive(server, keys)
