"""``grpc.health.v1.Health`` answered live from the data plane's readiness.

Service names: ``""`` and ``inference.GRPCInferenceService`` report the server's
readiness (``NOT_SERVING`` as soon as a graceful shutdown begins, so a load balancer or
Kubernetes gRPC probe moves traffic away first); a model name reports that model's
readiness; anything else is ``NOT_FOUND`` (``Check``) or ``SERVICE_UNKNOWN`` (``Watch``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from grpc_health.v1 import health_pb2, health_pb2_grpc

import grpc
from modelport.serving.dataplane import DataPlane

SERVICE_NAME = "inference.GRPCInferenceService"
_SERVING = int(health_pb2.HealthCheckResponse.SERVING)
_NOT_SERVING = int(health_pb2.HealthCheckResponse.NOT_SERVING)
_UNKNOWN = int(health_pb2.HealthCheckResponse.SERVICE_UNKNOWN)


class HealthServicer(health_pb2_grpc.HealthServicer):  # type: ignore[misc]
    """Health checks that ask the data plane on every call (no status to keep in sync).

    Example:
        >>> servicer = HealthServicer(dataplane, watch_interval_s=0.5)  # doctest: +SKIP
        >>> health_pb2_grpc.add_HealthServicer_to_server(servicer, server)  # doctest: +SKIP
    """

    def __init__(self, dataplane: DataPlane, *, watch_interval_s: float = 0.5) -> None:
        self._dp = dataplane
        self._interval = watch_interval_s

    def status(self, service: str) -> int | None:
        """The serving status of ``service``, or None when no such service exists."""
        if service in ("", SERVICE_NAME):
            return _SERVING if self._dp.live() and self._dp.ready() else _NOT_SERVING
        if any(e["name"] == service for e in self._dp.repository_index()):
            return _SERVING if self._dp.model_ready(service) else _NOT_SERVING
        return None

    async def Check(self, request: Any, context: Any) -> Any:
        status = self.status(request.service)
        if status is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
        return health_pb2.HealthCheckResponse(status=status)

    async def Watch(self, request: Any, context: Any) -> AsyncIterator[Any]:
        last: int | None = None
        while True:
            status = self.status(request.service)
            status = _UNKNOWN if status is None else status
            if status != last:
                yield health_pb2.HealthCheckResponse(status=status)
                last = status
            await asyncio.sleep(self._interval)
