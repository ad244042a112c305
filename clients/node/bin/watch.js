#!/usr/bin/env node
// Follow a build to its end: npm run watch -- BUILD_ID [--json]
import { connect, EXIT, EXIT_CODES_HELP, parseCommandLine, run } from "./common.js";
import { follow } from "./follow.js";

const USAGE = `usage: node bin/watch.js BUILD_ID [--server HOST:PORT] [--token-file FILE] [--json]
example: node bin/watch.js b0193b5e1c2a4f0d9e8c7 --json
${EXIT_CODES_HELP}`;

const { values, positionals } = parseCommandLine(USAGE);
if (positionals.length !== 1) {
  process.stderr.write(USAGE);
  process.exit(EXIT.usage);
}
const client = connect(values);
await run(() => follow(client, positionals[0], values.json));
client.close();
