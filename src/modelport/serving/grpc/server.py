"""``inference.GRPCInferenceService`` over ``grpc.aio``: a thin adapter over the data plane.

Wire-compatible with ``tritonclient.grpc`` because it uses the message classes that
package ships (one descriptor pool for server and client). Each RPC parses its request,
calls one :class:`~modelport.serving.dataplane.DataPlane` method and converts the
answer; errors are mapped in one table, :data:`STATUS`, from the error's
``grpc_code``. Requests are deserialised inside the handler, so a garbage message is
``INVALID_ARGUMENT`` (gRPC's own deserialiser would report ``INTERNAL``); a message
over the size limit is ``RESOURCE_EXHAUSTED``. ``ModelStreamInfer`` (what
``tritonclient.grpc``'s ``start_stream``/``async_stream_infer`` use) runs the requests
of a stream concurrently, up to :data:`STREAM_INFLIGHT` at a time, and answers each as
it finishes; a failed request is answered in the stream with its ``error_message`` and
the stream goes on. RPCs not listed (shared memory, tracing, logging) answer
``UNIMPLEMENTED``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeAlias

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from grpc_health.v1 import health_pb2_grpc
from tritonclient.grpc import model_config_pb2, service_pb2_grpc
from tritonclient.grpc import service_pb2 as pb

import grpc
from modelport.core.errors import GrpcCode, InvalidArgument, ModelportError
from modelport.core.types import validate_name
from modelport.protocol import grpc_codec
from modelport.serving.dataplane import DataPlane
from modelport.serving.grpc.health import HealthServicer

log = logging.getLogger(__name__)

SERVICE = "inference.GRPCInferenceService"

#: The one error table of the gRPC edge: ModelportError.grpc_code → grpc.StatusCode.
STATUS: dict[GrpcCode, grpc.StatusCode] = {
    GrpcCode.OK: grpc.StatusCode.OK,
    GrpcCode.CANCELLED: grpc.StatusCode.CANCELLED,
    GrpcCode.UNKNOWN: grpc.StatusCode.UNKNOWN,
    GrpcCode.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    GrpcCode.DEADLINE_EXCEEDED: grpc.StatusCode.DEADLINE_EXCEEDED,
    GrpcCode.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    GrpcCode.ALREADY_EXISTS: grpc.StatusCode.ALREADY_EXISTS,
    GrpcCode.PERMISSION_DENIED: grpc.StatusCode.PERMISSION_DENIED,
    GrpcCode.RESOURCE_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    GrpcCode.FAILED_PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
    GrpcCode.ABORTED: grpc.StatusCode.ABORTED,
    GrpcCode.OUT_OF_RANGE: grpc.StatusCode.OUT_OF_RANGE,
    GrpcCode.UNIMPLEMENTED: grpc.StatusCode.UNIMPLEMENTED,
    GrpcCode.INTERNAL: grpc.StatusCode.INTERNAL,
    GrpcCode.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    GrpcCode.DATA_LOSS: grpc.StatusCode.DATA_LOSS,
    GrpcCode.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
}

#: The RPCs served, with their request and response message classes.
RPCS: dict[str, tuple[Any, Any]] = {
    "ServerLive": (pb.ServerLiveRequest, pb.ServerLiveResponse),
    "ServerReady": (pb.ServerReadyRequest, pb.ServerReadyResponse),
    "ModelReady": (pb.ModelReadyRequest, pb.ModelReadyResponse),
    "ServerMetadata": (pb.ServerMetadataRequest, pb.ServerMetadataResponse),
    "ModelMetadata": (pb.ModelMetadataRequest, pb.ModelMetadataResponse),
    "ModelInfer": (pb.ModelInferRequest, pb.ModelInferResponse),
    "ModelConfig": (pb.ModelConfigRequest, pb.ModelConfigResponse),
    "ModelStatistics": (pb.ModelStatisticsRequest, pb.ModelStatisticsResponse),
    "RepositoryIndex": (pb.RepositoryIndexRequest, pb.RepositoryIndexResponse),
    "RepositoryModelLoad": (pb.RepositoryModelLoadRequest, pb.RepositoryModelLoadResponse),
    "RepositoryModelUnload": (pb.RepositoryModelUnloadRequest, pb.RepositoryModelUnloadResponse),
}

#: grpc.aio.ServicerContext (grpc ships no type information)
Context: TypeAlias = Any

#: Requests of one ``ModelStreamInfer`` stream running at once; the stream is not read
#: further until one finishes (backpressure to the client through gRPC flow control).
STREAM_INFLIGHT = 64
_END_OF_STREAM = object()


def _name(raw: str) -> str:
    return validate_name(raw)


def _version(raw: str) -> str | None:
    if not raw:
        return None
    if raw.isdigit() and raw.isascii():
        return raw
    return validate_name(raw, "version or alias")


class InferenceServicer(service_pb2_grpc.GRPCInferenceServiceServicer):  # type: ignore[misc]
    """Every served RPC, each one call into the data plane.

    Example:
        >>> servicer = InferenceServicer(dataplane)                    # doctest: +SKIP
        >>> server.add_generic_rpc_handlers((servicer.handler(),))    # doctest: +SKIP
    """

    def __init__(self, dataplane: DataPlane) -> None:
        self.dp = dataplane

    async def ServerLive(self, request: Any, context: Context) -> Any:
        return pb.ServerLiveResponse(live=self.dp.live())

    async def ServerReady(self, request: Any, context: Context) -> Any:
        return pb.ServerReadyResponse(ready=self.dp.ready())

    async def ModelReady(self, request: Any, context: Context) -> Any:
        name, version = _name(request.name), _version(request.version)
        return pb.ModelReadyResponse(ready=self.dp.model_ready(name, version))

    async def ServerMetadata(self, request: Any, context: Context) -> Any:
        return json_format.ParseDict(self.dp.server_metadata(), pb.ServerMetadataResponse())

    async def ModelMetadata(self, request: Any, context: Context) -> Any:
        md = self.dp.model_metadata(_name(request.name), _version(request.version))
        return json_format.ParseDict(md, pb.ModelMetadataResponse(), ignore_unknown_fields=True)

    async def ModelInfer(self, request: Any, context: Context) -> Any:
        name, version = _name(request.model_name), _version(request.model_version)
        req = grpc_codec.request_from_grpc(request)
        timeout = context.time_remaining()
        response = await self.dp.infer(name, version, req, timeout_s=timeout, protocol="grpc")
        return grpc_codec.response_to_grpc(response, req)

    async def ModelConfig(self, request: Any, context: Context) -> Any:
        cfg = self.dp.model_config(_name(request.name), _version(request.version))
        config = json_format.ParseDict(
            cfg, model_config_pb2.ModelConfig(), ignore_unknown_fields=True
        )
        return pb.ModelConfigResponse(config=config)

    async def ModelStatistics(self, request: Any, context: Context) -> Any:
        name = _name(request.name) if request.name else None
        stats = self.dp.statistics(name, _version(request.version))
        return json_format.ParseDict(
            stats, pb.ModelStatisticsResponse(), ignore_unknown_fields=True
        )

    async def RepositoryIndex(self, request: Any, context: Context) -> Any:
        models = [
            pb.RepositoryIndexResponse.ModelIndex(
                name=e["name"], version=e["version"], state=e["state"], reason=e["reason"]
            )
            for e in self.dp.repository_index(ready_only=request.ready)
        ]
        return pb.RepositoryIndexResponse(models=models)

    async def RepositoryModelLoad(self, request: Any, context: Context) -> Any:
        name = _name(request.model_name)
        for key in request.parameters:
            if key == "config" or key.startswith("file:"):
                raise InvalidArgument(
                    f"load parameter {key[:60]!r} is not supported: models are loaded from "
                    "the registry (register the files, then load by name)"
                )
        await self.dp.load(name)
        return pb.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(self, request: Any, context: Context) -> Any:
        await self.dp.unload(_name(request.model_name))
        return pb.RepositoryModelUnloadResponse()

    async def ModelStreamInfer(
        self, requests: AsyncIterator[bytes], context: Context
    ) -> AsyncIterator[Any]:
        """Answer each request of the stream as it finishes (see the module docstring)."""
        done: asyncio.Queue[Any] = asyncio.Queue()
        slots = asyncio.Semaphore(STREAM_INFLIGHT)
        running: set[asyncio.Task[None]] = set()
        loop = asyncio.get_running_loop()

        async def one(raw: bytes) -> None:
            try:
                await done.put(await self._stream_answer(raw, context))
            finally:
                slots.release()

        async def read() -> None:
            try:
                async for raw in requests:
                    await slots.acquire()
                    task = loop.create_task(one(raw))
                    running.add(task)
                    task.add_done_callback(running.discard)
                while running:
                    await asyncio.wait(set(running))
            finally:
                await done.put(_END_OF_STREAM)

        reader = loop.create_task(read())
        try:
            while (answer := await done.get()) is not _END_OF_STREAM:
                yield answer
            await reader  # a broken request stream ends the call with its error
        finally:
            reader.cancel()
            for task in list(running):
                task.cancel()

    async def _stream_answer(self, raw: bytes, context: Context) -> Any:
        try:
            request = pb.ModelInferRequest.FromString(raw)
        except DecodeError:
            return pb.ModelStreamInferResponse(error_message="malformed ModelInferRequest")
        try:
            response = await self.ModelInfer(request, context)
        except ModelportError as e:
            message = e.message
        except Exception:
            log.exception("internal error in gRPC ModelStreamInfer")
            message = "internal server error"
        else:
            return pb.ModelStreamInferResponse(infer_response=response)
        return pb.ModelStreamInferResponse(
            error_message=message,
            infer_response=pb.ModelInferResponse(
                model_name=request.model_name, model_version=request.model_version, id=request.id
            ),
        )

    def handler(self) -> grpc.GenericRpcHandler:
        """The generic handler serving :data:`RPCS` (bytes in, parsed in the handler)."""
        methods = {
            rpc: grpc.unary_unary_rpc_method_handler(
                _guard(getattr(self, rpc), req_cls, rpc),
                request_deserializer=None,
                response_serializer=resp_cls.SerializeToString,
            )
            for rpc, (req_cls, resp_cls) in RPCS.items()
        }
        methods["ModelStreamInfer"] = grpc.stream_stream_rpc_method_handler(
            self.ModelStreamInfer,
            request_deserializer=None,
            response_serializer=pb.ModelStreamInferResponse.SerializeToString,
        )
        return grpc.method_handlers_generic_handler(SERVICE, methods)


def _guard(
    method: Callable[[Any, Context], Awaitable[Any]], request_class: Any, rpc: str
) -> Callable[[bytes, Context], Awaitable[Any]]:
    """Parse the request and map every error to a status, in one place."""

    async def call(raw: bytes, context: Context) -> Any:
        try:
            request = request_class.FromString(raw)
        except DecodeError:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"malformed {rpc} request")
        try:
            return await method(request, context)
        except ModelportError as e:
            error: tuple[grpc.StatusCode, str] = (STATUS[e.grpc_code], e.message)
        except Exception:
            log.exception("internal error in gRPC %s", rpc)
            error = (grpc.StatusCode.INTERNAL, "internal server error")
        await context.abort(*error)

    return call


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


async def start_grpc_server(
    dataplane: DataPlane,
    host: str = "127.0.0.1",
    port: int = 8001,
    *,
    max_message_bytes: int = 64 << 20,
    reuse_port: bool = False,
    health_watch_interval_s: float = 0.5,
    interceptors: Sequence[Any] = (),
    credentials: Any = None,
) -> tuple[grpc.aio.Server, int]:
    """Start the gRPC inference and health services; return the server and its port.

    ``port`` 0 picks a free port. ``reuse_port`` lets several worker processes share
    the port (SO_REUSEPORT); off by default so that a port already taken is an error.
    ``interceptors`` (``grpc.aio.ServerInterceptor``, e.g. authentication) run before
    every handler, health checks included.
    Stop with ``await server.stop(grace_seconds)``.

    Example:
        >>> server, port = await start_grpc_server(dataplane, "127.0.0.1", 0)  # doctest: +SKIP
        >>> await server.stop(5)                                             # doctest: +SKIP
    """
    options = [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.so_reuseport", 1 if reuse_port else 0),
    ]
    server = grpc.aio.server(interceptors=list(interceptors), options=options)
    server.add_generic_rpc_handlers((InferenceServicer(dataplane).handler(),))
    health = HealthServicer(dataplane, watch_interval_s=health_watch_interval_s)
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    try:
        address = _address(host, port)
        if credentials is not None:  # TLS (and mutual TLS): grpc.ssl_server_credentials
            bound = server.add_secure_port(address, credentials)
        else:
            bound = server.add_insecure_port(address)
    except RuntimeError as e:
        await server.stop(None)
        raise InvalidArgument(f"cannot listen for gRPC on {host}:{port}: {e}") from e
    if bound == 0:
        await server.stop(None)
        raise InvalidArgument(f"cannot listen for gRPC on {host}:{port}")
    await server.start()
    return server, bound
