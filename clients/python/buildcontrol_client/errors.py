"""Typed errors of the client: every gRPC failure becomes one of these, in one place.

Callers catch `NotFound` or `Unavailable` instead of comparing status codes; the code
and the server's message stay available as `.code` and `.details`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import grpc


class BuildControlError(Exception):
    """A call failed. `code` is the gRPC status; `details` the server's public message."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}" if details else code.name)
        self.code = code
        self.details = details


class InvalidArgument(BuildControlError):
    """The request was malformed; `details` names the field."""


class NotFound(BuildControlError):
    """No such build (or job)."""


class FailedPrecondition(BuildControlError):
    """The build is in a state that does not allow the call (e.g. cancel of a SUCCEEDED build)."""


class Unavailable(BuildControlError):
    """The server cannot be reached or is shutting down; retrying later may work."""


class PermissionDenied(BuildControlError):
    """The caller is known but not allowed to do this."""


class Unauthenticated(BuildControlError):
    """The caller did not prove who it is."""


class ResourceExhausted(BuildControlError):
    """A limit was hit (too many builds, too large a request)."""


class DeadlineExceeded(BuildControlError):
    """The call's timeout passed before the server answered."""


class StreamEndedEarly(BuildControlError):
    """A stream ended cleanly without its promised last message (a server bug or restart)."""

    def __init__(self, details: str) -> None:
        super().__init__(grpc.StatusCode.UNKNOWN, details)


_ERROR_BY_CODE: dict[grpc.StatusCode, type[BuildControlError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
}


def error_from_rpc(error: grpc.RpcError) -> BuildControlError:
    """The typed error for a failed call (sync `grpc.RpcError` or aio `AioRpcError`)."""
    # Both kinds of failed call expose code() and details(); a bare RpcError (raised by
    # some channel internals) has neither and is reported as UNKNOWN.
    code_of = getattr(error, "code", None)
    details_of = getattr(error, "details", None)
    code = code_of() if callable(code_of) else grpc.StatusCode.UNKNOWN
    details = details_of() if callable(details_of) else str(error)
    if not isinstance(code, grpc.StatusCode):
        code = grpc.StatusCode.UNKNOWN
    error_type = _ERROR_BY_CODE.get(code, BuildControlError)
    return error_type(code, details or "")


@contextmanager
def translated_rpc_errors() -> Iterator[None]:
    """Raise failed gRPC calls inside the block as typed BuildControlErrors."""
    try:
        yield
    except grpc.RpcError as error:
        raise error_from_rpc(error) from error
