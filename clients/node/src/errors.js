// Typed errors: every failed call becomes one of these, mapped from its gRPC status in
// one place (errorFromStatus), as the Python client does. Callers test
// `error instanceof NotFound` instead of comparing numbers; `code` (the numeric status),
// `codeName` and `details` stay available.
//
// `reason` is the stable reason from the server's google.rpc.ErrorInfo (BUILD_NOT_FOUND,
// ...: docs/errors.md) and `errorDetails` the rest of the details: field_violations,
// precondition_violations, resource, as the Python client exposes them.
import { status } from "@grpc/grpc-js";
import protobuf from "protobufjs";

export class BuildControlError extends Error {
  constructor(code, details, errorDetails = NO_DETAILS) {
    const codeName = nameOf(code);
    super(details ? `${codeName}: ${details}` : codeName);
    this.name = new.target.name;
    this.code = code;
    this.codeName = codeName;
    this.details = details ?? "";
    this.errorDetails = errorDetails;
    this.reason = errorDetails.reason;
  }
}

const NO_DETAILS = Object.freeze({
  reason: "", domain: "", metadata: {}, field_violations: [], precondition_violations: [], resource: null,
});

// The few google.rpc messages the server sends (google/rpc/status.proto and
// error_details.proto), declared here instead of shipping those .proto files.
const field = (type, id, rule) => (rule ? { type, id, rule } : { type, id });
const RPC = protobuf.Root.fromJSON({
  nested: {
    google: {
      nested: {
        protobuf: { nested: { Any: { fields: { type_url: field("string", 1), value: field("bytes", 2) } } } },
        rpc: {
          nested: {
            Status: {
              fields: { code: field("int32", 1), message: field("string", 2), details: field("google.protobuf.Any", 3, "repeated") },
            },
            ErrorInfo: {
              fields: { reason: field("string", 1), domain: field("string", 2), metadata: { keyType: "string", type: "string", id: 3 } },
            },
            BadRequest: {
              fields: { field_violations: field("FieldViolation", 1, "repeated") },
              nested: { FieldViolation: { fields: { field: field("string", 1), description: field("string", 2) } } },
            },
            PreconditionFailure: {
              fields: { violations: field("Violation", 1, "repeated") },
              nested: {
                Violation: { fields: { type: field("string", 1), subject: field("string", 2), description: field("string", 3) } },
              },
            },
            ResourceInfo: {
              fields: {
                resource_type: field("string", 1), resource_name: field("string", 2),
                owner: field("string", 3), description: field("string", 4),
              },
            },
          },
        },
      },
    },
  },
});
const TYPE_PREFIX = "type.googleapis.com/";

/** The details of a failed call's trailing `grpc-status-details-bin`, if any. */
export function errorDetailsOf(metadata) {
  const raw = metadata?.get?.("grpc-status-details-bin")?.[0];
  if (!raw) return NO_DETAILS;
  const found = { ...NO_DETAILS, field_violations: [], precondition_violations: [] };
  for (const any of RPC.lookupType("google.rpc.Status").decode(raw).details) {
    const name = any.type_url.slice(TYPE_PREFIX.length);
    const type = RPC.lookup(name);
    if (!type) continue;
    const detail = type.toObject(type.decode(any.value), { defaults: true });
    if (name === "google.rpc.ErrorInfo") Object.assign(found, { reason: detail.reason, domain: detail.domain, metadata: detail.metadata ?? {} });
    if (name === "google.rpc.BadRequest") found.field_violations.push(...detail.field_violations);
    if (name === "google.rpc.PreconditionFailure") found.precondition_violations.push(...detail.violations);
    if (name === "google.rpc.ResourceInfo") found.resource = { type: detail.resource_type, name: detail.resource_name };
  }
  return found;
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
  const typed = new ErrorType(error.code, error.details ?? error.message, errorDetailsOf(error.metadata));
  typed.cause = error;
  return typed;
}
