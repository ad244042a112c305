"""Scenario logflood: step logs must never be in the way of a stop.

One real `buildcontrol agent` process runs 200 idle jobs (`sleep`) and a ticker job
that prints the wall clock every 100 ms. The idle jobs are cancelled one after
another (grace 0), half before and half while 50 more jobs flood output as fast as
they can (`yes`), in the same run:

- Cancel sent → StopJob received by the agent (the agent's `stop timing` log line;
  time.monotonic() is one clock for every process of the machine): p50 / p99 without
  and with the flood, and their ratio (target: within 1.5x);
- server and agent RSS sampled every second for 60 s of flood (target: flat, ±10 %
  of the first sample after a 5 s warm-up);
- log bytes the server took in (buildcontrol_log_received_bytes_total) per second;
- a line printed by the ticker → seen by a FollowJobLog follower here: p50 without
  and with the flood (target: p50 <= 50 ms).

Run: flock /tmp/bench.lock .venv/bin/python bench/log_flood.py   (--quick: smaller)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from agent_stop import TIMING
from buildcontrol_proto.v1 import build_control_pb2, build_control_pb2_grpc, build_pb2
from google.protobuf.duration_pb2 import Duration
from server_process import ServerProcess, _proc_status_kib, cpu_seconds_of, start_server
from stats import machine, summary_ms, write_json

Stub = build_control_pb2_grpc.BuildControlStub
TICKER = "while true; do date +%s.%N; sleep 0.1; done"
RECEIVED = "buildcontrol_log_received_bytes_total"
HANDLED = "buildcontrol_grpc_server_handled_total"
UPLOADS = {"grpc_method": "UploadLogs", "grpc_code": "OK"}


def one_job(name: str, command: str) -> build_control_pb2.SubmitBuildRequest:
    job = build_control_pb2.JobSpec(
        name=name, labels={"bench": "flood"}, steps=[build_control_pb2.StepSpec(command=command)]
    )
    return build_control_pb2.SubmitBuildRequest(
        pipeline=f"bench-{name}", stages=[build_control_pb2.StageSpec(name="s", jobs=[job])]
    )


async def running(stub: Stub, name: str, command: str) -> tuple[str, str]:
    """Submit one job and return (build id, job id) once it runs (setup, not measured)."""
    build = (await stub.SubmitBuild(one_job(name, command))).build
    request = build_control_pb2.WatchBuildRequest(build_id=build.build_id)
    async for event in stub.WatchBuild(request, timeout=120):
        kind = event.WhichOneof("event")
        if kind == "job_changed" and event.job_changed.status == build_pb2.JOB_STATUS_RUNNING:
            break
        if kind == "snapshot" and event.snapshot.stages[0].jobs[0].status == (
            build_pb2.JOB_STATUS_RUNNING
        ):
            break
    return build.build_id, build.stages[0].jobs[0].job_id


async def start_agent(target: str, work: Path, capacity: int) -> asyncio.subprocess.Process:
    log = (work / "agent.log").open("ab")
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "buildcontrol_cli", "agent", "--server", target,
        "--agent-id", "bench-flood", "--labels", "bench=flood", "--capacity", str(capacity),
        "--work-dir", str(work / "jobs"), "--reconnect-max", "0.5",
        stdout=asyncio.subprocess.DEVNULL, stderr=log,
    )  # fmt: skip


async def cancel_one_by_one(stub: Stub, jobs: list[tuple[str, str]]) -> dict[str, float]:
    """Cancel each build in turn (grace 0) to its terminal message; job id → sent at."""
    sent: dict[str, float] = {}
    for build_id, job_id in jobs:
        request = build_control_pb2.CancelRequest(
            build_id=build_id, reason="bench", grace_period=Duration(seconds=0)
        )
        sent[job_id] = time.monotonic()
        async for _ in stub.Cancel(request, timeout=60):
            pass
    return sent


def stop_latencies(log: Path, sent: dict[str, float]) -> list[float]:
    received = {m.group(1): float(m.group(2)) for m in TIMING.finditer(log.read_text())}
    return [received[job] - at for job, at in sent.items() if job in received]


class Follower:
    """Follows the ticker's log; each line is a wall-clock time: now - it = latency."""

    def __init__(self, stub: Stub, build_id: str, job_id: str) -> None:
        request = build_control_pb2.FollowJobLogRequest(build_id=build_id, job_id=job_id)
        self._call = stub.FollowJobLog(request)
        self.latencies: list[float] = []
        self._partial = b""
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        with contextlib.suppress(grpc.aio.AioRpcError, asyncio.CancelledError):
            async for piece in self._call:
                now = time.time()
                lines = (self._partial + piece.data).split(b"\n")
                self._partial = lines.pop()
                for line in lines:
                    if re.fullmatch(rb"\d+\.\d+", line):
                        self.latencies.append(now - float(line))

    def take(self) -> list[float]:
        taken, self.latencies = self.latencies, []
        return taken

    def close(self) -> None:
        self._call.cancel()
        self._task.cancel()


