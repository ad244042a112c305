#!/usr/bin/env node
// Cancel a build and print each event of the Cancel stream:
//   npm run cancel -- BUILD_ID [--reason TEXT] [--grace DURATION] [--force] [--json]
import os from "node:os";
import { connect, EXIT, EXIT_CODES_HELP, parseCommandLine, printer, run, short } from "./common.js";
import { StreamEndedEarly } from "../src/client.js";
import { seconds } from "../src/pipeline.js";

const USAGE = `usage: node bin/cancel.js BUILD_ID [--reason TEXT] [--grace DURATION] [--force]
                          [--server HOST:PORT] [--token-file FILE] [--json]
example: node bin/cancel.js b0193b5e1c2a4f0d9e8c7 --reason "wrong branch" --grace 5
${EXIT_CODES_HELP}`;

const jobResult = (job) =>
  `${job.job_id} ${short(job.status, "JOB_STATUS_")}` +
  (job.outcome === "JOB_OUTCOME_UNSPECIFIED" ? "" : ` outcome=${short(job.outcome, "JOB_OUTCOME_")}`);

function cancelLine(event) {
  switch (event.event) {
    case "accepted":
      return `accepted ${event.accepted.build_id} ${short(event.accepted.status, "BUILD_STATUS_")} jobs_stopping=${event.accepted.jobs_stopping}`;
    case "job_stopped":
      return `job-stopped ${jobResult(event.job_stopped)}`;
    case "finished":
      return `finished ${event.finished.build_id} ${short(event.finished.status, "BUILD_STATUS_")} ${event.finished.jobs.map((job) => `[${jobResult(job)}]`).join(" ")}`.trimEnd();
    default:
      return `unknown event ${event.event}`;
  }
}

const { values, positionals } = parseCommandLine(USAGE, {
  reason: { type: "string", default: "" },
  grace: { type: "string" },
  force: { type: "boolean", default: false },
  "requested-by": { type: "string", default: `${os.userInfo().username}@${os.hostname()}` },
});
let grace;
try {
  grace = values.grace === undefined ? undefined : seconds(values.grace, "--grace"); // 5, 5s, 2m
} catch (error) {
  process.stderr.write(`error: ${error.message}\n`);
  process.exit(EXIT.usage);
}
if (positionals.length !== 1 || (grace !== undefined && !(grace >= 0))) {
  process.stderr.write(USAGE);
  process.exit(EXIT.usage);
}
const client = connect(values);
await run(async () => {
  const print = printer(values.json, cancelLine, "buildcontrol.v1.CancelResponse");
  const options = { reason: values.reason, force: values.force, graceSeconds: grace, requestedBy: values["requested-by"] };
  for await (const event of client.cancel(positionals[0], options)) {
    print(event);
    if (event.event === "finished") return EXIT.ok;
  }
  throw new StreamEndedEarly("the server ended the Cancel stream before the build was terminal");
});
client.close();
