// Pipeline files (YAML or JSON, the format of the Python CLI: see
// clients/python/buildcontrol_client/README.md) turned into a SubmitBuildRequest object.
// The server validates every field again and names the one that is wrong; this only
// reshapes the document (bare command strings, timeouts in seconds).
import { readFileSync } from "node:fs";
import YAML from "yaml";
import { duration } from "./client.js";

export function loadPipelineFile(file) {
  return pipelineRequest(YAML.parse(readFileSync(file, "utf8")));
}

export function pipelineRequest(document) {
  if (document === null || typeof document !== "object" || Array.isArray(document)) {
    throw new TypeError("a pipeline must be a mapping");
  }
  return {
    pipeline: document.pipeline,
    concurrency_group: document.concurrency_group ?? "",
    cancel_in_progress: Boolean(document.cancel_in_progress),
    stages: (document.stages ?? []).map((stage) => ({
      name: stage.name,
      jobs: (stage.jobs ?? []).map((job) => {
        const spec = {
          name: job.name,
          labels: textValues(job.labels),
          env: textValues(job.env),
          run_on_cancel: Boolean(job.run_on_cancel),
          steps: (job.steps ?? []).map((step) =>
            typeof step === "string"
              ? { command: step }
              : { name: step.name ?? "", command: step.command, run_on_cancel: Boolean(step.run_on_cancel) },
          ),
        };
        if (job.timeout !== undefined) spec.timeout = duration(job.timeout);
        return spec;
      }),
    })),
  };
}

// YAML reads `debug: true` and `jobs: 4` as a boolean and a number; CI users mean text.
function textValues(map) {
  return Object.fromEntries(Object.entries(map ?? {}).map(([key, value]) => [key, String(value)]));
}
