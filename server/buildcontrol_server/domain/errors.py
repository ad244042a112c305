"""The error catalog: every failure a caller can cause, with a code and a stable reason.
rpc/errors.py maps codes to gRPC statuses and reasons to google.rpc.ErrorInfo (with
the field, resource or precondition that failed); nothing here knows about gRPC.
docs/errors.md lists every reason (a test keeps it complete)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ErrorCode(StrEnum):
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    UNAVAILABLE = "UNAVAILABLE"
    CONFLICT = "CONFLICT"
    ALREADY_EXISTS = "ALREADY_EXISTS"


class Reason(StrEnum):
    """Why a call failed, for programs: stable across releases (ErrorInfo.reason)."""

    INVALID_FIELD = "INVALID_FIELD"
    NOT_FOUND = "NOT_FOUND"
    BUILD_NOT_FOUND = "BUILD_NOT_FOUND"
    BUILD_ALREADY_FINISHED = "BUILD_ALREADY_FINISHED"
    ILLEGAL_TRANSITION = "ILLEGAL_TRANSITION"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    LIMIT_EXCEEDED = "LIMIT_EXCEEDED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    NOT_YOUR_JOB = "NOT_YOUR_JOB"
    UNAVAILABLE = "UNAVAILABLE"
    VERSION_CONFLICT = "VERSION_CONFLICT"
    AGENT_ALREADY_CONNECTED = "AGENT_ALREADY_CONNECTED"
    STREAM_REPLACED = "STREAM_REPLACED"
    # Not a caller's mistake: a bug, logged on the server with its traceback.
    INTERNAL = "INTERNAL"


@dataclass(frozen=True)
class Resource:
    """What a NOT_FOUND (or a refusal) is about: `kind` is the proto message name."""

    kind: str
    name: str


@dataclass(frozen=True)
class Precondition:
    """The condition a FAILED_PRECONDITION found false (AIP-193's PreconditionFailure)."""

    kind: str  # e.g. "BUILD_STATUS"
    subject: str  # e.g. the build id
    description: str


class DomainError(Exception):
    """An error with a public message: safe to show to the caller as it is."""

    code: ErrorCode = ErrorCode.FAILED_PRECONDITION
    default_reason: Reason = Reason.FAILED_PRECONDITION

    def __init__(
        self,
        message: str,
        *,
        reason: Reason | None = None,
        resource: Resource | None = None,
        precondition: Precondition | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason
        self.resource = resource
        self.precondition = precondition


class InvalidArgument(DomainError):
    code = ErrorCode.INVALID_ARGUMENT
    default_reason = Reason.INVALID_FIELD

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class NotFound(DomainError):
    code = ErrorCode.NOT_FOUND
    default_reason = Reason.NOT_FOUND


class FailedPrecondition(DomainError):
    code = ErrorCode.FAILED_PRECONDITION
    default_reason = Reason.FAILED_PRECONDITION


class ResourceExhausted(DomainError):
    code = ErrorCode.RESOURCE_EXHAUSTED
    default_reason = Reason.LIMIT_EXCEEDED


class PermissionDenied(DomainError):
    code = ErrorCode.PERMISSION_DENIED
    default_reason = Reason.PERMISSION_DENIED


class Unauthenticated(DomainError):
    """The caller's credential no longer holds (revoked, or its job finished)."""

    code = ErrorCode.UNAUTHENTICATED
    default_reason = Reason.UNAUTHENTICATED


class AlreadyExists(DomainError):
    code = ErrorCode.ALREADY_EXISTS


class Unavailable(DomainError):
    code = ErrorCode.UNAVAILABLE
    default_reason = Reason.UNAVAILABLE


class VersionConflict(DomainError):
    """A compare-and-set write found another version than expected: a lost race."""

    code = ErrorCode.CONFLICT
    default_reason = Reason.VERSION_CONFLICT


def build_not_found(build_id: str) -> NotFound:
    return NotFound(
        f"build {build_id} does not exist",
        reason=Reason.BUILD_NOT_FOUND,
        resource=Resource("buildcontrol.v1.Build", build_id),
    )


class StreamReplaced(DomainError):
    """An agent stream ended because a newer stream of the same agent took over."""

    code = ErrorCode.CONFLICT
    default_reason = Reason.STREAM_REPLACED


def agent_already_connected(agent_id: str) -> AlreadyExists:
    """A Hello from a second agent process under an id whose first process is live."""
    return AlreadyExists(
        f"agent {agent_id} is already connected from another process; run one agent"
        " process per agent id (or give this one another --agent-id)",
        reason=Reason.AGENT_ALREADY_CONNECTED,
    )


def build_already_finished(build_id: str, status: str) -> FailedPrecondition:
    """A cancel of a SUCCEEDED or FAILED build."""
    return FailedPrecondition(
        f"build {build_id} already {status}; only a running or queued build can be cancelled",
        reason=Reason.BUILD_ALREADY_FINISHED,
        precondition=Precondition(
            "BUILD_STATUS", build_id, f"the build is {status}, not QUEUED, RUNNING or CANCELING"
        ),
    )
