"""Every REST route and gRPC method of the server, each with its permission.

These two tables are the inventory the policy is enforced from. A request whose route
is not in the table is not let through by omission: it needs ``server.config``
(admin only), and the server then answers it as usual (404, 405, UNIMPLEMENTED). A test
compares the tables with the routes the server really has (its OpenAPI document and the
gRPC service descriptor) and fails on any route without an entry.

REST paths are parsed exactly as the REST adapter parses them (raw path, query cut off,
one percent-decoding, slashes stripped at both ends, split on ``/``), so a spelling
that reaches a handler is classified as that handler: one canonicalizer, no
differential between the check and the use.

Example:
    >>> rule = classify_rest("POST", b"/v2/repository/models/iris/load")
    >>> rule.permission.value, rule.model
    ('repository.load', 'iris')
    >>> classify_rest("DELETE", b"/v2/models/iris").permission.value
    'server.config'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote

from modelport.security.policy import Permission

P = Permission
#: The permission of anything not in the tables: admin only (fail closed).
UNLISTED = Permission.SERVER_CONFIG


@dataclass(frozen=True, slots=True)
class RestRoute:
    """One REST route: method, path template (OpenAPI style) and its permission."""

    method: str
    template: str
    permission: Permission


#: THE REST table (HEAD is answered like GET, so it is checked like GET).
REST_ROUTES: tuple[RestRoute, ...] = tuple(
    RestRoute(m, t, p)
    for m, t, p in [
        ("GET", "/v2", P.SERVER_METADATA),
        ("GET", "/v2/health/live", P.HEALTH),
        ("GET", "/v2/health/ready", P.HEALTH),
        ("GET", "/v2/models", P.REPOSITORY_INDEX),
        ("GET", "/v2/models/stats", P.METRICS),
        ("GET", "/v2/models/{model_name}", P.METADATA),
        ("GET", "/v2/models/{model_name}/versions/{model_version}", P.METADATA),
        ("GET", "/v2/models/{model_name}/ready", P.METADATA),
        ("GET", "/v2/models/{model_name}/versions/{model_version}/ready", P.METADATA),
        ("GET", "/v2/models/{model_name}/config", P.METADATA),
        ("GET", "/v2/models/{model_name}/versions/{model_version}/config", P.METADATA),
        ("GET", "/v2/models/{model_name}/stats", P.METRICS),
        ("GET", "/v2/models/{model_name}/versions/{model_version}/stats", P.METRICS),
        ("POST", "/v2/models/{model_name}/infer", P.INFER),
        ("POST", "/v2/models/{model_name}/versions/{model_version}/infer", P.INFER),
        ("POST", "/v2/models/{model_name}/feedback", P.FEEDBACK),
        ("POST", "/v2/models/{model_name}/versions/{model_version}/feedback", P.FEEDBACK),
        ("GET", "/v2/models/{model_name}/drift", P.METRICS),
        ("GET", "/v2/models/{model_name}/versions/{model_version}/drift", P.METRICS),
        ("GET", "/v2/models/{model_name}/performance", P.METRICS),
        ("GET", "/v2/models/{model_name}/versions/{model_version}/performance", P.METRICS),
        ("POST", "/v2/repository/index", P.REPOSITORY_INDEX),
        ("POST", "/v2/repository/models/{model_name}/load", P.REPOSITORY_LOAD),
        ("POST", "/v2/repository/models/{model_name}/unload", P.REPOSITORY_UNLOAD),
        ("GET", "/v1/models/{model_name}", P.METADATA),
        ("GET", "/v1/models/{model_name}/versions/{model_version}", P.METADATA),
        ("GET", "/v1/models/{model_name}/metadata", P.METADATA),
        ("GET", "/v1/models/{model_name}/versions/{model_version}/metadata", P.METADATA),
        ("GET", "/v1/models/{model_name}/labels/{model_version}", P.METADATA),
        ("GET", "/v1/models/{model_name}/labels/{model_version}/metadata", P.METADATA),
        ("POST", "/v1/models/{model_name}:predict", P.INFER),
        ("POST", "/v1/models/{model_name}/versions/{model_version}:predict", P.INFER),
        ("POST", "/v1/models/{model_name}/labels/{model_version}:predict", P.INFER),
        ("GET", "/metrics", P.METRICS),
        ("GET", "/openapi.json", P.SERVER_METADATA),
        ("GET", "/docs", P.SERVER_METADATA),
    ]
)


@dataclass(frozen=True, slots=True)
class GrpcMethod:
    """One gRPC method: its permission and the request field naming the model (if any)."""

    permission: Permission
    model_field: int = 0  # protobuf field number of the model name; 0 = none


_INFERENCE = "/inference.GRPCInferenceService/"
_HEALTH = "/grpc.health.v1.Health/"

#: THE gRPC table: full method name → permission (and where the model name is).
GRPC_METHODS: Mapping[str, GrpcMethod] = {
    _INFERENCE + "ServerLive": GrpcMethod(P.HEALTH),
    _INFERENCE + "ServerReady": GrpcMethod(P.HEALTH),
    _INFERENCE + "ModelReady": GrpcMethod(P.METADATA, 1),
    _INFERENCE + "ServerMetadata": GrpcMethod(P.SERVER_METADATA),
    _INFERENCE + "ModelMetadata": GrpcMethod(P.METADATA, 1),
    _INFERENCE + "ModelInfer": GrpcMethod(P.INFER, 1),
    _INFERENCE + "ModelStreamInfer": GrpcMethod(P.INFER, 1),
    _INFERENCE + "ModelConfig": GrpcMethod(P.METADATA, 1),
    _INFERENCE + "ModelStatistics": GrpcMethod(P.METRICS, 1),
    _INFERENCE + "RepositoryIndex": GrpcMethod(P.REPOSITORY_INDEX),
    _INFERENCE + "RepositoryModelLoad": GrpcMethod(P.REPOSITORY_LOAD, 2),
    _INFERENCE + "RepositoryModelUnload": GrpcMethod(P.REPOSITORY_UNLOAD, 2),
    _INFERENCE + "SystemSharedMemoryStatus": GrpcMethod(P.SERVER_CONFIG),
    _INFERENCE + "SystemSharedMemoryRegister": GrpcMethod(P.SERVER_CONFIG),
    _INFERENCE + "SystemSharedMemoryUnregister": GrpcMethod(P.SERVER_CONFIG),
    _INFERENCE + "CudaSharedMemoryStatus": GrpcMethod(P.SERVER_CONFIG),
    _INFERENCE + "CudaSharedMemoryRegister": GrpcMethod(P.SERVER_CONFIG),
    _INFERENCE + "CudaSharedMemoryUnregister": GrpcMethod(P.SERVER_CONFIG),
    _INFERENCE + "TraceSetting": GrpcMethod(P.SERVER_CONFIG),
    _INFERENCE + "LogSettings": GrpcMethod(P.SERVER_CONFIG),
    _HEALTH + "Check": GrpcMethod(P.HEALTH),
    _HEALTH + "Watch": GrpcMethod(P.HEALTH),
}


@dataclass(frozen=True, slots=True)
class Classified:
    """The permission a request needs, and the model it names (if any)."""

    permission: Permission
    model: str | None = None
    route: RestRoute | None = None


def rest_path_parts(raw_path: bytes) -> list[str]:
    """The path segments as the REST adapter routes them (the shared canonical form).

    Example:
        >>> rest_path_parts(b"//v2/models/iris%2Finfer/?x=1")
        ['v2', 'models', 'iris', 'infer']
    """
    path = raw_path.split(b"?", 1)[0].decode("latin-1")
    if "%" in path:
        path = unquote(path)
    return path.strip("/").split("/")


def _template_parts(template: str) -> list[str]:
    return template.strip("/").split("/")


_COMPILED = [(r, _template_parts(r.template)) for r in REST_ROUTES]


def _split_verb(parts: list[str]) -> tuple[list[str], str | None]:
    """TF Serving's ``…/{model}:predict``: the verb rides on the last segment."""
    if parts and parts[0] == "v1" and ":" in parts[-1]:
        last, _, verb = parts[-1].partition(":")
        return [*parts[:-1], last], verb
    return parts, None


def _match(template: list[str], parts: list[str]) -> str | None:
    """The model name if ``parts`` fits ``template`` (``""`` when no model), else None."""
    tparts, tverb = _split_verb(template)
    pparts, pverb = _split_verb(parts)
    if tverb != pverb or len(tparts) != len(pparts):
        return None
    model = ""
    for t, p in zip(tparts, pparts, strict=True):
        if t == "{model_name}":
            model = p
        elif t.startswith("{"):
            continue
        elif t != p:
            return None
    return model


def classify_rest(method: str, raw_path: bytes) -> Classified:
    """The permission (and model) of a REST request; unlisted routes need admin."""
    wanted = "GET" if method == "HEAD" else method
    parts = rest_path_parts(raw_path)
    for route, template in _COMPILED:
        if route.method != wanted:
            continue
        model = _match(template, parts)
        if model is not None:
            return Classified(route.permission, model or None, route)
    return Classified(UNLISTED)


def classify_grpc(method: str) -> GrpcMethod:
    """The entry of a full gRPC method name; unlisted methods need admin."""
    return GRPC_METHODS.get(method, GrpcMethod(UNLISTED))
