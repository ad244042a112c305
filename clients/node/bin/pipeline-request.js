#!/usr/bin/env node
// Print the SubmitBuildRequest a pipeline file gives, protobuf-encoded in base64 (so
// another client can compare it field by field): node bin/pipeline-request.js FILE
// Exit 4 (with the error on stderr) when the file is refused.
import path from "node:path";
import protobuf from "protobufjs";
import { PROTOS_DIR } from "../src/client.js";
import { loadPipelineFile } from "../src/pipeline.js";

const root = new protobuf.Root();
root.resolvePath = (_origin, target) =>
  target.startsWith("google/protobuf/") ? target : path.join(PROTOS_DIR, target);
root.loadSync("buildcontrol/v1/build_control.proto", { keepCase: true });
const SubmitBuildRequest = root.lookupType("buildcontrol.v1.SubmitBuildRequest");

let request;
try {
  request = loadPipelineFile(process.argv[2]);
} catch (error) {
  process.stderr.write(`error: INVALID_ARGUMENT: ${error.message}\n`);
  process.exit(4);
}
const bytes = SubmitBuildRequest.encode(SubmitBuildRequest.fromObject(request)).finish();
process.stdout.write(`${Buffer.from(bytes).toString("base64")}\n`);
