// Messages as proto3 JSON (the canonical mapping: lowerCamelCase names, enums by name,
// 64-bit integers as strings, Timestamp and Duration as strings, bytes as base64), with
// the Python CLI's choice of printing fields without presence at their default values:
// the two CLIs' `--json` lines are the same objects (tests/unit/test_json_parity.py).
import path from "node:path";
import protobuf from "protobufjs";
import { PROTOS_DIR } from "./client.js";

let root;

function types() {
  if (!root) {
    root = new protobuf.Root();
    root.resolvePath = (_origin, target) =>
      target.startsWith("google/protobuf/") ? target : path.join(PROTOS_DIR, target);
    root.loadSync(["buildcontrol/v1/build_control.proto", "buildcontrol/v1/agent.proto"], { keepCase: true });
    root.resolveAll();
  }
  return root;
}

/** `message` (a plain object as the client returns it) of type `typeName` as proto3 JSON. */
export function toProto3Json(typeName, message) {
  return messageJson(types().lookupType(typeName), message);
}

function messageJson(type, value) {
  if (type.fullName === ".google.protobuf.Timestamp") return timestampJson(value);
  if (type.fullName === ".google.protobuf.Duration") return durationJson(value);
  const result = {};
  for (const field of type.fieldsArray) {
    const fieldValue = value?.[field.name];
    const hasPresence = Boolean(field.partOf) || field.resolvedType instanceof protobuf.Type;
    if (hasPresence && (fieldValue === null || fieldValue === undefined) && !field.repeated && !field.map) continue;
    result[jsonName(field.name)] = fieldJson(field, fieldValue);
  }
  return result;
}

function fieldJson(field, value) {
  if (field.map) {
    return Object.fromEntries(Object.entries(value ?? {}).map(([key, item]) => [key, singleJson(field, item)]));
  }
  if (field.repeated) return (value ?? []).map((item) => singleJson(field, item));
  return singleJson(field, value);
}

function singleJson(field, value) {
  const type = field.resolvedType;
  if (type instanceof protobuf.Type) return messageJson(type, value);
  if (type instanceof protobuf.Enum) {
    if (typeof value === "number") return type.valuesById[value] ?? value;
    return value ?? type.valuesById[0];
  }
  switch (field.type) {
    case "int64": case "uint64": case "sint64": case "fixed64": case "sfixed64":
      return String(value ?? "0");
    case "bytes":
      return Buffer.from(value ?? []).toString("base64");
    case "bool":
      return Boolean(value);
    case "string":
      return value ?? "";
    default:
      return Number(value ?? 0);
  }
}

// protoc's JSON name: each "_x" becomes "X".
function jsonName(name) {
  return name.replace(/_([a-z0-9])/g, (_match, letter) => letter.toUpperCase());
}

function fraction(nanos) {
  if (!nanos) return "";
  const digits = String(nanos).padStart(9, "0");
  if (nanos % 1e6 === 0) return `.${digits.slice(0, 3)}`;
  if (nanos % 1e3 === 0) return `.${digits.slice(0, 6)}`;
  return `.${digits}`;
}

function timestampJson(value) {
  const seconds = Number(value?.seconds ?? 0);
  const nanos = Number(value?.nanos ?? 0);
  const iso = new Date(seconds * 1000).toISOString().replace(/\.\d{3}Z$/, "");
  return `${iso}${fraction(nanos)}Z`;
}

function durationJson(value) {
  const seconds = Number(value?.seconds ?? 0);
  const nanos = Number(value?.nanos ?? 0);
  const sign = seconds < 0 || nanos < 0 ? "-" : "";
  return `${sign}${Math.abs(seconds)}${fraction(Math.abs(nanos))}s`;
}
