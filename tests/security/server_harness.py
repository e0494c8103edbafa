"""A real secured server for the security suite, and a raw HTTP client.

The server is the serving stack (registry → manager → data plane → REST and gRPC
adapters) with the security layer in front of both listeners, composed the way the
server's composition root does it: ``SecurityMiddleware`` around the REST application
and ``AuthInterceptor`` on the gRPC server. It runs on 127.0.0.1 on free ports in a
thread with its own event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from modelport.core.config import Settings
from modelport.serving.config import ServeConfig


@dataclass
class SecureServer:
    settings: Settings
    config: ServeConfig
    tls: Any = None  # TlsFiles: both listeners speak TLS (mTLS with a client CA)
    http_port: int = 0
    grpc_port: int = 0
    app: Any = None
    error: BaseException | None = None
    _ready: threading.Event = field(default_factory=threading.Event)
    _stop: asyncio.Event | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None

    async def _main(self) -> None:
        import grpc
        import uvicorn
        from grpc_health.v1 import health_pb2_grpc

        from modelport.security.asgi import SecurityMiddleware
        from modelport.security.audit import AuditLog
        from modelport.security.auth import Authenticator
        from modelport.security.grpc_auth import AuthInterceptor
        from modelport.security.listeners import default_allowed_hosts
        from modelport.serving.app import build_app
        from modelport.serving.grpc.health import HealthServicer
        from modelport.serving.grpc.server import InferenceServicer

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self.app = app = await build_app(self.settings, self.config)
        auth = Authenticator.from_settings(
            self.settings, audit=AuditLog.from_settings(self.settings)
        )
        rest = SecurityMiddleware(
            app.rest, auth, allowed_hosts=default_allowed_hosts(self.config.host)
        )
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.config.host, 0))
        sock.listen(128)
        self.http_port = sock.getsockname()[1]
        tls_options = self.tls.uvicorn_options() if self.tls is not None else {}
        server = uvicorn.Server(
            uvicorn.Config(
                rest,
                loop="none",
                lifespan="off",
                access_log=False,
                log_level="error",
                **tls_options,
            )
        )
        grpc_server = grpc.aio.server(
            interceptors=[AuthInterceptor(auth)],
            options=[
                ("grpc.max_receive_message_length", self.config.max_body_bytes),
                ("grpc.max_send_message_length", self.config.max_body_bytes),
            ],
        )
        grpc_server.add_generic_rpc_handlers((InferenceServicer(app.dataplane).handler(),))
        health_pb2_grpc.add_HealthServicer_to_server(
            HealthServicer(app.dataplane, watch_interval_s=0.2), grpc_server
        )
        address = f"{self.config.host}:0"
        if self.tls is not None:
            self.grpc_port = grpc_server.add_secure_port(address, self.tls.grpc_credentials())
        else:
            self.grpc_port = grpc_server.add_insecure_port(address)
        await grpc_server.start()
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            await asyncio.sleep(0.01)
        self._ready.set()
        await self._stop.wait()
        server.should_exit = True
        await serving
        await grpc_server.stop(1)
        await app.close()
        sock.close()

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as e:
            self.error = e
            self._ready.set()

    def start(self) -> SecureServer:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(120) or self.error is not None:
            raise RuntimeError(f"server did not start: {self.error!r}")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(60)


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        import json

        return json.loads(self.body)


def raw_request(
    port: int,
    method: str,
    target: bytes,
    *,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    chunked: bool = False,
    timeout: float = 30,
) -> Response:
    """One HTTP/1.1 request with the request target sent byte for byte (no normalising)."""
    hdrs = {"Host": f"127.0.0.1:{port}", "Connection": "close", **(headers or {})}
    if chunked:
        hdrs["Transfer-Encoding"] = "chunked"
    elif body or method in ("POST", "PUT"):
        hdrs.setdefault("Content-Length", str(len(body)))
    head = method.encode() + b" " + target + b" HTTP/1.1\r\n"
    head += b"".join(f"{k}: {v}\r\n".encode("latin-1") for k, v in hdrs.items()) + b"\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(head)
        if chunked:
            step = 1 << 16
            with contextlib.suppress(OSError):  # the server may answer 413 and close early
                for i in range(0, len(body), step):
                    piece = body[i : i + step]
                    s.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                s.sendall(b"0\r\n\r\n")
        elif body:
            with contextlib.suppress(OSError):
                s.sendall(body)
        data = b""
        with contextlib.suppress(OSError):
            while chunk := s.recv(65536):
                data += chunk
    head_raw, _, payload = data.partition(b"\r\n\r\n")
    lines = head_raw.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    parsed = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        parsed[k.strip().lower()] = v.strip()
    return Response(status, parsed, payload)


@contextlib.contextmanager
def opened_files() -> Iterator[list[str]]:
    """Record every file the process opens inside the block (a sys audit hook)."""
    record: list[str] = []
    if not _HOOK_STATE["installed"]:
        sys.addaudithook(_hook)  # hooks cannot be removed: install once, on first use
        _HOOK_STATE["installed"] = True
    _HOOK_STATE["target"] = record
    try:
        yield record
    finally:
        _HOOK_STATE["target"] = None


_HOOK_STATE: dict[str, Any] = {"target": None, "installed": False}


def _hook(event: str, args: tuple[Any, ...]) -> None:
    target = _HOOK_STATE["target"]
    if target is not None and event == "open" and args and isinstance(args[0], str | bytes):
        target.append(args[0] if isinstance(args[0], str) else args[0].decode(errors="replace"))