@dataclass(frozen=True)
class Counters:
    """What the flood window is measured by, read at its start and at its end."""

    at: float
    received_bytes: float  # log bytes the server took in
    upload_streams: float  # UploadLogs calls the server finished
    server_cpu_s: float
    agent_cpu_s: float

    @classmethod
    def read(cls, server: ServerProcess, agent_pid: int) -> Counters:
        """Blocking (two /metrics scrapes): call it in a thread, never on the loop that
        sends the Cancels."""
        return cls(
            time.monotonic(),
            server.metric(RECEIVED),
            server.metric(HANDLED, UPLOADS),
            server.cpu_seconds(),
            cpu_seconds_of(agent_pid),
        )


def flat(values: list[int]) -> dict[str, Any]:
    """The RSS samples against the one after a 5 s warm-up."""
    base = values[min(5, len(values) - 1)]
    return {
        "first_mib": values[0] / 2**20,
        "after_warmup_mib": base / 2**20,
        "max_mib": max(values) / 2**20,
        "last_mib": values[-1] / 2**20,
        "max_change_after_warmup_pct": max(abs(v - base) for v in values[5:]) / base * 100,
        # Judged: growth, what a flood held in memory would show. A drop is shown
        # apart: the 100 jobs cancelled in the window give their memory back.
        "max_rise_after_warmup_pct": max(0, max(values[5:]) - base) / base * 100,
        "max_drop_after_warmup_pct": max(0, base - min(values[5:])) / base * 100,
        "samples_mib": [round(v / 2**20, 2) for v in values],
    }


