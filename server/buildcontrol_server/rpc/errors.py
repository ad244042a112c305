"""The one mapping from domain errors to gRPC statuses. Anything unexpected becomes
INTERNAL with a generic message; its traceback goes to the log, never to the caller.
Every status carries google.rpc.Status details (rpc/error_details.py): clients read the
stable reason instead of parsing messages."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from grpc_status import rpc_status

from buildcontrol_server.domain.errors import DomainError, ErrorCode, Reason
from buildcontrol_server.domain.states import IllegalTransition
from buildcontrol_server.rpc.error_details import rich_status

log = logging.getLogger(__name__)

STATUS_OF: dict[ErrorCode, grpc.StatusCode] = {
    ErrorCode.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorCode.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorCode.FAILED_PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorCode.RESOURCE_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorCode.PERMISSION_DENIED: grpc.StatusCode.PERMISSION_DENIED,
    ErrorCode.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    # A lost compare-and-set race: the caller may retry against the new state.
    ErrorCode.CONFLICT: grpc.StatusCode.ABORTED,
}


def status_of(error: BaseException) -> tuple[grpc.StatusCode, str, Reason]:
    if isinstance(error, DomainError):
        return STATUS_OF[error.code], error.message, error.reason
    if isinstance(error, IllegalTransition):
        return grpc.StatusCode.FAILED_PRECONDITION, str(error), Reason.ILLEGAL_TRANSITION
    log.error("unexpected error", exc_info=error)
    return grpc.StatusCode.INTERNAL, "internal error (logged on the server)", Reason.INTERNAL


async def abort_with(context: grpc.aio.ServicerContext, error: BaseException) -> None:
    code, message, reason = status_of(error)
    domain_error = error if isinstance(error, DomainError) else None
    status = rpc_status.to_status(rich_status(code.value[0], message, reason, domain_error))
    await context.abort(status.code, status.details, status.trailing_metadata)


Handler = Callable[[Any, Any, grpc.aio.ServicerContext], Awaitable[Any]]
StreamHandler = Callable[[Any, Any, grpc.aio.ServicerContext], AsyncIterator[Any]]


def unary(handler: Handler) -> Handler:
    """Turn whatever a unary handler raises into its status (see `status_of`)."""

    @functools.wraps(handler)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await handler(self, request, context)
        except (asyncio.CancelledError, grpc.aio.AbortError):
            raise
        except Exception as error:
            await abort_with(context, error)

    return wrapper


def streaming(handler: StreamHandler) -> StreamHandler:
    """The same for a server-streaming handler (an async generator)."""

    @functools.wraps(handler)
    async def wrapper(
        self: Any, request: Any, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Any]:
        try:
            async for message in handler(self, request, context):
                yield message
        except (asyncio.CancelledError, grpc.aio.AbortError):
            raise
        except Exception as error:
            await abort_with(context, error)

    return wrapper
