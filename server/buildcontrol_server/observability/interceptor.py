"""One grpc.aio server interceptor that counts every RPC by service, method, type and
status code, and times it. py-grpc-prometheus has no aio support, and
this is small enough to own.

grpc.aio picks how to run a streaming handler by its kind (a coroutine function writes
with context.write; an async generator function yields), so each handler is wrapped by
a function of the same kind. A status comes from, in order: the exception the handler
ended with (an abort carries its code in the context; a cancelled RPC is CANCELLED;
anything else is UNKNOWN, as grpc answers it), or the code the handler set, or OK."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from buildcontrol_server import metrics

Behavior = Callable[[Any, grpc.aio.ServicerContext], Any]


def _status(context: grpc.aio.ServicerContext, error: BaseException | None) -> str:
    # A cancelled RPC: its task is cancelled, or its response generator closed early.
    if isinstance(error, asyncio.CancelledError | GeneratorExit):
        return "CANCELLED"
    code = context.code()
    if error is not None and not isinstance(error, grpc.aio.AbortError):
        return "UNKNOWN"  # an unhandled exception: grpc answers UNKNOWN whatever was set
    if code is None:
        return "OK" if error is None else "UNKNOWN"
    return str(getattr(code, "name", code))


class _Call:
    """One method's metric children (looked up once, not per call) and the recording of
    one finished call of it."""

    def __init__(self, full_method: str, kind: str) -> None:
        service, _, method = full_method.lstrip("/").rpartition("/")
        self._labels = {"grpc_service": service, "grpc_method": method, "grpc_type": kind}
        self._seconds = metrics.GRPC_SERVER_HANDLING_SECONDS.labels(**self._labels)
        self._handled: dict[str, Any] = {}

    def record(
        self, context: grpc.aio.ServicerContext, started: float, error: BaseException | None
    ) -> None:
        self._seconds.observe(time.perf_counter() - started)
        code = _status(context, error)
        handled = self._handled.get(code)
        if handled is None:
            handled = metrics.GRPC_SERVER_HANDLED.labels(**self._labels, grpc_code=code)
            self._handled[code] = handled
        handled.inc()


def _wrap(behavior: Behavior, call: _Call) -> Behavior | None:
    """A handler of the same kind as `behavior` that records each call; None when
    `behavior` is a plain function (sync handlers: not used by this server)."""
    if inspect.isasyncgenfunction(behavior):

        async def streamed(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            started = time.perf_counter()
            try:
                async for response in behavior(request, context):
                    yield response
            except BaseException as error:  # recorded and re-raised, never swallowed
                call.record(context, started, error)
                raise
            call.record(context, started, None)

        return streamed
    if inspect.iscoroutinefunction(behavior):

        async def awaited(request: Any, context: grpc.aio.ServicerContext) -> Any:
            started = time.perf_counter()
            try:
                response = await behavior(request, context)
            except BaseException as error:  # recorded and re-raised, never swallowed
                call.record(context, started, error)
                raise
            call.record(context, started, None)
            return response

        return awaited
    return None


# (attribute of the RpcMethodHandler, label, factory of a handler of that shape)
_SHAPES = (
    ("unary_unary", "unary", grpc.unary_unary_rpc_method_handler),
    ("unary_stream", "server_stream", grpc.unary_stream_rpc_method_handler),
    ("stream_unary", "client_stream", grpc.stream_unary_rpc_method_handler),
    ("stream_stream", "bidi_stream", grpc.stream_stream_rpc_method_handler),
)


class MetricsInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    def __init__(self) -> None:
        # (method, kind) → its metric children, looked up once. The handler itself is
        # wrapped on every call: the authentication interceptor after this one hands
        # out a new handler per call (bound to that call's caller).
        self._calls: dict[tuple[str, str], _Call] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None  # unknown method: grpc answers UNIMPLEMENTED itself
        return self._wrap_handler(handler, handler_call_details.method)

    def _wrap_handler(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        for attribute, kind, factory in _SHAPES:
            behavior = getattr(handler, attribute)
            if behavior is None:
                continue
            call = self._calls.get((method, kind))
            if call is None:
                call = self._calls[(method, kind)] = _Call(method, kind)
            wrapped = _wrap(behavior, call)
            if wrapped is None:
                return handler
            return factory(
                wrapped,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler
