"""The HTTP listener's protocol: uvicorn's httptools protocol with an inline infer path.

uvicorn turns every request into an ASGI task: a scope, a request/response cycle with
its event, a task on the event loop, a ``receive`` and two ``send`` coroutines, header
checks and two socket writes. For a model that computes in microseconds that machinery
costs more than the model: ~30 µs a request on top of the bare endpoint's
application, measured by ``benchmarks/app_cost.py`` (its listener rows).

:func:`protocol_class` returns a subclass that takes one kind of request off that path:
a ``POST`` to a known infer route (:attr:`RestApp.infer_routes`) with a body of up to
``INLINE_BODY_MAX`` bytes, on a connection with no response outstanding. For it the
parser's callbacks only collect the URL, the headers and the body — no scope, no cycle,
no task. Once the body is complete the REST adapter answers it from a loop callback
(``call_soon``: the requests read in one pass of the loop are answered together, which
measured 14–20% more requests/s at concurrency 32 than answering inside the parser's
callback) with :meth:`RestApp.infer_now`, and the response goes out in one write.

Everything else takes uvicorn's path unchanged: other routes and methods, ``Expect:
100-continue``, upgrades, a larger body (handed over mid-body), a request behind an
unanswered one, a client that is not reading, and every request that ``infer_now``
declines (not an inline model, a compressed body, a version that moved): those get the
scope and cycle uvicorn would have built and an ASGI task with the body already read.
A request read but not yet answered is answered before the next one on the connection
is parsed and before a graceful shutdown closes the connection, so responses keep their
order and none is dropped.

The subclass relies on uvicorn's protocol internals (the names in ``_REQUIRED`` and
``RequestResponseCycle``'s keyword arguments); when an uvicorn release lacks them,
:func:`protocol_class` returns ``"httptools"`` and every request takes the ASGI path.
"""

from __future__ import annotations

import asyncio
import http
import inspect
import logging
import urllib.parse
from typing import Any

from modelport.serving.rest import Response, RestApp

log = logging.getLogger("modelport.serving")

#: Bodies up to this size may be answered inline (below uvicorn's read-pause mark, so
#: a body handed to the ASGI path mid-way never waits for a paused reader).
INLINE_BODY_MAX = 60 * 1024

_REQUIRED = (
    "on_message_begin",
    "on_headers_complete",
    "on_body",
    "on_message_complete",
    "on_response_complete",
    "_start_asgi_task",
    "shutdown",
)
_CYCLE_ARGS = {
    "scope",
    "transport",
    "flow",
    "logger",
    "access_logger",
    "access_log",
    "default_headers",
    "message_event",
    "expect_100_continue",
    "keep_alive",
    "on_response",
}


def _status_line(status: int) -> bytes:
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    return f"HTTP/1.1 {status} {phrase}\r\n".encode("latin-1")


_STATUS = {s: _status_line(s) for s in range(100, 600)}


class _Inline:
    """A request on the inline path: what the parser collected."""

    __slots__ = ("body", "headers", "http_version", "keep_alive", "url")

    def __init__(
        self, url: bytes, headers: list[tuple[bytes, bytes]], http_version: str, keep_alive: bool
    ) -> None:
        self.url = url
        self.headers = headers
        self.http_version = http_version
        self.keep_alive = keep_alive
        self.body = b""


