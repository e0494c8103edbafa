"""Authentication and authorization in front of any ASGI application (the REST server).

:class:`SecurityMiddleware` runs before the application sees a request, so a refused
request has no side effect: the body is not read, the model not touched. Per request:

1. the route is classified with :func:`~modelport.security.routes.classify_rest` (the
   REST adapter's own path parsing; unlisted routes need admin);
2. the ``Host`` header must name the server when it listens on loopback only (a web
   page that rebinds its DNS name to 127.0.0.1 sends its own name: refused, 403);
3. a state-changing request from a browser page of another origin (``Origin`` or
   ``Sec-Fetch-Site: cross-site``) is refused (403), so a page cannot drive a local
   server with authentication off;
4. the ``Authorization`` header is checked (401 with ``WWW-Authenticate`` when missing
   or invalid; a repeated header is invalid) and the principal authorized for the
   route's permission and model (403).

Errors use the server's body shape, ``{"error": "…"}``, and never echo credentials.
The principal is passed on in ``scope["modelport.principal"]``.

Example:
    >>> auth = Authenticator.from_settings(settings)                      # doctest: +SKIP
    >>> hosts = default_allowed_hosts(config.host)   # listeners.py        # doctest: +SKIP
    >>> app = SecurityMiddleware(rest_app, auth, allowed_hosts=hosts)     # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from modelport.core.errors import ModelportError, PermissionDenied, Unauthenticated
from modelport.security.auth import WWW_AUTHENTICATE, Authenticator
from modelport.security.routes import classify_rest

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_SAFE_METHODS = frozenset({"GET", "HEAD"})


def _hostname(value: str) -> str:
    """``host[:port]`` or ``[v6]:port`` → the host, lowercased, without a final dot."""
    v = value.strip().lower()
    if v.startswith("["):
        return v[1 : v.find("]")] if "]" in v else v
    if v.count(":") == 1:
        v = v.split(":", 1)[0]
    return v.rstrip(".")


def check_browser_headers(
    method: str,
    host: str | None,
    origin: str | None,
    fetch_site: str | None,
    allowed_hosts: frozenset[str] | None,
) -> None:
    """Refuse DNS-rebinding (foreign ``Host``) and cross-site writes (``Origin``).

    ``allowed_hosts`` None accepts any Host (a non-loopback listener). Used by the
    middleware and, when authentication is off, by the REST adapter itself.
    """
    if allowed_hosts is not None and (host is None or _hostname(host) not in allowed_hosts):
        raise PermissionDenied("request for a host name this server does not answer to")
    if method not in _SAFE_METHODS and (
        fetch_site == "cross-site"
        or (origin is not None and (host is None or urlsplit(origin).netloc != host))
    ):
        raise PermissionDenied("cross-origin request refused")


class SecurityMiddleware:
    """Authenticates and authorizes every HTTP request before ``app`` runs."""

    def __init__(
        self,
        app: ASGIApp,
        authenticator: Authenticator,
        *,
        allowed_hosts: Sequence[str] | None = None,
    ) -> None:
        self.app = app
        self.auth = authenticator
        self.allowed_hosts = (
            None if allowed_hosts is None else frozenset(h.lower() for h in allowed_hosts)
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            principal = self._check(scope)
        except ModelportError as e:
            await _refuse(send, e)
            return
        if principal is not None:
            scope = {**scope, "modelport.principal": principal}
        await self.app(scope, receive, send)

    def _check(self, scope: Scope) -> Any:
        method: str = scope["method"]
        authorization: list[bytes] = []
        host = origin = fetch_site = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization.append(value)
            elif name == b"host":
                host = value.decode("latin-1")
            elif name == b"origin":
                origin = value.decode("latin-1")
            elif name == b"sec-fetch-site":
                fetch_site = value.decode("latin-1").strip().lower()
        check_browser_headers(method, host, origin, fetch_site, self.allowed_hosts)
        if not self.auth.enabled:  # hot path without authentication: Host/Origin only
            return None
        if len(authorization) > 1:
            raise Unauthenticated("invalid credentials: more than one Authorization header")
        raw = scope.get("raw_path") or scope["path"].encode()
        rule = classify_rest(method, raw)
        credential = authorization[0].decode("latin-1") if authorization else None
        client = scope.get("client")
        peer = f"{client[0]}" if client else ""
        return self.auth.check(credential, rule.permission, rule.model, peer=peer)


async def _refuse(send: Send, error: ModelportError) -> None:
    body = json.dumps({"error": error.message}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if isinstance(error, Unauthenticated):
        headers.append((b"www-authenticate", WWW_AUTHENTICATE.encode()))
    await send(
        {"type": "http.response.start", "status": int(error.http_status), "headers": headers}
    )
    await send({"type": "http.response.body", "body": body})
