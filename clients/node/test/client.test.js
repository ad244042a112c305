// The Node.js client against a live server and agent (processes, real bash steps).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { BuildControlClient, BuildControlError, NotFound, pipelineRequest } from "../src/index.js";
import { LiveServer } from "../test-support/live-server.js";

const NO_SUCH_BUILD = "b00000000000000000000";

function oneJob(command, name = "node-test") {
  return pipelineRequest({
    pipeline: name,
    stages: [{ name: "s", jobs: [{ name: "j", steps: [command, { name: "after", command: "true" }] }] }],
  });
}

describe("BuildControlClient against a live server", () => {
  let server;
  let client;

  before(async () => {
    server = await LiveServer.start();
    server.startAgent();
    client = new BuildControlClient(server.target, { token: server.adminToken(), timeoutSeconds: 20 });
  });

  after(async () => {
    client?.close();
    await server?.stop();
  });

  test("submit queues a build and get returns it with its jobs and steps", async () => {
    const submitted = await client.submit(oneJob("true"));
    assert.match(submitted.build_id, /^b[0-9a-f]{20}$/);
    assert.equal(submitted.pipeline, "node-test");

    const build = await client.get(submitted.build_id);
    assert.equal(build.build_id, submitted.build_id);
    assert.deepEqual(
      build.stages[0].jobs[0].steps.map((step) => step.command),
      ["true", "true"],
    );
  });

  test("followJobLog streams what the step printed and ends with the job", async () => {
    const submitted = await client.submit(oneJob("for i in 1 2 3; do echo line $i; done"));
    const jobId = submitted.stages[0].jobs[0].job_id;
    const pieces = [];
    for await (const piece of client.followJobLog(submitted.build_id, jobId)) {
      pieces.push(piece.data);
    }
    const text = Buffer.concat(pieces).toString();
    assert.ok(text.includes("line 1\nline 2\nline 3\n"), text);
    const page = await client.getJobLog(submitted.build_id, jobId, { offset: 0 });
    assert.equal(page.data.toString(), text);
    assert.equal(page.complete, true);
    const tail = [];
    for await (const piece of client.followJobLog(submitted.build_id, jobId, { fromOffset: 5 })) {
      tail.push(piece.data);
    }
    assert.equal(Buffer.concat(tail).toString(), text.slice(5));
  });

  test("watch streams a snapshot first and ends once the build succeeded", async () => {
    // The step waits for a gate the test opens once the snapshot arrived: otherwise a
    // fast agent can finish the build before the watch starts (then the snapshot alone
    // would be terminal and there would be no changes to see).
    const gate = path.join(mkdtempSync(path.join(tmpdir(), "bc-gate-")), "open");
    const { build_id: buildId } = await client.submit(
      oneJob(`while [ ! -e ${gate} ]; do sleep 0.05; done; echo hello`),
    );

    const events = [];
    for await (const event of client.watch(buildId)) {
      events.push(event);
      if (event.event === "snapshot") writeFileSync(gate, "");
    }

    assert.equal(events[0].event, "snapshot");
    const last = events.at(-1);
    assert.equal(last.event, "build_changed");
    assert.equal(last.build_changed.status, "BUILD_STATUS_SUCCEEDED");
    const steps = events.filter((event) => event.event === "step_changed").map((event) => event.step_changed);
    assert.ok(steps.some((step) => step.status === "STEP_STATUS_SUCCEEDED" && step.exit_code === 0));
    assert.equal((await client.get(buildId)).status, "BUILD_STATUS_SUCCEEDED");
  });

  test("cancel streams accepted, each job stopping, then finished, in that order", async () => {
    const { build_id: buildId } = await client.submit(oneJob("sleep 600"));
    // Wait (by events, not time) until the step runs on the agent.
    // The snapshot may already show it running, if the agent was quicker than the watch.
    for await (const event of client.watch(buildId)) {
      if (event.event === "step_changed" && event.step_changed.status === "STEP_STATUS_RUNNING") break;
      if (event.event === "snapshot" && event.snapshot.stages[0].jobs[0].steps[0].status === "STEP_STATUS_RUNNING") break;
    }

    const events = [];
    for await (const event of client.cancel(buildId, { reason: "node test", graceSeconds: 5 })) {
      events.push(event);
    }

    assert.deepEqual(
      events.map((event) => event.event),
      ["accepted", "job_stopped", "finished"],
    );
    assert.equal(events[0].accepted.status, "BUILD_STATUS_CANCELING");
    assert.equal(events[0].accepted.cancel.reason, "node test");
    assert.equal(events[1].job_stopped.outcome, "JOB_OUTCOME_GRACEFUL");
    assert.equal(events[2].finished.status, "BUILD_STATUS_CANCELED");
    assert.equal(events[2].finished.jobs[0].status, "JOB_STATUS_CANCELED");
  });

  test("a cancel of a queued build that never ran ends at once with NEVER_STARTED", async () => {
    const request = oneJob("true");
    request.stages[0].jobs[0].labels = { nobody: "has-this" }; // no agent can take it
    const { build_id: buildId } = await client.submit(request);

    const finished = await client.cancelAndWait(buildId, { reason: "not needed" });

    assert.equal(finished.status, "BUILD_STATUS_CANCELED");
    assert.equal(finished.jobs[0].outcome, "JOB_OUTCOME_NEVER_STARTED");
  });

  test("cancelBuilds gives one build message per build, then the summary", async () => {
    const pipeline = `node-bulk-${process.pid}`;
    const ids = [];
    for (let n = 0; n < 3; n += 1) {
      const request = oneJob("true", pipeline);
      request.stages[0].jobs[0].labels = { nobody: "has-this" }; // stays queued
      ids.push((await client.submit(request)).build_id);
    }

    const events = [];
    for await (const event of client.cancelBuilds({ pipeline, reason: "bulk" })) events.push(event);

    assert.deepEqual(
      events.map((event) => event.event),
      ["accepted", "build", "build", "build", "summary"],
    );
    assert.deepEqual(events.slice(1, 4).map((event) => event.build.build_id), ids);
    assert.ok(events.slice(1, 4).every((event) => event.build.status === "BUILD_STATUS_CANCELED"));
    assert.equal(events[4].summary.canceled, 3);
  });

  test("an unknown build is a typed NotFound error with the gRPC status", async () => {
    await assert.rejects(client.get(NO_SUCH_BUILD), (error) => {
      assert.ok(error instanceof NotFound);
      assert.ok(error instanceof BuildControlError);
      assert.equal(error.code, 5);
      assert.equal(error.codeName, "NOT_FOUND");
      assert.equal(error.reason, "BUILD_NOT_FOUND");
      assert.equal(error.errorDetails.domain, "buildcontrol.v1");
      assert.deepEqual(error.errorDetails.resource, { type: "buildcontrol.v1.Build", name: NO_SUCH_BUILD });
      return true;
    });
    const invalid = oneJob("true");
    invalid.stages[0].jobs[0].steps = [];
    await assert.rejects(client.submit(invalid), (error) => {
      assert.equal(error.reason, "INVALID_FIELD");
      assert.equal(error.errorDetails.field_violations[0].field, "stages[0].jobs[0].steps");
      return true;
    });
    await assert.rejects(async () => {
      for await (const event of client.watch(NO_SUCH_BUILD)) assert.fail(`unexpected ${event.event}`);
    }, NotFound);
  });

  test("listAgents shows the connected agent", async () => {
    const agents = await client.listAgents();

    assert.ok(agents.some((agent) => agent.agent_id === "agent-1" && agent.connected));
  });
});
