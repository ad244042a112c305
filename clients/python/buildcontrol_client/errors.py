"""Typed errors of the client: every gRPC failure becomes one of these, in one place.

Callers catch `NotFound` or `Unavailable` instead of comparing status codes; the code
and the server's message stay available as `.code` and `.details`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import grpc
from google.rpc import error_details_pb2, status_pb2

# Where a server puts google.rpc.Status (grpcio-status's key).
_DETAILS_KEY = "grpc-status-details-bin"


@dataclass(frozen=True)
class ErrorDetails:
    """What the server said about an error beyond its code and message (AIP-193);
    docs/errors.md lists every `reason`."""

    reason: str = ""
    domain: str = ""
    # (field, description) of each invalid field.
    field_violations: tuple[tuple[str, str], ...] = ()
    # (type, subject, description) of each failed precondition.
    precondition_violations: tuple[tuple[str, str, str], ...] = ()
    # (resource type, name) of what was not found, if the server named it.
    resource: tuple[str, str] | None = None
    metadata: dict[str, str] = field(default_factory=dict)


class BuildControlError(Exception):
    """A call failed. `code` is the gRPC status; `details` the server's public message."""

    def __init__(
        self, code: grpc.StatusCode, details: str, error_details: ErrorDetails | None = None
    ) -> None:
        super().__init__(f"{code.name}: {details}" if details else code.name)
        self.code = code
        self.details = details
        self.error_details = error_details or ErrorDetails()

    @property
    def reason(self) -> str:
        """The stable reason (`BUILD_NOT_FOUND`, ...), or "" from a server without one."""
        return self.error_details.reason


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


# gRPC's words for a stream that ended without a status because its connection went
# away mid-stream (a proxy ends a stream so when its server dies: HAProxy does). No
# server answered, so it is the server being unavailable: callers reconnect.
_ENDED_WITHOUT_STATUS = "Stream removed"


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
    if code == grpc.StatusCode.UNKNOWN and (details or "").startswith(_ENDED_WITHOUT_STATUS):
        error_type = Unavailable
    return error_type(code, details or "", _details_of(error))


def _details_of(error: grpc.RpcError) -> ErrorDetails:
    trailing_of = getattr(error, "trailing_metadata", None)
    trailing = trailing_of() if callable(trailing_of) else None
    raw = next((value for key, value in trailing or () if key == _DETAILS_KEY), None)
    if not isinstance(raw, bytes):
        return ErrorDetails()
    status = status_pb2.Status.FromString(raw)
    found: dict[str, object] = {}
    violations: list[tuple[str, str]] = []
    preconditions: list[tuple[str, str, str]] = []
    for packed in status.details:
        if packed.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            packed.Unpack(info)
            found.update(reason=info.reason, domain=info.domain, metadata=dict(info.metadata))
        elif packed.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            packed.Unpack(bad)
            violations += [(v.field, v.description) for v in bad.field_violations]
        elif packed.Is(error_details_pb2.PreconditionFailure.DESCRIPTOR):
            failure = error_details_pb2.PreconditionFailure()
            packed.Unpack(failure)
            preconditions += [(v.type, v.subject, v.description) for v in failure.violations]
        elif packed.Is(error_details_pb2.ResourceInfo.DESCRIPTOR):
            resource = error_details_pb2.ResourceInfo()
            packed.Unpack(resource)
            found["resource"] = (resource.resource_type, resource.resource_name)
    return ErrorDetails(
        field_violations=tuple(violations),
        precondition_violations=tuple(preconditions),
        **found,  # type: ignore[arg-type]
    )


@contextmanager
def translated_rpc_errors() -> Iterator[None]:
    """Raise failed gRPC calls inside the block as typed BuildControlErrors."""
    try:
        yield
    except grpc.RpcError as error:
        raise error_from_rpc(error) from error
