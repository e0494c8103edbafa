"""The HTTP listener's protocol: uvicorn's httptools protocol with an inline infer path.

uvicorn turns every request into an ASGI task: a scope, a task on the event loop, a
``receive`` and two ``send`` coroutines, header checks and two socket writes. For a
model that computes in microseconds that machinery costs more than the model and all
of modelport's own work together (measured in ``benchmarks/bench_serving.py``).

:func:`protocol_class` returns a subclass that keeps every request on uvicorn's path
except one kind: a ``POST`` to a known infer route of an inline model
(:meth:`RestApp.infer_now <modelport.serving.rest.RestApp.infer_now>`). Its task is
held back until the body has arrived; then the REST adapter answers it from a loop
callback (``call_soon``: the requests read in one pass of the loop are answered
together, which measured ~20% more requests/s at concurrency 32 than answering inside
the parser's callback), and the response goes out in one write. Everything else —
other routes, heavy or batched models, compressed bodies, a body larger than
``INLINE_BODY_MAX``, ``Expect: 100-continue``, pipelined requests behind an unanswered
one, a client that is not reading — starts the held task exactly as uvicorn would have,
so the ASGI path answers it.

The subclass relies on three methods of uvicorn's protocol (``_start_asgi_task``,
``on_body``, ``on_message_complete``); when an uvicorn release lacks them,
:func:`protocol_class` returns ``"httptools"`` and every request takes the ASGI path.
"""

from __future__ import annotations

import http
import logging
from typing import Any

from modelport.serving.rest import Response, RestApp

log = logging.getLogger("modelport.serving")

#: Bodies up to this size may be answered inline (below uvicorn's read-pause mark,
#: so the held task never waits for a body that the paused reader will not deliver).
INLINE_BODY_MAX = 60 * 1024

_REQUIRED = ("_start_asgi_task", "on_body", "on_message_complete")


def _status_line(status: int) -> bytes:
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    return f"HTTP/1.1 {status} {phrase}\r\n".encode("latin-1")


_STATUS = {s: _status_line(s) for s in range(100, 600)}


def protocol_class(rest: RestApp, app: Any) -> Any:
    """The ``http`` setting for uvicorn: the inline-infer protocol when ``app`` (what
    uvicorn runs) is ``rest`` itself and uvicorn's protocol has what it needs, else
    ``"httptools"``. With a middleware in front (authentication) the ASGI path is the
    only path, so the middleware sees every request."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # pragma: no cover - httptools is a dependency
        return "httptools"
    if app is not rest or not all(hasattr(HttpToolsProtocol, a) for a in _REQUIRED):
        return "httptools"

    class InlineInferProtocol(HttpToolsProtocol):  # type: ignore[misc]
        """uvicorn's protocol, answering inline infer requests without a task."""

        _held: Any = None  # the (cycle, app) whose task waits for its body

        def _start_asgi_task(self, cycle: Any, app: Any) -> None:
            scope = cycle.scope
            if (
                cycle is self.cycle
                and cycle.more_body
                and scope["method"] == "POST"
                and app is self.app
                and not cycle.waiting_for_100_continue
                and scope["raw_path"] in rest.infer_routes
            ):
                self._held = (cycle, app)  # answered when the body is complete
                return
            super()._start_asgi_task(cycle, app)

        def on_body(self, body: bytes) -> None:
            super().on_body(body)
            held = self._held
            if held is not None and len(held[0].body) > INLINE_BODY_MAX:
                self._release()

        def on_message_complete(self) -> None:
            super().on_message_complete()
            held = self._held
            if held is None:
                return
            if self.flow.write_paused:  # the client is not reading: uvicorn waits for it
                self._release()
                return
            self.loop.call_soon(self._answer, held[0])

        def _answer(self, cycle: Any) -> None:
            if self._held is None or self._held[0] is not cycle or self.transport.is_closing():
                return
            try:
                response = rest.infer_now(
                    cycle.scope["raw_path"], cycle.scope["headers"], bytes(cycle.body)
                )
            except Exception:  # a bug: the ASGI path answers (and logs) instead
                log.exception("inline infer failed; answering through ASGI")
                response = None
            if response is None:
                self._release()
                return
            self._held = None
            self._write(cycle, response)

        def _release(self) -> None:
            cycle, app = self._held
            self._held = None
            super()._start_asgi_task(cycle, app)

        def _write(self, cycle: Any, response: Response) -> None:
            status, headers, body = response
            closing = (b"connection", b"close") in headers  # the server is draining
            keep_alive = cycle.keep_alive and not closing
            parts = [_STATUS[status]]
            for name, value in (*self.server_state.default_headers, *headers):
                parts += (name, b": ", value, b"\r\n")
            if not keep_alive:
                cycle.keep_alive = False
                if not closing:
                    parts.append(b"connection: close\r\n")
            parts += (b"\r\n", body)
            cycle.response_started = cycle.response_complete = True
            self.transport.write(b"".join(parts))
            cycle.message_event.set()
            if not keep_alive:
                self.transport.close()
            cycle.on_response()

    return InlineInferProtocol
