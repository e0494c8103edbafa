"""The OpenAPI 3.1 description of the REST API (``/openapi.json``) and a docs page.

Written out by hand because the REST adapter is a bare ASGI app; a test checks that
every route the adapter answers is described here and vice versa.
"""

from __future__ import annotations

import html
from typing import Any

from modelport import __version__

_ERR = {
    "description": "error",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}


def _op(
    summary: str,
    tag: str,
    body: str | None = None,
    ok: str | None = None,
    errors: tuple[int, ...] = (400, 404),
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "tags": [tag],
        "responses": {
            "200": {
                "description": "OK",
                "content": {
                    "application/json": {
                        "schema": (
                            {"$ref": f"#/components/schemas/{ok}"} if ok else {"type": "object"}
                        )
                    }
                },
            },
            **{str(code): _ERR for code in errors},
        },
    }
    if body:
        op["requestBody"] = {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{body}"}},
                "application/octet-stream": {
                    "schema": {"type": "string", "format": "binary"},
                    "description": "Triton binary tensor extension: "
                    "JSON header of Inference-Header-Content-Length "
                    "bytes, then raw tensors",
                },
            },
        }
    return op


_MODEL = {
    "name": "model_name",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"},
}
_VERSION = {
    "name": "model_version",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "a version number or an alias",
}

#: (path, method, operation) for every route the REST adapter answers
ROUTES: list[tuple[str, str, dict[str, Any]]] = [
    ("/v2", "get", _op("Server metadata", "v2", ok="ServerMetadata", errors=())),
    ("/v2/health/live", "get", _op("Liveness", "health", errors=(503,))),
    ("/v2/health/ready", "get", _op("Readiness: all models ready", "health", errors=(503,))),
    ("/v2/models", "get", _op("List served models", "v2", errors=())),
    ("/v2/models/stats", "get", _op("Statistics of all models", "statistics", errors=())),
    ("/v2/models/{model_name}", "get", _op("Model metadata", "v2", ok="ModelMetadata")),
    (
        "/v2/models/{model_name}/versions/{model_version}",
        "get",
        _op("Model version metadata", "v2", ok="ModelMetadata"),
    ),
    ("/v2/models/{model_name}/ready", "get", _op("Model readiness", "health", errors=(400, 503))),
    (
        "/v2/models/{model_name}/versions/{model_version}/ready",
        "get",
        _op("Model version readiness", "health", errors=(400, 503)),
    ),
    ("/v2/models/{model_name}/config", "get", _op("Triton model configuration", "v2")),
    (
        "/v2/models/{model_name}/versions/{model_version}/config",
        "get",
        _op("Triton model configuration of a version", "v2"),
    ),
    ("/v2/models/{model_name}/stats", "get", _op("Model statistics", "statistics")),
    (
        "/v2/models/{model_name}/versions/{model_version}/stats",
        "get",
        _op("Model version statistics", "statistics"),
    ),
    (
        "/v2/models/{model_name}/infer",
        "post",
        _op(
            "Inference",
            "v2",
            "InferenceRequest",
            "InferenceResponse",
            (400, 404, 413, 415, 500, 503, 504),
        ),
    ),
    (
        "/v2/models/{model_name}/versions/{model_version}/infer",
        "post",
        _op(
            "Inference on a version or alias",
            "v2",
            "InferenceRequest",
            "InferenceResponse",
            (400, 404, 413, 415, 500, 503, 504),
        ),
    ),
    (
        "/v2/models/{model_name}/feedback",
        "post",
        _op("Labels for earlier predictions, by request id", "monitoring"),
    ),
    (
        "/v2/models/{model_name}/versions/{model_version}/feedback",
        "post",
        _op("Labels for earlier predictions of a version", "monitoring"),
    ),
    ("/v2/models/{model_name}/drift", "get", _op("Input and prediction drift", "monitoring")),
    (
        "/v2/models/{model_name}/versions/{model_version}/drift",
        "get",
        _op("Drift of a version", "monitoring"),
    ),
    (
        "/v2/models/{model_name}/performance",
        "get",
        _op("Live accuracy/F1 or MAE/RMSE from feedback", "monitoring"),
    ),
    (
        "/v2/models/{model_name}/versions/{model_version}/performance",
        "get",
        _op("Live performance of a version", "monitoring"),
    ),
    ("/v2/repository/index", "post", _op("Repository index", "repository", errors=(400,))),
    ("/v2/repository/models/{model_name}/load", "post", _op("Load a model", "repository")),
    ("/v2/repository/models/{model_name}/unload", "post", _op("Unload a model", "repository")),
    ("/v1/models/{model_name}", "get", _op("TF Serving model status", "tfserving")),
    (
        "/v1/models/{model_name}/versions/{model_version}",
        "get",
        _op("TF Serving version status", "tfserving"),
    ),
    ("/v1/models/{model_name}/metadata", "get", _op("TF Serving metadata", "tfserving")),
    (
        "/v1/models/{model_name}/versions/{model_version}/metadata",
        "get",
        _op("TF Serving version metadata", "tfserving"),
    ),
    (
        "/v1/models/{model_name}:predict",
        "post",
        _op(
            "TF Serving predict (instances or inputs)",
            "tfserving",
            errors=(400, 404, 413, 415, 500, 503, 504),
        ),
    ),
    (
        "/v1/models/{model_name}/versions/{model_version}:predict",
        "post",
        _op(
            "TF Serving predict on a version",
            "tfserving",
            errors=(400, 404, 413, 415, 500, 503, 504),
        ),
    ),
    (
        "/v1/models/{model_name}/labels/{model_version}:predict",
        "post",
        _op(
            "TF Serving predict on a label (alias)",
            "tfserving",
            errors=(400, 404, 413, 415, 500, 503, 504),
        ),
    ),
    ("/metrics", "get", _op("Prometheus metrics", "monitoring", errors=())),
]

