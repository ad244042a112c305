// The README's code snippet runs as written against a live server and agent (only the
// address and the paths are pointed at the test's own).
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { LiveServer } from "../test-support/live-server.js";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const PACKAGE = path.resolve(HERE, "..");

test("the README snippet submits, follows, cancels and reads a typed error", async () => {
  const readme = readFileSync(path.join(PACKAGE, "README.md"), "utf8");
  const snippet = /```js\n([\s\S]*?)```/.exec(readme)[1];
  const server = await LiveServer.start();
  server.startAgent();
  try {
    const code = snippet
      .replace('"127.0.0.1:50051"', JSON.stringify(server.target))
      .replace("process.env.BUILDCONTROL_TOKEN", JSON.stringify(server.adminToken() ?? ""))
      .replace('"./src/index.js"', JSON.stringify(pathToFileURL(path.join(PACKAGE, "src/index.js")).href))
      .replace('"../../examples/', JSON.stringify(path.resolve(PACKAGE, "../../examples")).slice(0, -1) + "/")
      .replaceAll("console.log(", "globalThis.readmeOutput.push(");
    globalThis.readmeOutput = [];
    const file = path.join(mkdtempSync(path.join(tmpdir(), "readme-")), "snippet.mjs");
    writeFileSync(file, code);
    await import(pathToFileURL(file).href);
    assert.deepEqual(globalThis.readmeOutput.at(-1), "BUILD_NOT_FOUND");
    assert.deepEqual(globalThis.readmeOutput.slice(0, 1), ["accepted"]);
    assert.equal(globalThis.readmeOutput.at(-2), "finished");
  } finally {
    await server.stop();
  }
});
