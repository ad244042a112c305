// A real buildcontrol server and agent as processes, started the way a user starts them:
// `buildcontrol serve --data-dir TMP --listen 127.0.0.1:0 --metrics-port 0`, ready when it
// prints its one line on stdout; stopped with SIGTERM.
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { once } from "node:events";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
const BUILDCONTROL = process.env.BUILDCONTROL_BIN ?? path.join(REPO, ".venv/bin/buildcontrol");
const READY = /serving gRPC on (\S+):(\d+),/;
const START_SECONDS = 30;

export class LiveServer {
  static async start() {
    const dataDir = mkdtempSync(path.join(tmpdir(), "buildcontrol-node-"));
    const server = spawn(
      BUILDCONTROL,
      ["serve", "--data-dir", dataDir, "--listen", "127.0.0.1:0", "--metrics-port", "0"],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    const stderr = [];
    server.stderr.on("data", (chunk) => stderr.push(chunk));
    const line = await firstLine(server, stderr);
    const match = READY.exec(line);
    if (!match) {
      server.kill("SIGKILL");
      throw new Error(`the server did not start: ${line}\n${Buffer.concat(stderr)}`);
    }
    return new LiveServer(server, `${match[1]}:${match[2]}`, dataDir);
  }

  constructor(process, target, dataDir) {
    this.process = process;
    this.target = target;
    this.dataDir = dataDir;
    this.agents = [];
  }

  /** The admin token the server made on its first start (undefined with auth off). */
  adminToken() {
    return this._token("admin.token");
  }

  /** Start the reference agent; with auth on it uses the bootstrap agent token. */
  startAgent() {
    const tokenFile = path.join(this.dataDir, "agent.token");
    const args = ["agent", "--server", this.target, "--agent-id", "agent-1", "--reconnect-max", "0.5"];
    if (existsSync(tokenFile)) args.push("--token-file", tokenFile);
    const agent = spawn(BUILDCONTROL, args, { stdio: ["ignore", "ignore", "ignore"] });
    this.agents.push(agent);
    return agent;
  }

  async stop() {
    for (const child of [...this.agents, this.process]) {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = once(child, "exit");
        child.kill("SIGTERM");
        await exited;
      }
    }
    rmSync(this.dataDir, { recursive: true, force: true });
  }

  _token(name) {
    const file = path.join(this.dataDir, name);
    return existsSync(file) ? readFileSync(file, "utf8").trim() : undefined;
  }
}

async function firstLine(child, stderr) {
  const lines = createInterface({ input: child.stdout });
  const timer = setTimeout(() => child.kill("SIGKILL"), START_SECONDS * 1000);
  try {
    const [line] = await Promise.race([
      once(lines, "line"),
      once(child, "exit").then(([code]) => {
        throw new Error(`the server exited with ${code}: ${Buffer.concat(stderr)}`);
      }),
    ]);
    return line;
  } finally {
    clearTimeout(timer);
    lines.close(); // the rest of stdout is not read; the server writes nothing more there
  }
}
