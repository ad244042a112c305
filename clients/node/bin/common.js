// What the three scripts share: options, the token, output, and exit codes (the same
// numbers as the Python CLI: docs/cli.md).
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { BuildControlClient, BuildControlError, StreamEndedEarly } from "../src/client.js";
import { toProto3Json } from "../src/proto-json.js";
import { PipelineFileError } from "../src/pipeline.js";
import { status } from "@grpc/grpc-js";

export const EXIT = { ok: 0, failed: 1, usage: 2, unavailable: 3, notFoundOrInvalid: 4, canceled: 5, denied: 6 };

const EXIT_BY_STATUS = new Map([
  [status.UNAVAILABLE, EXIT.unavailable],
  [status.DEADLINE_EXCEEDED, EXIT.unavailable],
  [status.NOT_FOUND, EXIT.notFoundOrInvalid],
  [status.INVALID_ARGUMENT, EXIT.notFoundOrInvalid],
  [status.FAILED_PRECONDITION, EXIT.notFoundOrInvalid],
  [status.UNAUTHENTICATED, EXIT.denied],
  [status.PERMISSION_DENIED, EXIT.denied],
]);

const COMMON = {
  server: { type: "string", default: process.env.BUILDCONTROL_ADDR || "127.0.0.1:50051" },
  "token-file": { type: "string" },
  json: { type: "boolean", default: false },
  help: { type: "boolean", short: "h", default: false },
};

/** Parse argv; print `usage` and exit 2 on a mistake, 0 on --help. */
export function parseCommandLine(usage, options = {}) {
  let parsed;
  try {
    parsed = parseArgs({ options: { ...COMMON, ...options }, allowPositionals: true });
  } catch (error) {
    process.stderr.write(`error: ${error.message}\n${usage}`);
    process.exit(EXIT.usage);
  }
  if (parsed.values.help) {
    process.stdout.write(usage);
    process.exit(EXIT.ok);
  }
  return parsed;
}

export function connect(values) {
  const token = values["token-file"]
    ? readFileSync(values["token-file"], "utf8").trim()
    : (process.env.BUILDCONTROL_TOKEN ?? "").trim();
  return new BuildControlClient(values.server, { token: token || undefined });
}

/** One event: a proto3 JSON object of `typeName` per line (the Python CLI's shape), or a
 * plain line from `plain(event)`. */
export function printer(asJson, plain, typeName) {
  return (event) =>
    process.stdout.write(`${asJson ? JSON.stringify(toProto3Json(typeName, event)) : plain(event)}\n`);
}

/** Run `main`; map its errors to a message on stderr and the exit code. */
export async function run(main) {
  try {
    process.exitCode = await main();
  } catch (error) {
    if (error instanceof StreamEndedEarly) {
      process.stderr.write(`error: UNAVAILABLE: ${error.details}\n`);
      process.exitCode = EXIT.unavailable;
    } else if (error instanceof BuildControlError) {
      process.stderr.write(`error: ${error.message}\n`);
      process.exitCode = EXIT_BY_STATUS.get(error.code) ?? EXIT.failed;
    } else if (error?.code === "ENOENT") {
      process.stderr.write(`error: NOT_FOUND: ${error.message}\n`);
      process.exitCode = EXIT.notFoundOrInvalid;
    } else if (error instanceof TypeError || error instanceof PipelineFileError) {
      process.stderr.write(`error: INVALID_ARGUMENT: ${error.message}\n`);
      process.exitCode = EXIT.notFoundOrInvalid;
    } else {
      throw error;
    }
  }
}

export const short = (value, prefix) => String(value).replace(prefix, "");

export const EXIT_CODES_HELP = `exit codes: 0 ok, 1 build FAILED, 2 usage, 3 unavailable,
  4 not found or invalid, 5 build CANCELED, 6 no valid token or not allowed
`;
