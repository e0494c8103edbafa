"""Authentication and authorization for the gRPC server (a ``grpc.aio`` interceptor).

Each call is checked before its handler runs: the method's permission comes from
:data:`~modelport.security.routes.GRPC_METHODS` (unlisted methods need admin), the
credential from the ``authorization`` metadata (``Bearer <key or JWT>``, same rules as
REST). Refusals are ``UNAUTHENTICATED`` or ``PERMISSION_DENIED`` with no side effect.

For a principal limited to some models, the model named in each request message is
checked as well. The inference servlet receives raw bytes (it parses them itself), so
the model name is read straight from the protobuf wire format (the field number comes
from the method table; the last occurrence wins, as in protobuf itself).

This module imports ``grpc``; only the gRPC server imports it.

Example:
    >>> server = grpc.aio.server(interceptors=[AuthInterceptor(authenticator)])  # doctest: +SKIP
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from modelport.core.errors import InvalidArgument, ModelportError, Unauthenticated
from modelport.security.auth import Authenticator
from modelport.security.policy import PUBLIC, Principal, authorize
from modelport.security.routes import classify_grpc

Check = Callable[[Any], None]


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise InvalidArgument("malformed request message")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7


def wire_string_field(message: bytes, field: int) -> str:
    """The last value of string field ``field`` in a serialized protobuf message.

    Example:
        >>> wire_string_field(b"\\x0a\\x04iris\\x12\\x011", 1)
        'iris'
    """
    pos, found = 0, b""
    while pos < len(message):
        key, pos = _varint(message, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, pos = _varint(message, pos)
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            size, pos = _varint(message, pos)
            if pos + size > len(message):
                raise InvalidArgument("malformed request message")
            if number == field:
                found = message[pos : pos + size]
            pos += size
        else:
            raise InvalidArgument("malformed request message")
    if pos != len(message):
        raise InvalidArgument("malformed request message")
    try:
        return found.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidArgument("malformed request message") from None


def _model_of(request: Any, field: int) -> str:
    if isinstance(request, bytes | bytearray | memoryview):
        return wire_string_field(bytes(request), field)
    descriptor = request.DESCRIPTOR.fields_by_number.get(field)
    return str(getattr(request, descriptor.name)) if descriptor is not None else ""


def _status(error: ModelportError) -> grpc.StatusCode:
    return grpc.StatusCode[error.grpc_code.name]


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


def _deny(handler: grpc.RpcMethodHandler, error: ModelportError) -> grpc.RpcMethodHandler:
    """A handler of the same kind as ``handler`` that only aborts with ``error``."""
    code, message = _status(error), error.message

    async def unary(request: Any, context: Any) -> Any:
        await context.abort(code, message)

    async def streaming(request: Any, context: Any) -> AsyncIterator[Any]:
        await context.abort(code, message)
        yield  # pragma: no cover - abort raises

    kinds = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }
    make = kinds[(bool(handler.request_streaming), bool(handler.response_streaming))]
    return make(
        streaming if handler.response_streaming else unary,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


def _with_check(handler: grpc.RpcMethodHandler, check: Check) -> grpc.RpcMethodHandler:
    """``handler`` with ``check`` applied to every request message first."""
    opts = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }

    async def checked_iter(requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
        async for r in requests:
            try:
                check(r)
            except ModelportError as e:
                await context.abort(_status(e), e.message)
            yield r

    if not handler.request_streaming and not handler.response_streaming:
        inner_uu = handler.unary_unary

        async def uu(request: Any, context: Any) -> Any:
            try:
                check(request)
            except ModelportError as e:
                await context.abort(_status(e), e.message)
            return await _maybe_await(inner_uu(request, context))

        return grpc.unary_unary_rpc_method_handler(uu, **opts)
    if not handler.request_streaming:
        inner_us = handler.unary_stream

        async def us(request: Any, context: Any) -> AsyncIterator[Any]:
            try:
                check(request)
            except ModelportError as e:
                await context.abort(_status(e), e.message)
            async for resp in inner_us(request, context):
                yield resp

        return grpc.unary_stream_rpc_method_handler(us, **opts)
    if not handler.response_streaming:
        inner_su = handler.stream_unary

        async def su(requests: AsyncIterator[Any], context: Any) -> Any:
            return await _maybe_await(inner_su(checked_iter(requests, context), context))

        return grpc.stream_unary_rpc_method_handler(su, **opts)
    inner_ss = handler.stream_stream

    async def ss(requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
        async for resp in inner_ss(checked_iter(requests, context), context):
            yield resp

    return grpc.stream_stream_rpc_method_handler(ss, **opts)


class AuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Checks every gRPC call against the policy before its handler runs."""

    def __init__(self, authenticator: Authenticator) -> None:
        self.auth = authenticator

    async def intercept_service(
        self,
        continuation: Callable[[Any], Awaitable[grpc.RpcMethodHandler | None]],
        handler_call_details: Any,
    ) -> grpc.RpcMethodHandler | None:
        rule = classify_grpc(handler_call_details.method)
        if rule.permission in PUBLIC:
            return await continuation(handler_call_details)
        values = [
            v.decode("latin-1") if isinstance(v, bytes) else str(v)
            for k, v in (handler_call_details.invocation_metadata or ())
            if k == "authorization"
        ]
        try:
            if len(values) > 1:
                raise Unauthenticated("invalid credentials: more than one authorization entry")
            principal = self.auth.authenticate(values[0] if values else None)
            authorize(principal, rule.permission)
        except ModelportError as e:
            # Refused before the method is even looked up: an unknown method answers
            # UNAUTHENTICATED / PERMISSION_DENIED like a known one, not UNIMPLEMENTED.
            handler = await continuation(handler_call_details)
            return _deny(handler or grpc.unary_unary_rpc_method_handler(None), e)
        handler = await continuation(handler_call_details)
        if handler is None or principal.models is None or not rule.model_field:
            return handler
        return _with_check(handler, _scope_check(principal, rule))


def _scope_check(principal: Principal, rule: Any) -> Check:
    def check(request: Any) -> None:
        authorize(principal, rule.permission, _model_of(request, rule.model_field))

    return check