def protocol_class(rest: RestApp, app: Any) -> Any:
    """The ``http`` setting for uvicorn: the inline-infer protocol when ``app`` (what
    uvicorn runs) is ``rest`` itself and uvicorn's protocol has what it needs, else
    ``"httptools"``. With a middleware in front (authentication) the ASGI path is the
    only path, so the middleware sees every request."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
    except ImportError:  # pragma: no cover - httptools is a dependency
        return "httptools"
    if app is not rest or not all(hasattr(HttpToolsProtocol, a) for a in _REQUIRED):
        return "httptools"
    if set(inspect.signature(RequestResponseCycle).parameters) != _CYCLE_ARGS:
        return "httptools"

    class InlineInferProtocol(HttpToolsProtocol):  # type: ignore[misc]
        """uvicorn's protocol, answering inline infer requests without a task."""

        _inline: _Inline | None = None  # the request being read on the inline path
        _pending: _Inline | None = None  # read, waiting for its answer
        _closing = False  # shutting down: close after the answer

        # ------------------------------------------------------------ parser callbacks

        def on_message_begin(self) -> None:
            if self._pending is not None:  # pipelined behind it: answer it first
                self._answer(self._pending)
            self.url = b""
            self.expect_100_continue = False
            self.headers = []  # the scope is built only when uvicorn's path needs it

        def on_headers_complete(self) -> None:
            parser = self.parser
            cycle = self.cycle
            if (
                self.url in rest.infer_routes
                and parser.get_method() == b"POST"
                and not self.expect_100_continue
                and (cycle is None or cycle.response_complete)
                and not parser.should_upgrade()
                and self.limit_concurrency is None
                and not self.root_path
            ):
                version = parser.get_http_version()
                keep_alive = version != "1.0" and parser.should_keep_alive()
                self._inline = _Inline(self.url, self.headers, version, keep_alive)
                return
            self.scope = self._scope(self.headers)
            super().on_headers_complete()

        def on_body(self, body: bytes) -> None:
            inline = self._inline
            if inline is None:
                super().on_body(body)
                return
            inline.body = inline.body + body if inline.body else body
            if len(inline.body) > INLINE_BODY_MAX:  # uvicorn's path reads the rest
                self._inline = None
                self.scope = self._scope(inline.headers)
                super().on_headers_complete()
                super().on_body(inline.body)

        def on_message_complete(self) -> None:
            inline = self._inline
            if inline is None:
                super().on_message_complete()
                return
            self._inline = None
            if self.flow.write_paused:  # the client is not reading: uvicorn waits for it
                self._hand_over(inline)
                return
            self._pending = inline
            self.loop.call_soon(self._answer, inline)

        # ------------------------------------------------------------ answering

        def _answer(self, inline: _Inline) -> None:
            if self._pending is not inline:
                return  # answered already (pipelining, shutdown)
            self._pending = None
            if self.transport.is_closing():
                return
            try:
                response = rest.infer_now(inline.url, inline.headers, inline.body)
            except Exception:  # a bug: the ASGI path answers (and logs) instead
                log.exception("inline infer failed; answering through ASGI")
                response = None
            if response is None:
                self._hand_over(inline)
            else:
                self._write(inline, response)

        def _write(self, inline: _Inline, response: Response) -> None:
            status, headers, body = response
            closing = (b"connection", b"close") in headers  # the server is draining
            keep_alive = inline.keep_alive and not closing and not self._closing
            parts = [_STATUS[status]]
            for name, value in (*self.server_state.default_headers, *headers):
                parts += (name, b": ", value, b"\r\n")
            if not keep_alive and not closing:
                parts.append(b"connection: close\r\n")
            parts += (b"\r\n", body)
            self.transport.write(b"".join(parts))
            if not keep_alive:
                self.transport.close()
            self.on_response_complete()

        def _hand_over(self, inline: _Inline) -> None:
            """Start the ASGI task uvicorn would have started for ``inline``, with its
            whole body already read."""
            path = inline.url.decode("ascii")
            scope = self._scope(inline.headers)
            scope["http_version"] = inline.http_version
            scope["method"] = "POST"
            scope["path"] = urllib.parse.unquote(path) if "%" in path else path
            scope["raw_path"] = inline.url
            scope["query_string"] = b""
            cycle = RequestResponseCycle(
                scope=scope,
                transport=self.transport,
                flow=self.flow,
                logger=self.logger,
                access_logger=self.access_logger,
                access_log=self.access_log,
                default_headers=self.server_state.default_headers,
                message_event=asyncio.Event(),
                expect_100_continue=False,
                keep_alive=inline.keep_alive and not self._closing,
                on_response=self.on_response_complete,
            )
            cycle.body = bytearray(inline.body)
            cycle.more_body = False
            cycle.message_event.set()  # the body is all there
            self.cycle = cycle
            self._start_asgi_task(cycle, self.app)

        def _scope(self, headers: list[tuple[bytes, bytes]]) -> Any:  # an HTTPScope
            """What uvicorn's ``on_message_begin`` puts in a scope."""
            return {
                "type": "http",
                "asgi": {"version": self.asgi_version, "spec_version": "2.3"},
                "http_version": "1.1",
                "server": self.server,
                "client": self.client,
                "scheme": self.scheme,
                "root_path": self.root_path,
                "headers": headers,
                "state": self.app_state.copy(),
            }

        def shutdown(self) -> None:
            self._closing = True  # the inline answers from now on close the connection
            if self._pending is not None:  # read, not yet answered: answer it now
                self._answer(self._pending)
            if self._inline is None:  # else it is still arriving: answered, then closed
                super().shutdown()

    return InlineInferProtocol
