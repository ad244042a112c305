// Typed errors: every failed call becomes one of these, mapped from its gRPC status in
// one place (errorFromStatus), as the Python client does. Callers test
// `error instanceof NotFound` instead of comparing numbers; `code` (the numeric status),
// `codeName` and `details` stay available.
import { status } from "@grpc/grpc-js";

export class BuildControlError extends Error {
  constructor(code, details) {
    const codeName = nameOf(code);
    super(details ? `${codeName}: ${details}` : codeName);
    this.name = new.target.name;
    this.code = code;
    this.codeName = codeName;
    this.details = details ?? "";
  }
}

/** The request was malformed; `details` names the field. */
export class InvalidArgument extends BuildControlError {}
/** No such build (or job). */
export class NotFound extends BuildControlError {}
/** The build's state does not allow the call (e.g. cancel of a SUCCEEDED build). */
export class FailedPrecondition extends BuildControlError {}
/** The server cannot be reached or is shutting down; retrying later may work. */
export class Unavailable extends BuildControlError {}
/** The caller is known but not allowed to do this. */
export class PermissionDenied extends BuildControlError {}
/** No valid token was sent. */
export class Unauthenticated extends BuildControlError {}
/** A limit was hit. */
export class ResourceExhausted extends BuildControlError {}
/** The call's deadline passed first. */
export class DeadlineExceeded extends BuildControlError {}
/** A stream ended cleanly without its promised last message. */
export class StreamEndedEarly extends BuildControlError {
  constructor(details) {
    super(status.UNKNOWN, details);
  }
}

const ERROR_BY_CODE = new Map([
  [status.INVALID_ARGUMENT, InvalidArgument],
  [status.NOT_FOUND, NotFound],
  [status.FAILED_PRECONDITION, FailedPrecondition],
  [status.UNAVAILABLE, Unavailable],
  [status.PERMISSION_DENIED, PermissionDenied],
  [status.UNAUTHENTICATED, Unauthenticated],
  [status.RESOURCE_EXHAUSTED, ResourceExhausted],
  [status.DEADLINE_EXCEEDED, DeadlineExceeded],
]);

function nameOf(code) {
  return Object.keys(status).find((name) => status[name] === code) ?? `CODE_${code}`;
}

/** The typed error for a grpc-js ServiceError (anything else is returned as is). */
export function errorFromStatus(error) {
  if (error instanceof BuildControlError || typeof error?.code !== "number") {
    return error;
  }
  const ErrorType = ERROR_BY_CODE.get(error.code) ?? BuildControlError;
  const typed = new ErrorType(error.code, error.details ?? error.message);
  typed.cause = error;
  return typed;
}
