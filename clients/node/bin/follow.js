// Following a build (watch.js, submit.js --watch): its lines and its exit code.
import { EXIT, printer, short } from "./common.js";
import { StreamEndedEarly } from "../src/client.js";

const EXIT_BY_STATUS = {
  BUILD_STATUS_SUCCEEDED: EXIT.ok,
  BUILD_STATUS_FAILED: EXIT.failed,
  BUILD_STATUS_CANCELED: EXIT.canceled,
};

export function watchLine(event) {
  switch (event.event) {
    case "snapshot":
      return `snapshot ${event.snapshot.build_id} ${event.snapshot.pipeline} ${short(event.snapshot.status, "BUILD_STATUS_")}`;
    case "build_changed":
      return `build ${event.build_changed.build_id} ${short(event.build_changed.status, "BUILD_STATUS_")}`;
    case "job_changed": {
      const job = event.job_changed;
      const outcome = job.outcome === "JOB_OUTCOME_UNSPECIFIED" ? "" : ` outcome=${short(job.outcome, "JOB_OUTCOME_")}`;
      return `job ${job.job_id} ${short(job.status, "JOB_STATUS_")}${outcome}`;
    }
    case "step_changed": {
      const step = event.step_changed;
      const exit = step.exit_code === null || step.exit_code === undefined ? "" : ` exit=${step.exit_code}`;
      return `step ${step.job_id}[${step.step_index}] ${short(step.status, "STEP_STATUS_")}${exit}`;
    }
    default:
      return `unknown event ${event.event}`;
  }
}

/** Print every event of the build; resolve with the exit code of its ending. */
export async function follow(client, buildId, asJson) {
  const print = printer(asJson, watchLine, "buildcontrol.v1.WatchBuildResponse");
  let status;
  for await (const event of client.watch(buildId)) {
    print(event);
    if (event.event === "snapshot") status = event.snapshot.status;
    if (event.event === "build_changed") status = event.build_changed.status;
  }
  if (!(status in EXIT_BY_STATUS)) {
    throw new StreamEndedEarly("the watch ended before the build was terminal");
  }
  return EXIT_BY_STATUS[status];
}

