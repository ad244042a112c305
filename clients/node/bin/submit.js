#!/usr/bin/env node
// Submit a pipeline file: npm run submit -- FILE [--watch] [--json]
import { connect, EXIT, EXIT_CODES_HELP, parseCommandLine, run, short } from "./common.js";
import { loadPipelineFile } from "../src/pipeline.js";
import { toProto3Json } from "../src/proto-json.js";
import { follow } from "./follow.js";

const USAGE = `usage: node bin/submit.js FILE [--watch] [--server HOST:PORT] [--token-file FILE] [--json]
example: node bin/submit.js ../../examples/hello.yaml --watch
${EXIT_CODES_HELP}`;

const { values, positionals } = parseCommandLine(USAGE, { watch: { type: "boolean", default: false } });
if (positionals.length !== 1) {
  process.stderr.write(USAGE);
  process.exit(EXIT.usage);
}
const client = connect(values);
await run(async () => {
  const build = await client.submit(loadPipelineFile(positionals[0]));
  process.stdout.write(
    values.json
      ? `${JSON.stringify(toProto3Json("buildcontrol.v1.Build", build))}\n`
      : process.stdout.isTTY
        ? `${build.build_id} ${short(build.status, "BUILD_STATUS_")}\n`
        : `${build.build_id}\n`, // piped: B=$(node bin/submit.js f.yaml) is the id
  );
  return values.watch ? follow(client, build.build_id, values.json) : EXIT.ok;
});
client.close();
