// Node.js client of buildcontrol.v1.BuildControl, built at run time from the same .proto
// files as the server (protos/), with @grpc/proto-loader and @grpc/grpc-js.
//
//   const client = new BuildControlClient("127.0.0.1:50051", { token });
//   const build = await client.submit(pipelineRequest(doc));
//   for await (const event of client.watch(build.build_id)) { ... }
//   for await (const event of client.cancel(build.build_id, { reason: "x" })) { ... }
//   for await (const piece of client.followJobLog(build.build_id, jobId)) { ... }
//   client.close();
//
// Messages are plain objects with the .proto's field names (snake_case), enums as their
// names ("BUILD_STATUS_CANCELED"), 64-bit integers as strings, and every oneof named
// by a virtual field (`event.event === "accepted"`). Streams are async iterators;
// leaving a `for await` early cancels the call (a cancel itself goes on at the server).
import { fileURLToPath } from "node:url";
import path from "node:path";
import grpc from "@grpc/grpc-js";
import protoLoader from "@grpc/proto-loader";
import { errorFromStatus, StreamEndedEarly } from "./errors.js";
import { loadBalancingOptions } from "./load-balancing.js";

export * from "./errors.js";

/** protos/ of this repository: the one wire contract. */
export const PROTOS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../protos");

const LOADER_OPTIONS = {
  keepCase: true, // field names exactly as in the .proto files (and grpcurl's JSON)
  longs: String,
  enums: String,
  defaults: true, // every field present, as a script would expect
  oneofs: true,
  includeDirs: [PROTOS_DIR],
};

let cachedPackage;

/** The loaded `buildcontrol.v1` package (loaded once per process). */
export function loadProtos() {
  if (!cachedPackage) {
    const definition = protoLoader.loadSync(
      ["buildcontrol/v1/build_control.proto", "buildcontrol/v1/agent.proto"],
      LOADER_OPTIONS,
    );
    cachedPackage = grpc.loadPackageDefinition(definition).buildcontrol.v1;
  }
  return cachedPackage;
}

const DEFAULT_TIMEOUT_SECONDS = 30;

/** The largest message the server sends (the Python clients accept the same). */
export const MAX_RESPONSE_BYTES = 64 * 1024 * 1024;

export class BuildControlClient {
  /**
   * @param {string} target host:port, or several servers ("ipv4:h1:p1,h2:p2", "dns:///name:port")
   * @param {{token?: string, timeoutSeconds?: number, credentials?: grpc.ChannelCredentials}} options
   *   `token` is sent as `authorization: Bearer TOKEN`; `timeoutSeconds` bounds each
   *   unary call (streams run until they end).
   */
  constructor(target, { token, timeoutSeconds = DEFAULT_TIMEOUT_SECONDS, credentials } = {}) {
    const { BuildControl } = loadProtos();
    this.target = target;
    // A build at the server's limits is ~10 MiB as a message, more than gRPC's default
    // 4 MiB receive limit; the server sends at most MAX_RESPONSE_BYTES.
    this._stub = new BuildControl(target, credentials ?? grpc.credentials.createInsecure(), {
      "grpc.max_receive_message_length": MAX_RESPONSE_BYTES,
      // Several servers in `target`: round_robin, idempotent calls retried on UNAVAILABLE.
      ...loadBalancingOptions(),
    });
    this._timeoutSeconds = timeoutSeconds;
    this._metadata = new grpc.Metadata();
    if (token) {
      this._metadata.set("authorization", `Bearer ${token}`);
    }
  }

  close() {
    this._stub.close();
  }

  /**
   * Queue a build; `request` is a SubmitBuildRequest object (see pipelineRequest). Set
   * `request.request_id` (e.g. a UUID) to make a retry return the first build instead
   * of creating another.
   */
  async submit(request) {
    return (await this._unary("SubmitBuild", request)).build;
  }

  async get(buildId) {
    return (await this._unary("GetBuild", { build_id: buildId })).build;
  }

  /** One page of builds, newest first: {builds, next_page_token}. */
  async list({ pageSize = 0, pageToken = "", pipeline = "" } = {}) {
    return this._unary("ListBuilds", { page_size: pageSize, page_token: pageToken, pipeline });
  }

