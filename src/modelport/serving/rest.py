"""REST adapter: KServe V2 / Open Inference Protocol (+ Triton extensions) and TF Serving.

A bare ASGI application — no web framework on the hot path. Routing splits the path
once; bodies are read up to a limit (413), decompressed with the limit applied after
decompression, decoded by ``protocol`` codecs and handed to the data plane. Every
error becomes ``{"error": "…"}`` with the status its ModelportError class carries
(one table: ``ModelportError.http_status``); nothing else about the error leaks.
Hand-written on purpose: the per-request cost of a framework router and request
objects is measured in ``benchmarks/bench_serving.py``.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote

import orjson

from modelport.core.errors import (
    InvalidArgument,
    ModelportError,
    PayloadTooLarge,
    Unavailable,
)
from modelport.core.types import InferenceRequest, InferenceResponse, validate_name
from modelport.protocol import tfserving, v2
from modelport.security.asgi import check_browser_headers
from modelport.serving.dataplane import DataPlane
from modelport.serving.manager import LoadedVersion
from modelport.serving.openapi import docs_html, openapi_document

log = logging.getLogger("modelport.rest")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

#: (status, body, content type, extra headers) of a route
Result = tuple[int, bytes, bytes, list[tuple[bytes, bytes]]]
#: (status, headers, body) of a response, ready to send
Response = tuple[int, list[tuple[bytes, bytes]], bytes]

JSON = b"application/json"
ALLOWED_BODY_TYPES = {
    b"",
    b"application/json",
    b"application/octet-stream",
    b"text/plain",
    b"application/x-www-form-urlencoded",  # what `curl -d` sends; parsed as V2 JSON
}


_MAX_ROUTES = 4096  # infer paths remembered (a bound: paths come from clients)
_CONTENT_TYPES = {
    v2.JSON_CONTENT_TYPE: v2.JSON_CONTENT_TYPE.encode(),
    v2.BINARY_CONTENT_TYPE: v2.BINARY_CONTENT_TYPE.encode(),
}


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class RestApp:
    """The ASGI application over a :class:`DataPlane`."""

    def __init__(
        self,
        dataplane: DataPlane,
        *,
        max_body_bytes: int = 64 << 20,
        metrics: Callable[[bytes], tuple[bytes, str]] | None = None,
        browser_checks: bool = False,
        allowed_hosts: tuple[str, ...] | None = None,
    ) -> None:
        self.dp = dataplane
        # Host/Origin checks done here when no SecurityMiddleware runs in front
        self._browser_checks = browser_checks
        self._allowed_hosts = None if allowed_hosts is None else frozenset(allowed_hosts)
        self._good_hosts: set[bytes] = set()  # Host values already accepted
        self.max_body = max_body_bytes
        self.metrics = metrics
        self._openapi = orjson.dumps(openapi_document())
        # raw paths already parsed as a served model's infer route: (name, version)
        self.infer_routes: dict[bytes, tuple[str, str | None]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return

    # ---------------------------------------------------------------- plumbing

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers: dict[bytes, bytes] = dict(scope["headers"])
        try:
            if self._browser_checks:
                self._check_browser(scope["method"], headers)
            result = await self._route(scope, headers, receive)
        except Exception as e:
            result = self._error(e, scope["method"], scope["path"])
        status, out, body = self._respond(result, headers)
        await send({"type": "http.response.start", "status": status, "headers": out})
        await send({"type": "http.response.body", "body": body})

    def infer_now(
        self, raw_path: bytes, header_list: list[tuple[bytes, bytes]], body: bytes
    ) -> Response | None:
        """The whole answer to ``POST raw_path`` with ``body``, computed now, when the
        path is a known infer route of an inline model (``LoadedVersion.run_inline``)
        and the body came uncompressed; None otherwise (the ASGI path takes it).

        The HTTP listener calls this once a request has arrived, with no task, no
        ASGI messages and one write (:mod:`modelport.serving.http_inline`): the same
        checks, codecs, statistics and errors as :meth:`_infer`.
        """
        route = self.infer_routes.get(raw_path)
        if route is None:
            return None
        name, version = route
        try:
            loaded = self.dp.manager.resolve(name, version)
        except ModelportError:
            return None  # the general path words the error
        headers = dict(header_list)
        if not loaded.run_inline or b"content-encoding" in headers:
            return None
        try:
            if self._browser_checks:
                self._check_browser("POST", headers)
            self._check_type(headers)
            if len(body) > self.max_body:
                raise self._too_large()
            result = self._run_inline(name, loaded, headers, body)
        except Exception as e:
            result = self._error(e, "POST", raw_path.decode("latin-1"))
        return self._respond(result, headers)

    def _error(self, e: Exception, method: str, path: str) -> Result:
        if isinstance(e, ModelportError):
            extra = [(b"retry-after", b"1")] if isinstance(e, Unavailable) else []
            return int(e.http_status), orjson.dumps({"error": e.message}), JSON, extra
        if isinstance(e, HttpError):
            return e.status, orjson.dumps({"error": e.message}), JSON, []
        log.error("internal error on %s %s", method, path, exc_info=e)
        return 500, b'{"error":"internal server error"}', JSON, []

    def _respond(self, result: Result, headers: dict[bytes, bytes]) -> Response:
        """Status, response headers and body: compressed when the client accepts it and
        the body is large, ``connection: close`` while draining."""
        status, body, ctype, extra = result
        if not self.dp.accepting:  # draining: let clients move to other replicas
            extra = [*extra, (b"connection", b"close")]
        accept = headers.get(b"accept-encoding", b"")
        if len(body) > 1024 and accept:
            body, enc = _compress(body, accept)
            if enc:
                extra = [*extra, (b"content-encoding", enc)]
        out = [(b"content-type", ctype), (b"content-length", str(len(body)).encode()), *extra]
        return status, out, body

    def _check_browser(self, method: str, headers: dict[bytes, bytes]) -> None:
        host = headers.get(b"host")
        if (
            host in self._good_hosts
            and b"origin" not in headers
            and b"sec-fetch-site" not in headers
        ):
            return  # the common case: a known Host, no browser headers
        origin, site = headers.get(b"origin"), headers.get(b"sec-fetch-site")
        check_browser_headers(
            method,
            host.decode("latin-1") if host is not None else None,
            origin.decode("latin-1") if origin is not None else None,
            site.decode("latin-1").strip().lower() if site is not None else None,
            self._allowed_hosts,
        )
        if host is not None and len(self._good_hosts) < 64:
            self._good_hosts.add(host)

    async def _read_body(self, headers: dict[bytes, bytes], receive: Receive) -> bytes:
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            raise self._too_large()
        msg = await receive()
        if msg["type"] == "http.request" and not msg.get("more_body"):
            body: bytes = msg.get("body", b"")  # the whole body in one message (common)
            if len(body) > self.max_body:
                raise self._too_large()
            encoding = headers.get(b"content-encoding")
            return body if encoding is None else self._decoded(body, encoding)
        chunks, size = [], 0
        while True:
            if msg["type"] == "http.disconnect":
                raise HttpError(400, "client disconnected")
            chunk = msg.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise self._too_large()
            chunks.append(chunk)
            if not msg.get("more_body"):
                break
            msg = await receive()
        return self._decoded(b"".join(chunks), headers.get(b"content-encoding", b""))

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(f"request body over the {self.max_body}-byte limit")

    def _decoded(self, body: bytes, encoding: bytes) -> bytes:
        encoding = encoding.strip().lower()
        if encoding in (b"gzip", b"deflate"):
            body = _decompress(body, encoding, self.max_body)
        elif encoding not in (b"identity", b""):
            raise HttpError(
                415, f"unsupported content-encoding {encoding.decode(errors='replace')!r}"
            )
        return body

    def _check_type(self, headers: dict[bytes, bytes]) -> None:
        raw = headers.get(b"content-type", b"")
        if raw in ALLOWED_BODY_TYPES:
            return
        media = raw.split(b";")[0].strip().lower()
        if media not in ALLOWED_BODY_TYPES:
            raise HttpError(
                415,
                f"unsupported content type {media.decode(errors='replace')!r}; "
                "send application/json or application/octet-stream",
            )

    # ---------------------------------------------------------------- routes

    async def _infer(
        self, name: str, version: str | None, headers: dict[bytes, bytes], receive: Receive
    ) -> Result:
        """``POST /v2/models/{name}[/versions/{version}]/infer``: the hot path."""
        self._check_type(headers)
        manager = self.dp.manager
        manager.resolve(name, version)  # unknown model: 404 before reading the body
        body = await self._read_body(headers, receive)
        # resolved again: the version may have moved while the body arrived
        loaded = manager.resolve(name, version)
        request, validated = _decode(loaded, headers, body)
        response = await self.dp.infer(name, version, request, loaded=loaded, validated=validated)
        return _encode(response, request)

    def _run_inline(
        self, name: str, loaded: LoadedVersion, headers: dict[bytes, bytes], body: bytes
    ) -> Result:
        request, validated = _decode(loaded, headers, body)
        response = self.dp.infer_inline(name, loaded, request, validated=validated)
        return _encode(response, request)

    async def _route(self, scope: Scope, headers: dict[bytes, bytes], receive: Receive) -> Result:
        method: str = scope["method"]
        raw = scope.get("raw_path") or scope["path"].encode()
        route = self.infer_routes.get(raw)
        if route is not None and method == "POST":  # a known model's infer path
            return await self._infer(route[0], route[1], headers, receive)
        path = raw.split(b"?", 1)[0].decode("latin-1")
        if "%" in path:
            path = unquote(path)
        parts = path.strip("/").split("/")
        head = parts[0]
        if head == "v2":
            return await self._v2(method, parts[1:], headers, receive, _visible(scope), raw)
        if head == "v1" and len(parts) >= 3 and parts[1] == "models":
            return await self._tfs(method, parts[2:], headers, receive)
        if method == "GET" and path == "/metrics" and self.metrics is not None:
            body, ctype = self.metrics(headers.get(b"accept", b""))
            return 200, body, ctype.encode(), []
        if method == "GET" and path == "/openapi.json":
            return 200, self._openapi, JSON, []
        if method == "GET" and path in ("/docs", "/docs/"):
            return 200, docs_html().encode(), b"text/html; charset=utf-8", []
        raise HttpError(404, "Not Found")

    async def _v2(
        self,
        method: str,
        parts: list[str],
        headers: dict[bytes, bytes],
        receive: Receive,
        visible: Callable[[str], bool],
        raw_path: bytes,
    ) -> Result:
        dp = self.dp
        n = len(parts)
        if n == 0 or parts == [""]:
            _need(method, "GET")
            return _json(dp.server_metadata())
        if parts[0] == "health" and n == 2:
            _need(method, "GET")
            if parts[1] == "live":
                ok = dp.live()
                return _json({"live": ok}, 200 if ok else 503)
            if parts[1] == "ready":
                ok = dp.ready()
                return _json({"ready": ok}, 200 if ok else 503)
        if parts[0] == "repository":
            return await self._repository(method, parts[1:], headers, receive, visible)
        if parts[0] != "models":
            raise HttpError(404, "Not Found")
        if n == 1:
            _need(method, "GET")
            return _json({"models": sorted(m for m in dp.manager.models if visible(m))})
        if n == 2 and parts[1] == "stats":
            _need(method, "GET")
            return _json(dp.statistics())
        name = parts[1]
        if name not in dp.manager.models:  # served names are known valid
            _name(name)
        rest = parts[2:]
        version: str | None = None
        if len(rest) >= 2 and rest[0] == "versions":
            version = _version(rest[1])
            rest = rest[2:]
        action = rest[0] if rest else ""
        if len(rest) > 1:
            raise HttpError(404, "Not Found")
        if action == "infer":
            _need(method, "POST")
            if name in dp.manager.models and len(self.infer_routes) < _MAX_ROUTES:
                self.infer_routes[raw_path] = (name, version)
            return await self._infer(name, version, headers, receive)
        if action == "feedback" and dp.monitor is not None:
            _need(method, "POST")
            params = _loads_object(await self._read_body(headers, receive))
            items = params.get("items")
            if not isinstance(items, list):
                raise InvalidArgument('expected {"items": [{"id": ..., "label": ...}, ...]}')
            return _json(dp.monitor.add_feedback(name, items))
        _need(method, "GET")
        if action in ("drift", "performance") and dp.monitor is not None:
            served = str(dp.manager.resolve(name, version).version)
            if action == "drift":
                return _json(await asyncio.to_thread(dp.monitor.drift, name, served))
            return _json(dp.monitor.performance(name, served))
        if action == "":
            return _json(dp.model_metadata(name, version))
        if action == "ready":
            ok = dp.model_ready(name, version)
            return _json({"name": name, "ready": ok}, 200 if ok else 503)
        if action == "config":
            return _json(dp.model_config(name, version))
        if action == "stats":
            return _json(dp.statistics(name, version))
        raise HttpError(404, "Not Found")

    async def _repository(
        self,
        method: str,
        parts: list[str],
        headers: dict[bytes, bytes],
        receive: Receive,
        visible: Callable[[str], bool],
    ) -> Result:
        _need(method, "POST")
        if len(parts) >= 2 and parts[0] == "models":
            _name(parts[1])  # a traversal or malformed name is a 400 on every route
        body = await self._read_body(headers, receive)
        params = _loads_object(body) if body.strip() else {}
        if parts == ["index"]:
            index = self.dp.repository_index(bool(params.get("ready", False)))
            return _json([m for m in index if visible(m["name"])])
        if len(parts) == 3 and parts[0] == "models" and parts[2] in ("load", "unload"):
            name = _name(parts[1])
            extra = params.get("parameters") or {}
            if parts[2] == "load" and any(k == "config" or k.startswith("file:") for k in extra):
                raise InvalidArgument(
                    "loading an uploaded config or files is not supported: register the "
                    "model (modelport register) and load it by name"
                )
            if parts[2] == "load":
                await self.dp.load(name)
                return _json({"name": name, "load": True})
            await self.dp.unload(name)
            return _json({"name": name, "unload": True})
        raise HttpError(404, "Not Found")

    async def _tfs(
        self, method: str, parts: list[str], headers: dict[bytes, bytes], receive: Receive
    ) -> Result:
        """/v1/models/{m}[/versions/{v}|/labels/{l}][:predict|/metadata]"""
        last = parts[-1]
        verb = ""
        if ":" in last:
            last, _, verb = last.partition(":")
            parts = [*parts[:-1], last]
        name = _name(parts[0])
        version: str | None = None
        rest = parts[1:]
        if len(rest) >= 2 and rest[0] in ("versions", "labels"):
            version = _version(rest[1]) if rest[0] == "versions" else _name(rest[1], "label")
            rest = rest[2:]
        if verb:
            if verb != "predict" or rest:
                raise HttpError(404, f"unsupported TF Serving method {verb!r}; use :predict")
            _need(method, "POST")
            self._check_type(headers)
            body = await self._read_body(headers, receive)
            signature = self.dp.signature(name, version)
            request, columnar = tfserving.decode_predict(body, signature)
            response = await self.dp.infer(name, version, request, protocol="tfserving")
            return 200, tfserving.encode_predict(response, columnar), JSON, []
        _need(method, "GET")
        if rest == ["metadata"]:
            loaded = self.dp.manager.resolve(name, version)
            return _json(tfserving.model_metadata(name, str(loaded.version), loaded.signature))
        if rest:
            raise HttpError(404, "Not Found")
        if version is not None:
            loaded_versions = [self.dp.manager.resolve(name, version)]
        else:
            loaded_versions = self.dp.versions(name)
        entries = [{"version": str(v.version), "state": "READY"} for v in loaded_versions]
        return _json(tfserving.model_status(entries))


# -------------------------------------------------------------------- helpers


def _decode(
    loaded: LoadedVersion, headers: dict[bytes, bytes], body: bytes
) -> tuple[InferenceRequest, bool]:
    """The V2 request in ``body`` and whether it is validated already: the version's
    compiled decoder takes the common request; anything else, and every error, takes
    the general decoder (validated later, by the data plane)."""
    hlen = v2.parse_header_length(headers.get(b"inference-header-content-length"), len(body))
    request = loaded.decode_v2(body, hlen)
    if request is not None:
        return request, True
    return v2.decode_request(body, hlen, signature=loaded.signature if hlen == 0 else None), False


def _encode(response: InferenceResponse, request: InferenceRequest) -> Result:
    out, json_len, ctype = v2.encode_response(response, request)
    extra = []
    if json_len is not None:
        extra.append((b"inference-header-content-length", str(json_len).encode()))
    return 200, out, _CONTENT_TYPES.get(ctype) or ctype.encode(), extra


def _everything(_name: str) -> bool:
    return True


def _visible(scope: Scope) -> Callable[[str], bool]:
    """Which model names the caller may see (a key scoped to ``iris*`` sees only those)."""
    principal = scope.get("modelport.principal")
    return _everything if principal is None else principal.may_access  # type: ignore[no-any-return]


def _json(data: Any, status: int = 200) -> Result:
    return status, orjson.dumps(data), JSON, []


def _need(method: str, wanted: str) -> None:
    if method != wanted and not (wanted == "GET" and method == "HEAD"):
        raise HttpError(405, f"method {method} not allowed here; use {wanted}")


def _name(raw: str, what: str = "model name") -> str:
    return validate_name(raw, what)


def _version(raw: str) -> str:
    if raw.isdigit() and raw.isascii():
        return raw
    return validate_name(raw, "version or alias")


def _loads_object(body: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise InvalidArgument(f"malformed JSON: {e}") from e
    if not isinstance(data, dict):
        raise InvalidArgument("expected a JSON object")
    return data


def _decompress(body: bytes, encoding: bytes, limit: int) -> bytes:
    wbits = 16 + zlib.MAX_WBITS if encoding == b"gzip" else zlib.MAX_WBITS
    d = zlib.decompressobj(wbits)
    try:
        out = d.decompress(body, limit + 1)
    except zlib.error as e:
        raise InvalidArgument(f"corrupt {encoding.decode()} body: {e}") from e
    if len(out) > limit or d.unconsumed_tail:
        raise PayloadTooLarge(f"decompressed body over the {limit}-byte limit")
    return out


def _compress(body: bytes, accept: bytes) -> tuple[bytes, bytes | None]:
    accepted = {a.split(b";")[0].strip() for a in accept.lower().split(b",")}
    if b"gzip" in accepted:
        c = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        return c.compress(body) + c.flush(), b"gzip"
    if b"deflate" in accepted:
        return zlib.compress(body, 1), b"deflate"
    return body, None