async def sample_rss(
    server: ServerProcess, agent_pid: int, seconds: float, start: Counters
) -> dict[str, Any]:
    """RSS of the server and the agent once a second for `seconds`. Only /proc is read
    here, on the loop that also sends the Cancels (microseconds); the server's /metrics
    is scraped before the window (by the caller) and after it, in a thread: a blocking
    scrape on this loop held up the Cancel sent in that moment by 50-500 ms, a stall of
    the benchmark's own that only the flood half had."""
    samples: list[tuple[int, int]] = []
    # The agent's RSS in its parts: a change of anonymous memory is the agent's own, a
    # change of file-backed pages is the kernel's page cache of its mapped files.
    parts: dict[str, list[float]] = {"anon_mib": [], "file_mib": []}
    while time.monotonic() - start.at < seconds:
        samples.append((server.rss_bytes(), _proc_status_kib(agent_pid, "VmRSS") * 1024))
        parts["anon_mib"].append(_proc_status_kib(agent_pid, "RssAnon") / 1024)
        parts["file_mib"].append(_proc_status_kib(agent_pid, "RssFile") / 1024)
        await asyncio.sleep(1.0)
    end = await asyncio.to_thread(Counters.read, server, agent_pid)
    window = end.at - start.at
    return {
        "seconds": window,
        "server_rss": flat([s[0] for s in samples]),
        "agent_rss": flat([s[1] for s in samples]),
        "agent_rss_parts": parts,
        "ingested_mb_per_s": (end.received_bytes - start.received_bytes) / 1e6 / window,
        "ingested_mb": end.received_bytes / 1e6,
        "upload_streams_per_s": (end.upload_streams - start.upload_streams) / window,
        "server_cores": (end.server_cpu_s - start.server_cpu_s) / window,
        "agent_cores": (end.agent_cpu_s - start.agent_cpu_s) / window,
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    server = await start_server("--log-limit", str(args.log_limit))
    work = Path(tempfile.mkdtemp(prefix="buildcontrol-bench-flood-"))
    agent = await start_agent(server.target, work, args.idle + args.floods + 1)
    follower: Follower | None = None
    try:
        async with grpc.aio.insecure_channel(server.target) as channel:
            stub = Stub(channel)
            idle = list(
                await asyncio.gather(
                    *(running(stub, f"idle{i}", "exec sleep 600") for i in range(args.idle))
                )
            )
            ticker = await running(stub, "ticker", TICKER)
            follower = Follower(stub, *ticker)
            half = len(idle) // 2
            print(f"logflood: {half} cancels without the flood ...", flush=True)
            quiet_sent = await cancel_one_by_one(stub, idle[:half])
            quiet_follow = follower.take()
            print(f"logflood: {args.floods} floods, {len(idle) - half} cancels ...", flush=True)
            await asyncio.gather(*(running(stub, f"flood{i}", "yes") for i in range(args.floods)))
            start = await asyncio.to_thread(Counters.read, server, agent.pid)
            sampling = asyncio.create_task(sample_rss(server, agent.pid, args.seconds, start))
            flood_sent = await cancel_one_by_one(stub, idle[half:])
            flood_follow = follower.take()
            memory = await sampling
        log = work / "agent.log"
        quiet = summary_ms(stop_latencies(log, quiet_sent))
        flood = summary_ms(stop_latencies(log, flood_sent))
        return {
            "machine": machine(),
            "idle_jobs": args.idle,
            "flood_jobs": args.floods,
            "log_limit_bytes": args.log_limit,
            "cancel_to_stopjob_quiet": quiet,
            "cancel_to_stopjob_flood": flood,
            "stop_ratio_p50": flood["p50_ms"] / quiet["p50_ms"],
            "stop_ratio_p99": flood["p99_ms"] / quiet["p99_ms"],
            "follow_line_quiet": summary_ms(quiet_follow) if quiet_follow else {},
            "follow_line_flood": summary_ms(flood_follow) if flood_follow else {},
            "flood_window": memory,
        }
    finally:
        if follower is not None:
            follower.close()
        if agent.returncode is not None:
            tail = (work / "agent.log").read_text()[-2000:]
            print(f"logflood: the agent exited early ({agent.returncode}):\n{tail}", flush=True)
        with contextlib.suppress(ProcessLookupError):
            agent.send_signal(signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(agent.wait(), 60)
        if agent.returncode is None:
            agent.kill()
        await server.stop()
        shutil.rmtree(work, ignore_errors=True)  # the jobs' local logs: ~500 MB a run


def print_report(result: dict[str, Any]) -> None:
    cores = result["machine"]["cores"]
    print(f"\nlogflood   (machine: {cores} cores, Python {result['machine']['python']})")
    print(f"{'measure':<40}{'n':>6}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}")
    for name in (
        "cancel_to_stopjob_quiet",
        "cancel_to_stopjob_flood",
        "follow_line_quiet",
        "follow_line_flood",
    ):
        row = result[name]
        if row:
            print(
                f"{name:<40}{row['n']:>6}{row['p50_ms']:>10.2f}{row['p99_ms']:>10.2f}"
                f"{row['max_ms']:>10.2f}"
            )
    window = result["flood_window"]
    print(f"stop ratio flood/quiet: p50 {result['stop_ratio_p50']:.2f}x, "
          f"p99 {result['stop_ratio_p99']:.2f}x (target <= 1.5x)")  # fmt: skip
    for who in ("server_rss", "agent_rss"):
        rss = window[who]
        print(
            f"{who}: first {rss['first_mib']:.1f} MiB, after warm-up {rss['after_warmup_mib']:.1f},"
            f" max {rss['max_mib']:.1f}, last {rss['last_mib']:.1f}"
            f" (rise {rss['max_rise_after_warmup_pct']:.1f} %, target <= 10 %;"
            f" drop {rss['max_drop_after_warmup_pct']:.1f} %)"
        )
    print(
        f"ingested: {window['ingested_mb_per_s']:.1f} MB/s over {window['seconds']:.0f} s"
        f" ({window['ingested_mb']:.0f} MB in all), in"
        f" {window['upload_streams_per_s']:.1f} UploadLogs streams a second;"
        f" CPU cores used: server {window['server_cores']:.2f}, agent {window['agent_cores']:.2f}"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--idle", type=int, default=200, help="idle jobs, cancelled in turn")
    parser.add_argument("--floods", type=int, default=50, help="jobs running `yes`")
    parser.add_argument("--seconds", type=float, default=60.0, help="RSS sampling window")
    parser.add_argument("--log-limit", type=int, default=64 * 1024 * 1024, help="--log-limit")
    parser.add_argument("--quick", action="store_true", help="small numbers: a smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.idle, args.floods, args.seconds = 20, 5, 10.0
    return args


if __name__ == "__main__":
    arguments = parse_args()
    outcome = asyncio.run(run(arguments))
    print_report(outcome)
    if not arguments.quick:
        print(f"wrote {write_json('log_flood', outcome)}")
