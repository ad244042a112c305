// Pipeline files (YAML or JSON, the format of the Python CLI: see
// clients/python/buildcontrol_client/README.md) turned into a SubmitBuildRequest object.
//
// Scalars are kept as written, exactly as the Python client reads them: the file is parsed
// into YAML nodes and every value is read as its source text, typed by the key it belongs
// to, never by YAML 1.1's guesses (`OCT: 0755` stays "0755", `V: 1.10` stays "1.10").
// Flags are true/false only, timeouts seconds or a duration ("90", "10m", "1h30m"),
// duplicate keys are refused. tests/pipelines/ holds the cases both clients must agree on.
// The server validates every field again and names the one that is wrong.
import { readFileSync } from "node:fs";
import YAML from "yaml";
import { duration } from "./client.js";

const NULLS = new Set(["", "~", "null", "Null", "NULL"]);
const TRUE = new Set(["true", "True", "TRUE"]);
const FALSE = new Set(["false", "False", "FALSE"]);
const DURATION_UNITS = { h: 3600, m: 60, s: 1, ms: 0.001 };

export class PipelineFileError extends Error {}

export function loadPipelineFile(file) {
  const document = YAML.parseDocument(readFileSync(file, "utf8"), { uniqueKeys: true, merge: false });
  if (document.errors.length > 0) {
    throw new PipelineFileError(`${file}: ${document.errors[0].message.split("\n")[0]}`);
  }
  return pipelineRequest(asWritten(document, document.contents));
}

/** Plain objects, arrays and each scalar's source text (null for a plain null). */
function asWritten(document, node) {
  if (node === null || node === undefined) return null;
  if (YAML.isAlias(node)) return asWritten(document, node.resolve(document));
  if (YAML.isScalar(node)) {
    const text = node.source ?? String(node.value);
    return node.type === "PLAIN" && NULLS.has(text) ? null : text;
  }
  if (YAML.isSeq(node)) return node.items.map((item) => asWritten(document, item));
  if (YAML.isMap(node)) {
    const result = {};
    for (const pair of node.items) {
      const key = asWritten(document, pair.key);
      if (Object.hasOwn(result, key)) throw new PipelineFileError(`${key}: duplicate key`);
      result[key] = asWritten(document, pair.value);
    }
    return result;
  }
  throw new PipelineFileError(`unsupported YAML node ${node.constructor.name}`);
}

/** A request from a pipeline document: parsed text (strings) or a JS object. */
export function pipelineRequest(document) {
  if (document === null || typeof document !== "object" || Array.isArray(document)) {
    throw new TypeError("a pipeline must be a mapping");
  }
  return {
    pipeline: document.pipeline,
    concurrency_group: document.concurrency_group ?? "",
    cancel_in_progress: flag(document.cancel_in_progress, "cancel_in_progress"),
    stages: (document.stages ?? []).map((stage, s) => ({
      name: stage.name,
      jobs: (stage.jobs ?? []).map((job, j) => jobSpec(job, `stages[${s}].jobs[${j}]`)),
    })),
  };
}

function jobSpec(job, where) {
  const spec = {
    name: job.name,
    labels: textValues(job.labels),
    env: textValues(job.env),
    secret_env: textValues(job.secret_env),
    run_on_cancel: flag(job.run_on_cancel, `${where}.run_on_cancel`),
    steps: (job.steps ?? []).map((step, k) =>
      typeof step === "string"
        ? { command: step }
        : {
            name: step.name ?? "",
            command: step.command,
            run_on_cancel: flag(step.run_on_cancel, `${where}.steps[${k}].run_on_cancel`),
          },
    ),
  };
  if (job.timeout !== undefined && job.timeout !== null) {
    spec.timeout = duration(seconds(job.timeout, `${where}.timeout`));
  }
  return spec;
}

// "yes"/"on" are refused: YAML 1.1 and 1.2 disagree, and a cleanup silently off is worse.
function flag(value, where) {
  if (value === undefined || value === null) return false;
  if (typeof value === "boolean") return value;
  if (TRUE.has(value)) return true;
  if (FALSE.has(value)) return false;
  throw new PipelineFileError(`${where}: must be true or false, not ${JSON.stringify(value)}`);
}

/** Seconds from 90, "90", "2.5", "10m", "1h30m" or "250ms". */
export function seconds(value, where = "duration") {
  if (typeof value === "number") return value;
  const text = String(value).trim();
  if (/^(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$/.test(text)) return Number(text);
  const parts = [...text.matchAll(/(\d+(?:\.\d*)?|\.\d+)(ms|h|m|s)/g)];
  if (parts.length > 0 && parts.map((part) => part[0]).join("") === text) {
    return parts.reduce((total, part) => total + Number(part[1]) * DURATION_UNITS[part[2]], 0);
  }
  throw new PipelineFileError(`${where}: must be a number of seconds or a duration like 10m, not ${JSON.stringify(value)}`);
}

// A JS object's `debug: true` and `jobs: 4` are a boolean and a number; CI users mean text.
function textValues(map) {
  return Object.fromEntries(Object.entries(map ?? {}).map(([key, value]) => [key, String(value)]));
}