  async listAgents() {
    return (await this._unary("ListAgents", {})).agents;
  }

  /** A snapshot, then every change, until the build is terminal. */
  watch(buildId) {
    return this._stream("WatchBuild", { build_id: buildId });
  }

  /**
   * Up to `limit` bytes (0: the server's page, 1 MiB) of a job's log from `offset`:
   * {data: Buffer, offset, size, complete} (offset and size as strings).
   */
  async getJobLog(buildId, jobId, { offset = 0, limit = 0 } = {}) {
    return this._unary("GetJobLog", { build_id: buildId, job_id: jobId, offset, limit });
  }

  /**
   * A job's log from `fromOffset`: what is stored, then new output as it arrives, until
   * the job is terminal. Each message is {data: Buffer, offset}; bytes are as the step
   * printed them (`data.toString()` shows non-UTF-8 bytes as replacement characters).
   */
  followJobLog(buildId, jobId, { fromOffset = 0 } = {}) {
    return this._stream("FollowJobLog", { build_id: buildId, job_id: jobId, from_offset: fromOffset });
  }

  /** Accepted first, one message per job as it stops, finished last. */
  cancel(buildId, { reason = "", force = false, graceSeconds, requestedBy = "" } = {}) {
    const request = { build_id: buildId, reason, force, requested_by: requestedBy };
    if (graceSeconds !== undefined) {
      request.grace_period = duration(graceSeconds);
    }
    return this._stream("Cancel", request);
  }

  /** Cancel and resolve with the terminal CancelFinished message. */
  async cancelAndWait(buildId, options = {}) {
    for await (const event of this.cancel(buildId, options)) {
      if (event.event === "finished") {
        return event.finished;
      }
    }
    throw new StreamEndedEarly(`the Cancel stream of ${buildId} ended without CancelFinished`);
  }

  /**
   * Cancel many builds, chosen by exactly one of `buildIds`, `pipeline`,
   * `concurrencyGroup`: one `build` message per build as it ends, then `summary`.
   */
  cancelBuilds({ buildIds, pipeline, concurrencyGroup, reason = "", force = false, graceSeconds, requestedBy = "" }) {
    const chosen = [buildIds?.length > 0, Boolean(pipeline), Boolean(concurrencyGroup)];
    if (chosen.filter(Boolean).length !== 1) {
      throw new TypeError("give exactly one of buildIds, pipeline or concurrencyGroup");
    }
    // batch_builds: a mass cancel's ends come in a few messages; given back one each.
    const request = { reason, force, requested_by: requestedBy, batch_builds: true };
    if (buildIds?.length) request.ids = { build_ids: buildIds };
    else if (pipeline) request.pipeline = pipeline;
    else request.concurrency_group = concurrencyGroup;
    if (graceSeconds !== undefined) request.grace_period = duration(graceSeconds);
    return oneBuildEach(this._stream("CancelBuilds", request));
  }

  _unary(method, request) {
    const deadline = new Date(Date.now() + this._timeoutSeconds * 1000);
    return new Promise((resolve, reject) => {
      this._stub[method](request, this._metadata, { deadline }, (error, response) => {
        if (error) reject(errorFromStatus(error));
        else resolve(response);
      });
    });
  }

  async *_stream(method, request) {
    const call = this._stub[method](request, this._metadata);
    try {
      for await (const message of call) {
        yield message;
      }
    } catch (error) {
      throw errorFromStatus(error);
    } finally {
      call.cancel(); // a no-op once the stream ended; stops it when the caller left early
    }
  }
}

/**
 * CancelBuilds messages as an unbatched stream has them: a `builds` message becomes one
 * `build` message per build, in order (an older server sends `build` messages only).
 */
async function* oneBuildEach(messages) {
  for await (const message of messages) {
    if (message.event !== "builds") {
      yield message;
      continue;
    }
    for (const build of message.builds.builds) yield { event: "build", build };
  }
}

/** A google.protobuf.Duration object for a number of seconds. */
export function duration(seconds) {
  const whole = Math.trunc(seconds);
  return { seconds: String(whole), nanos: Math.round((seconds - whole) * 1e9) };
}
