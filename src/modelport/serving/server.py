"""Running the server: HTTP (uvicorn) and gRPC listeners, the registry poller, signals.

Shutdown on SIGTERM/SIGINT is graceful and in this order: readiness fails at once
(load balancers stop sending), requests keep being served for ``shutdown_delay_s``,
then the listeners close and in-flight requests finish within ``drain_timeout_s``,
then the process exits. ``--workers N`` runs N processes sharing the ports
(SO_REUSEPORT), each with its own event loop and models, so both cores serve.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import multiprocessing
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from modelport.core.config import Settings
from modelport.core.errors import InvalidArgument
from modelport.security.listeners import TlsFiles, check_exposure
from modelport.serving.app import ServingApp, build_app
from modelport.serving.config import ServeConfig
from modelport.serving.manager import VersionSource

log = logging.getLogger("modelport.serving")


def _uvicorn_server(app: ServingApp, sock: socket.socket, tls: TlsFiles | None) -> Any:
    import uvicorn

    from modelport.serving.http_inline import protocol_class

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:  # signals are ours (graceful order)
            yield

    cfg = uvicorn.Config(
        app.asgi,
        http=protocol_class(app.rest, app.asgi),
        loop="none",
        lifespan="off",
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=int(app.config.drain_timeout_s) or None,
        timeout_keep_alive=30,
        limit_concurrency=None,
        proxy_headers=False,  # X-Forwarded-* are not trusted by default
        **(tls.uvicorn_options() if tls is not None else {}),
    )
    return Server(cfg)


def _tune_gc() -> None:
    """Keep the cyclic GC off the request path's tail latency.

    Everything built at start-up (modules, models, the app) is moved out of the
    collector's reach, and young-generation collections run less often: request
    objects are freed by reference counting, and the feedback store's many small
    tuples made frequent full traversals show up as p99 spikes.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


def bind_socket(host: str, port: int, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise InvalidArgument(f"cannot listen on {host}:{port}: {e.strerror}") from e
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


@dataclass
class RunningServer:
    """Handle on a started server: its app, bound ports, and a thread-safe stop()."""

    app: ServingApp
    http_port: int
    grpc_port: int | None
    _loop: asyncio.AbstractEventLoop
    _stop: Callable[[], None]

    def stop(self) -> None:
        """Begin the graceful shutdown (safe to call from any thread)."""
        self._loop.call_soon_threadsafe(self._stop)


async def run_server(
    settings: Settings,
    config: ServeConfig,
    *,
    reuse_port: bool = False,
    on_ready: Callable[[RunningServer], None] | None = None,
    shutdown_delay_s: float = 0.0,
    install_signals: bool = True,
    source: Callable[[], VersionSource] | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT (or ``RunningServer.stop()``), then shut down gracefully."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    if install_signals:  # before anything starts: a signal while loading stops once up
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
    check_exposure(config.host, auth_enabled=settings.auth_enabled, insecure=config.insecure)
    tls = TlsFiles.from_settings(settings)
    app = await build_app(settings, config, source() if source is not None else None)
    _tune_gc()
    sock = bind_socket(config.host, config.http_port, reuse_port)
    server = _uvicorn_server(app, sock, tls)
    grpc_server, grpc_port = None, None
    if config.grpc_port is not None:
        from modelport.security.grpc_auth import AuthInterceptor
        from modelport.serving.grpc.server import start_grpc_server

        grpc_server, grpc_port = await start_grpc_server(
            app.dataplane,
            config.host,
            config.grpc_port,
            max_message_bytes=config.max_body_bytes,
            reuse_port=reuse_port,
            interceptors=[AuthInterceptor(app.auth)] if app.auth.enabled else (),
            credentials=tls.grpc_credentials() if tls is not None else None,
        )
    poller = loop.create_task(app.manager.poll(config.poll_interval_s))

    async def stopper() -> None:
        await stopping.wait()  # woken on the signal's own loop turn
        app.dataplane.stop_accepting()
        log.info("shutting down: readiness off, draining for up to %.0fs", config.drain_timeout_s)
        await asyncio.sleep(shutdown_delay_s)
        server.should_exit = True
        if grpc_server is not None:
            await grpc_server.stop(config.drain_timeout_s)

    stop_task = loop.create_task(stopper())
    if on_ready is not None:
        port = int(sock.getsockname()[1])
        on_ready(RunningServer(app, port, grpc_port, loop, stopping.set))
    try:
        await server.serve(sockets=[sock])
    finally:
        stopping.set()
        await stop_task
        poller.cancel()
        deadline = time.monotonic() + config.drain_timeout_s
        while app.dataplane.inflight and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        log.info("stopped: %d unfinished requests", app.dataplane.inflight)
        await app.close()
        sock.close()


def _worker(
    settings: Settings,
    config: ServeConfig,
    shutdown_delay_s: float,
    source: Callable[[], VersionSource] | None,
) -> None:
    _run_loop(
        run_server(
            settings, config, reuse_port=True, shutdown_delay_s=shutdown_delay_s, source=source
        )
    )


def _run_loop(coro: Any) -> None:
    try:
        import uvloop

        uvloop.run(coro)
    except ImportError:  # pragma: no cover - uvloop is in the serve extra
        asyncio.run(coro)


def serve_forever(
    settings: Settings,
    config: ServeConfig,
    shutdown_delay_s: float = 0.0,
    source: Callable[[], VersionSource] | None = None,
) -> None:
    """Run the server in this process, or ``config.workers`` processes sharing the ports.

    ``source`` builds what versions are read from (default: the registry of
    ``settings``); it must be picklable when ``workers`` > 1.
    """
    if config.workers == 1:
        _run_loop(run_server(settings, config, shutdown_delay_s=shutdown_delay_s, source=source))
        return
    if config.http_port == 0 or config.grpc_port == 0:
        raise InvalidArgument("--workers > 1 needs fixed ports (not 0)")
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_worker, args=(settings, config, shutdown_delay_s, source), daemon=False)
        for _ in range(config.workers)
    ]
    for p in procs:
        p.start()

    def forward(signum: int, _frame: Any) -> None:
        for p in procs:
            if p.is_alive() and p.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    import os

                    os.kill(p.pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for p in procs:
        p.join()
    codes = [p.exitcode for p in procs]
    if any(codes):
        sys.exit(f"worker exit codes: {codes}")
