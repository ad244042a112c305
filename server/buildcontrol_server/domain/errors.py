"""The error catalog: every failure a caller can cause, with a code. rpc/errors.py maps
codes to gRPC statuses; nothing here knows about gRPC."""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    UNAVAILABLE = "UNAVAILABLE"
    CONFLICT = "CONFLICT"
    ALREADY_EXISTS = "ALREADY_EXISTS"


class DomainError(Exception):
    """An error with a public message: safe to show to the caller as it is."""

    code: ErrorCode = ErrorCode.FAILED_PRECONDITION

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(DomainError):
    code = ErrorCode.INVALID_ARGUMENT

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


class NotFound(DomainError):
    code = ErrorCode.NOT_FOUND


class FailedPrecondition(DomainError):
    code = ErrorCode.FAILED_PRECONDITION


class ResourceExhausted(DomainError):
    code = ErrorCode.RESOURCE_EXHAUSTED


class PermissionDenied(DomainError):
    code = ErrorCode.PERMISSION_DENIED


class AlreadyExists(DomainError):
    code = ErrorCode.ALREADY_EXISTS


class Unavailable(DomainError):
    code = ErrorCode.UNAVAILABLE


class VersionConflict(DomainError):
    """A compare-and-set write found another version than expected: a lost race."""

    code = ErrorCode.CONFLICT
