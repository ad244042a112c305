"""google.rpc.Status details for an error (AIP-193): an ErrorInfo with its stable
reason always, a BadRequest.FieldViolation for invalid input, a PreconditionFailure
for an illegal transition, a ResourceInfo for what was not found."""

from __future__ import annotations

from google.protobuf import any_pb2, message
from google.rpc import error_details_pb2, status_pb2

from buildcontrol_server.domain.errors import DomainError, InvalidArgument, Reason

# ErrorInfo.domain: the service that owns the reasons.
ERROR_DOMAIN = "buildcontrol.v1"


def rich_status(
    code: int, text: str, reason: Reason, error: DomainError | None
) -> status_pb2.Status:
    """`code` is the gRPC status number, `text` the public message."""
    status = status_pb2.Status(code=code, message=text)
    details: list[message.Message] = [
        error_details_pb2.ErrorInfo(reason=reason.value, domain=ERROR_DOMAIN)
    ]
    if isinstance(error, InvalidArgument):
        violation = error_details_pb2.BadRequest.FieldViolation(
            field=error.field, description=error.problem
        )
        details.append(error_details_pb2.BadRequest(field_violations=[violation]))
    if error is not None and error.precondition is not None:
        failed = error.precondition
        violation_ = error_details_pb2.PreconditionFailure.Violation(
            type=failed.kind, subject=failed.subject, description=failed.description
        )
        details.append(error_details_pb2.PreconditionFailure(violations=[violation_]))
    if error is not None and error.resource is not None:
        details.append(
            error_details_pb2.ResourceInfo(
                resource_type=error.resource.kind,
                resource_name=error.resource.name,
                description=text,
            )
        )
    for detail in details:
        packed = any_pb2.Any()
        packed.Pack(detail)
        status.details.append(packed)
    return status
