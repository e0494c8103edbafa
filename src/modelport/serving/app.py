"""The composition root of the server: settings → registry → manager → data plane → adapters.

Everything the server uses is built here and passed down by constructor; nothing
else in ``serving`` creates long-lived objects on its own.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from modelport.core.config import Settings
from modelport.monitoring.monitor import Monitor
from modelport.registry import Registry
from modelport.security.asgi import SecurityMiddleware
from modelport.security.audit import AuditLog
from modelport.security.auth import Authenticator
from modelport.security.listeners import default_allowed_hosts
from modelport.security.loading import LoadGuard
from modelport.serving.config import ModelConfig, ServeConfig
from modelport.serving.dataplane import DataPlane
from modelport.serving.manager import ModelManager, VersionSource
from modelport.serving.rest import RestApp


@dataclass
class ServingApp:
    """The objects of one server process."""

    settings: Settings
    config: ServeConfig
    registry: VersionSource
    pool: ThreadPoolExecutor
    manager: ModelManager
    dataplane: DataPlane
    rest: RestApp
    auth: Authenticator
    asgi: Any  # what the HTTP listener runs: SecurityMiddleware → rest, or rest
    monitor: Monitor

    async def close(self) -> None:
        await self.manager.close()
        self.monitor.close()
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.registry.close()


def model_configs(config: ServeConfig, registry: VersionSource) -> list[ModelConfig]:
    """The models to serve: the configured ones, plus every registry model with --all."""
    models = list(config.models)
    if config.serve_all:
        named = {m.parsed_ref().name for m in models}
        models += [config.for_model(s.name) for s in registry.list() if s.name not in named]
    return models


async def build_app(
    settings: Settings, config: ServeConfig, registry: VersionSource | None = None
) -> ServingApp:
    """Build and load everything ``config`` asks for (failed loads are recorded)."""
    if registry is None:
        registry = Registry.from_settings(settings)
    threads = config.threads or max(2, os.cpu_count() or 1)
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="modelport-infer")
    audit = AuditLog.from_settings(settings)
    auth = Authenticator.from_settings(settings, audit=audit)
    guard = LoadGuard.from_settings(settings, audit=audit)
    monitor = Monitor(config.monitoring, home=settings.home)
    manager = ModelManager(
        registry,
        pool,
        threads=threads,
        drain_timeout_s=config.drain_timeout_s,
        guard=guard,
        monitor=monitor,
    )
    for model in model_configs(config, registry):
        await manager.add(model)
    dataplane = DataPlane(manager, config, monitor=monitor)
    allowed_hosts = default_allowed_hosts(config.host)
    rest = RestApp(
        dataplane,
        max_body_bytes=config.max_body_bytes,
        metrics=monitor.render,
        browser_checks=not auth.enabled,
        allowed_hosts=allowed_hosts,
    )
    # With authentication the middleware checks credentials (and Host/Origin) first;
    # without it the REST adapter does the Host/Origin checks itself, one layer less.
    asgi: Any = (
        SecurityMiddleware(rest, auth, allowed_hosts=allowed_hosts) if auth.enabled else rest
    )
    monitor.start()
    return ServingApp(
        settings, config, registry, pool, manager, dataplane, rest, auth, asgi, monitor
    )