_TENSOR_META = {
    "type": "object",
    "required": ["name", "datatype", "shape"],
    "properties": {
        "name": {"type": "string"},
        "datatype": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer"}},
    },
}
_TENSOR = {
    "type": "object",
    "required": ["name", "shape", "datatype"],
    "properties": {
        "name": {"type": "string"},
        "datatype": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "parameters": {"type": "object"},
        "data": {"type": "array"},
    },
}

SCHEMAS: dict[str, Any] = {
    "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
    "ServerMetadata": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "version": {"type": "string"},
            "extensions": {"type": "array", "items": {"type": "string"}},
        },
    },
    "ModelMetadata": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "versions": {"type": "array", "items": {"type": "string"}},
            "platform": {"type": "string"},
            "inputs": {"type": "array", "items": _TENSOR_META},
            "outputs": {"type": "array", "items": _TENSOR_META},
        },
    },
    "InferenceRequest": {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "id": {"type": "string"},
            "parameters": {"type": "object"},
            "inputs": {"type": "array", "items": _TENSOR},
            "outputs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {"name": {"type": "string"}, "parameters": {"type": "object"}},
                },
            },
        },
    },
    "InferenceResponse": {
        "type": "object",
        "properties": {
            "model_name": {"type": "string"},
            "model_version": {"type": "string"},
            "id": {"type": "string"},
            "parameters": {"type": "object"},
            "outputs": {"type": "array", "items": _TENSOR},
        },
    },
}


def openapi_document() -> dict[str, Any]:
    """The OpenAPI document served at ``/openapi.json``."""
    paths: dict[str, dict[str, Any]] = {}
    for path, method, op in ROUTES:
        params = []
        if "{model_name}" in path:
            params.append(_MODEL)
        if "{model_version}" in path:
            params.append(_VERSION)
        paths.setdefault(path, {})[method] = {**op, "parameters": params} if params else op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "modelport inference API",
            "version": __version__,
            "description": "KServe V2 / Open Inference Protocol with Triton's "
            "extensions, and TF Serving's REST API.",
        },
        "paths": paths,
        "components": {"schemas": SCHEMAS},
    }


def docs_html() -> str:
    """A self-contained page listing every route (no external scripts)."""
    rows = "".join(
        f"<tr><td><code>{m.upper()}</code></td><td><code>{html.escape(p)}</code></td>"
        f"<td>{html.escape(op['summary'])}</td></tr>"
        for p, m, op in ROUTES
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>modelport API</title>"
        "<style>body{font-family:sans-serif;margin:2em}td{padding:.2em 1em}</style></head>"
        f"<body><h1>modelport inference API {__version__}</h1>"
        "<p>Machine-readable description: <a href='/openapi.json'>/openapi.json</a>.</p>"
        f"<table>{rows}</table></body></html>"
    )
