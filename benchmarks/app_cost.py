"""What the application itself costs per request, measured in process (no sockets).

The same ASGI call a server makes for ``POST /v2/models/tabular/infer`` — routing,
reading the body, decoding, validation, the model, statistics, monitoring, encoding —
timed in a loop against the bare endpoint's application; and the listener's inline path
(``RestApp.infer_now``, what the HTTP listener calls for an inline model instead of the
ASGI application); and the whole request through an HTTP listener — the request's
bytes fed to a connection in memory, parsed, answered and written — for the bare
endpoint under uvicorn's own protocol and for modelport under its listener
(``serving/http_inline.py``). Minimum over many short runs,
so the figure holds on a busy machine; the difference between the rows is what each
feature costs a request; the listener rows add what the HTTP server costs, without the
kernel time both pay alike.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

RUNS, PER_RUN, WARM = 60, 2000, 3000


async def _per_request_us(call: Callable[[], Awaitable[None]], warm: int = WARM) -> float:
    for _ in range(warm):
        await call()
    best = float("inf")
    for _ in range(RUNS):
        t = time.perf_counter()
        for _ in range(PER_RUN):
            await call()
        best = min(best, (time.perf_counter() - t) / PER_RUN)
    return best * 1e6


def _asgi_call(app: Any, body: bytes, headers: dict[str, str]) -> Callable[[], Awaitable[None]]:
    raw = [(b"host", b"127.0.0.1:8000"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    path = "/v2/models/tabular/infer"
    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "raw_path": path.encode(),
        "headers": raw,
        "query_string": b"",
    }
    message = {"type": "http.request", "body": body, "more_body": False}
    status: list[int] = []

    async def receive() -> dict[str, Any]:
        return message

    async def send(msg: dict[str, Any]) -> None:
        if msg["type"] == "http.response.start":
            status.append(msg["status"])

    async def call() -> None:
        await app(scope, receive, send)
        if status.pop() != 200:
            raise RuntimeError("the benchmark request failed")

    return call


def _inline_call(app: Any, body: bytes, headers: dict[str, str]) -> Callable[[], Awaitable[None]]:
    raw = [(b"host", b"127.0.0.1:8000"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    path = b"/v2/models/tabular/infer"
    rest = app.rest
    rest.infer_routes[path] = ("tabular", None)  # as after the route's first request

    async def call() -> None:
        answer = rest.infer_now(path, raw, body)
        if answer is None or answer[0] != 200:
            raise RuntimeError("the benchmark request failed")

    return call


class _Transport(asyncio.Transport):
    """A connection in memory: what the protocol writes is dropped."""

    closed = False

    def write(self, data: Any) -> None:
        pass

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:  # the keep-alive timer, once the runs are over
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(
            name, default
        )


def _listener_call(
    app: Any, http: Any, body: bytes, headers: dict[str, str]
) -> Callable[[], Awaitable[None]]:
    """The request's bytes fed to a connection of uvicorn protocol ``http`` serving
    ``app``, then loop turns until the response is complete: parsing, the listener's
    per-request work and the application, without the kernel."""
    import uvicorn
    from uvicorn.server import ServerState

    lines = ["POST /v2/models/tabular/infer HTTP/1.1", "host: 127.0.0.1:8000"]
    lines += [f"content-length: {len(body)}", *(f"{k}: {v}" for k, v in headers.items())]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
    config = uvicorn.Config(app, http=http, lifespan="off", log_level="warning")
    config.load()
    done: list[bool] = []

    class Timed(config.http_protocol_class):  # type: ignore[misc,name-defined]
        def on_response_complete(self) -> None:
            done.append(True)
            super().on_response_complete()

    protocol = Timed(
        config=config, server_state=ServerState(), app_state={}, _loop=asyncio.get_running_loop()
    )
    protocol.connection_made(_Transport())

    async def call() -> None:
        protocol.data_received(request)
        while not done:
            await asyncio.sleep(0)
        done.clear()

    return call


async def _measure(
    home: Path, model: Path, requests: dict[str, tuple[bytes, dict[str, str]]]
) -> dict[str, dict[str, float]]:
    import gc

    from benchmarks.bare_endpoint import make_app, session
    from modelport.core.config import Settings
    from modelport.serving.app import build_app
    from modelport.serving.config import ServeConfig

    variants: dict[str, Any] = {"bare endpoint": make_app({"tabular": session(str(model))})}
    apps = []
    for label, monitoring in (
        ("modelport, monitoring off", {"enabled": False}),
        ("modelport, metrics only", {"payload_sample_rate": 0.0}),
        ("modelport (defaults)", {}),
    ):
        config = ServeConfig.model_validate(
            {"models": [{"ref": "tabular"}], "grpc_port": None, "monitoring": monitoring}
        )
        app = await build_app(Settings(home=home), config)
        if label == "modelport, metrics only":  # the request counters and histograms alone
            vm = app.manager.models["tabular"].versions[1].monitor
            assert vm is not None
            vm.enabled = False  # no drift window, feedback or payload log
        apps.append(app)
        variants[label] = app.asgi
    inline = apps[-1]  # the defaults
    gc.collect()
    gc.freeze()  # as the server does
    out: dict[str, dict[str, float]] = {}
    for label, app in variants.items():
        out[label] = {}
        for point, (body, headers) in requests.items():
            # the first run also fills the feedback store and drift window to steady state
            out[label][point] = await _per_request_us(_asgi_call(app, body, headers))
    label = "modelport (defaults), inline"
    out[label] = {}
    for point, (body, headers) in requests.items():
        out[label][point] = await _per_request_us(_inline_call(inline, body, headers))
    from modelport.serving.http_inline import protocol_class

    listeners = {
        "bare endpoint, uvicorn": (variants["bare endpoint"], "httptools"),
        "modelport, its listener": (inline.asgi, protocol_class(inline.rest, inline.asgi)),
    }
    for label, (app, http) in listeners.items():
        out[label] = {}
        for point, (body, headers) in requests.items():
            call = _listener_call(app, http, body, headers)
            out[label][point] = await _per_request_us(call)
    for app in apps:
        await app.close()
    return out


def app_cost(
    home: Path, model: Path, requests: dict[str, tuple[bytes, dict[str, str]]]
) -> dict[str, dict[str, float]]:
    """µs per request by variant and request kind (see the module docstring)."""
    try:
        import uvloop

        return uvloop.run(_measure(home, model, requests))
    except ImportError:  # pragma: no cover
        return asyncio.run(_measure(home, model, requests))


def report(costs: dict[str, dict[str, float]]) -> None:
    points = list(next(iter(costs.values())))
    print("application cost per request, in process (µs, min of 60 runs of 2000 requests):")
    print(f"  {'':<28}" + "".join(f"{p:>12}" for p in points))
    for label, row in costs.items():
        print(f"  {label:<28}" + "".join(f"{row[p]:>12.1f}" for p in points))
    base, full = costs["modelport, monitoring off"], costs["modelport (defaults)"]
    metrics = costs["modelport, metrics only"]
    bare = costs["bare endpoint"]
    print(f"  {'metrics cost':<28}" + "".join(f"{metrics[p] - base[p]:>12.1f}" for p in points))
    print(f"  {'all monitoring cost':<28}" + "".join(f"{full[p] - base[p]:>12.1f}" for p in points))
    print(f"  {'modelport − bare':<28}" + "".join(f"{full[p] - bare[p]:>12.1f}" for p in points))
    mine, theirs = costs["modelport, its listener"], costs["bare endpoint, uvicorn"]
    print(
        f"  {'listener: modelport − bare':<28}"
        + "".join(f"{mine[p] - theirs[p]:>12.1f}" for p in points)
    )
