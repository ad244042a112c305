"""Scenario 6: the agent's half of a cancel, on a real agent running real steps.

A real `buildcontrol agent` process (capacity 50, one cgroup per job where the machine
allows it) runs `sleep` steps; the benchmark starts a few hundred unrelated idle
processes first, so that anything that scans the host's processes shows. Measured with
time.monotonic() (one clock for every process of the machine):

- Cancel sent → the step's process dead, seen through a pidfd in a watcher process of
  its own (pid_watcher.py), and → the Cancel stream's terminal message (CANCELED);
- 1 build, grace 0, one cancel after another: p50 / p99;
- 50 builds on the one agent, 50 Cancels sent at once: when the last process died and
  the last build was reported CANCELED (all must);
- the agent's own share, from its log line per stop: StopJob received → signal sent →
  process dead → JobStopped queued;
- then, on the same server once the real agent has left, one CancelBuilds for 5,000
  running builds x 2 jobs on load agents (cancel_builds_stop.py): first StopJob at an
  agent, all 10,000 jobs CANCELED;
- last, the same CancelBuilds again with lone Cancels of another pipeline's builds
  beside it (cancel_beside_mass.py): how long each waited for its StopJob.

`targets_table` puts the measures next to their targets, from one run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
import tempfile
import time
import uuid
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cancel_beside_mass
import cancel_builds_stop
import grpc
from buildcontrol_proto.v1 import build_control_pb2, build_control_pb2_grpc, build_pb2
from google.protobuf.duration_pb2 import Duration
from server_process import ServerProcess
from stats import summary_ms

TIMING = re.compile(
    r"job (\S+) stop timing: received=(\S+) signalled=(\S+) gone=(\S+) reported=(\S+)"
)
WATCHER = Path(__file__).with_name("pid_watcher.py")
Stub = build_control_pb2_grpc.BuildControlStub


@dataclass
class Stop:
    build_id: str
    job_id: str
    pid: int
    sent: float = 0.0
    terminal: float = 0.0
    dead: float = 0.0
    status: int = 0
    # The job's outcome: FORCED means the agent did not confirm by the stop's deadline.
    outcome: int = 0
    agent: dict[str, float] = field(default_factory=dict)


class Watcher:
    """The pid_watcher.py process: `watch(pid)`, then `dead_at(pid)`."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self._process = process
        self._watching: dict[int, asyncio.Future[None]] = {}
        self._dead: dict[int, asyncio.Future[float]] = {}
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls) -> Watcher:
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(WATCHER), stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        return cls(process)

    async def watch(self, pid: int) -> None:
        loop = asyncio.get_running_loop()
        self._watching[pid] = loop.create_future()
        self._dead[pid] = loop.create_future()
        assert self._process.stdin is not None
        self._process.stdin.write(f"{pid}\n".encode())
        await asyncio.wait_for(asyncio.shield(self._watching[pid]), 10)

    async def dead_at(self, pid: int, within: float = 30) -> float:
        return await asyncio.wait_for(asyncio.shield(self._dead[pid]), within)

    async def _read(self) -> None:
        assert self._process.stdout is not None
        while line := await self._process.stdout.readline():
            kind, pid, *rest = line.decode().split()
            if kind == "watching":
                self._watching[int(pid)].set_result(None)
            else:
                self._watching[int(pid)].done() or self._watching[int(pid)].set_result(None)
                self._dead[int(pid)].set_result(float(rest[0]))

    async def close(self) -> None:
        self._process.kill()
        await self._process.wait()
        self._reader.cancel()


async def idle_processes(count: int) -> list[asyncio.subprocess.Process]:
    return [
        await asyncio.create_subprocess_exec("sleep", "3600", start_new_session=True)
        for _ in range(count)
    ]


async def start_agent(
    target: str, work: Path, capacity: int, client: Path | None
) -> asyncio.subprocess.Process:
    """The agent; `client`: a directory holding another buildcontrol_client (a baseline,
    e.g. an export of an earlier commit's clients/python) to run instead of ours."""
    log = (work / "agent.log").open("ab")
    env = dict(os.environ)
    if client is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(client), env.get("PYTHONPATH")]))
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "buildcontrol_cli", "agent", "--server", target,
        "--agent-id", f"bench-stop-{uuid.uuid4().hex[:8]}", "--labels", "bench=stop",
        "--capacity", str(capacity), "--work-dir", str(work / "jobs"),
        "--reconnect-max", "0.5",
        stdout=asyncio.subprocess.DEVNULL, stderr=log, env=env,
    )  # fmt: skip


def sleep_build(pids: Path) -> build_control_pb2.SubmitBuildRequest:
    # The step writes its pid (bash's, which then becomes `sleep` by exec) and sleeps.
    command = f'echo $$ > {pids}/"$BUILDCONTROL_JOB_ID"; exec sleep 600'
    return build_control_pb2.SubmitBuildRequest(
        pipeline="bench-agent-stop",
        stages=[
            build_control_pb2.StageSpec(
                name="s",
                jobs=[
                    build_control_pb2.JobSpec(
                        name="sleep",
                        labels={"bench": "stop"},
                        steps=[build_control_pb2.StepSpec(command=command)],
                    )
                ],
            )
        ],
    )


async def running_sleep(stub: Stub, pids: Path) -> Stop:
    """Submit one build and return once its step process runs (setup, not measured)."""
    build = (await stub.SubmitBuild(sleep_build(pids))).build
    job_id = build.stages[0].jobs[0].job_id
    path = pids / job_id
    deadline = time.monotonic() + 60
    # Setup only: no event says a file appeared; the step writes it within ms.
    while not path.exists() or not path.read_text().strip():
        if time.monotonic() > deadline:
            raise TimeoutError(f"step of {build.build_id} never started")
        await asyncio.sleep(0.005)
    return Stop(build.build_id, job_id, int(path.read_text()))


async def cancel(stub: Stub, stop: Stop) -> None:
    request = build_control_pb2.CancelRequest(
        build_id=stop.build_id, reason="bench", grace_period=Duration(seconds=0)
    )
    stop.sent = time.monotonic()
    async for message in stub.Cancel(request):
        if message.WhichOneof("event") == "finished":
            stop.terminal = time.monotonic()
            stop.status = message.finished.status
            stop.outcome = message.finished.jobs[0].outcome if message.finished.jobs else 0


def agent_shares(log: Path, stops: list[Stop]) -> None:
    by_job = {stop.job_id: stop for stop in stops}
    for match in TIMING.finditer(log.read_text()):
        stop = by_job.get(match.group(1))
        if stop is not None:
            received, signalled, gone, reported = map(float, match.groups()[1:])
            stop.agent = {
                "sent_to_received": received - stop.sent,
                "received_to_signalled": signalled - received,
                "signalled_to_gone": gone - signalled,
                "gone_to_reported": reported - gone,
            }


def summarize(stops: list[Stop]) -> dict[str, Any]:
    shares = [s.agent for s in stops if s.agent]
    return {
        "builds": len(stops),
        "all_dead": all(s.dead > 0 for s in stops),
        "all_canceled": all(s.status == build_pb2.BUILD_STATUS_CANCELED for s in stops),
        "forced": sum(s.outcome == build_pb2.JOB_OUTCOME_FORCED for s in stops),
        "sent_to_dead": summary_ms([s.dead - s.sent for s in stops]),
        "sent_to_canceled": summary_ms([s.terminal - s.sent for s in stops]),
        "agent_share": {name: summary_ms([share[name] for share in shares]) for name in shares[0]}
        if shares
        else {},
    }


async def single_rounds(stub: Stub, watcher: Watcher, pids: Path, rounds: int) -> list[Stop]:
    stops = []
    for _ in range(rounds):
        stop = await running_sleep(stub, pids)
        await watcher.watch(stop.pid)
        await cancel(stub, stop)
        stop.dead = await watcher.dead_at(stop.pid)
        stops.append(stop)
    return stops


async def cancel_at_once(stub: Stub, stops: list[Stop]) -> None:
    """One CancelBuilds naming every build: one call instead of one per build."""
    request = build_control_pb2.CancelBuildsRequest(
        ids=build_control_pb2.BuildIds(build_ids=[stop.build_id for stop in stops]),
        reason="bench",
        grace_period=Duration(seconds=0),
        batch_builds=True,
    )
    by_build = {stop.build_id: stop for stop in stops}
    sent = time.monotonic()
    for stop in stops:
        stop.sent = sent
    async for message in stub.CancelBuilds(request):
        if message.WhichOneof("event") != "builds":
            continue
        arrived = time.monotonic()
        for build in message.builds.builds:
            stop = by_build[build.build_id]
            stop.terminal = arrived
            stop.status = build.status
            stop.outcome = build.jobs[0].outcome if build.jobs else 0


async def burst_round(
    stub: Stub,
    watcher: Watcher,
    pids: Path,
    builds: int,
    one_call: bool,
    profiled: AbstractAsyncContextManager[None],
) -> list[Stop]:
    """`builds` running builds on the one agent, all cancelled at once: a Cancel each,
    or (`one_call`) one CancelBuilds naming them all. `profiled` holds the cancels."""
    stops = list(await asyncio.gather(*(running_sleep(stub, pids) for _ in range(builds))))
    for stop in stops:
        await watcher.watch(stop.pid)
    async with profiled:
        if one_call:
            await cancel_at_once(stub, stops)
        else:
            await asyncio.gather(*(cancel(stub, stop) for stop in stops))
    for stop in stops:
        stop.dead = await watcher.dead_at(stop.pid)
    return stops


def burst_summary(stops: list[Stop], one_call: bool = False) -> dict[str, Any]:
    started = min(s.sent for s in stops)
    return {
        **summarize(stops),
        "one_call": one_call,
        "all_dead_ms": (max(s.dead for s in stops) - started) * 1000,
        "all_canceled_ms": (max(s.terminal for s in stops) - started) * 1000,
    }


async def run(
    server: ServerProcess,
    rounds: int,
    burst_builds: int,
    burst_rounds: int,
    idle: int,
    client: Path | None = None,
    bulk: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """`bulk`: (builds, jobs) for the CancelBuilds row, run after the real agent left."""
    work = Path(tempfile.mkdtemp(prefix="buildcontrol-bench-agent-stop-"))
    pids = work / "pids"
    pids.mkdir()
    unrelated = await idle_processes(idle)
    watcher = await Watcher.start()
    agent = await start_agent(server.target, work, max(burst_builds, 1), client)
    try:
        async with grpc.aio.insecure_channel(server.target) as channel:
            stub = Stub(channel)
            single = await single_rounds(stub, watcher, pids, rounds)
            # Each round twice: 50 Cancels, then one CancelBuilds naming the 50.
            bursts = [
                (
                    await burst_round(
                        stub, watcher, pids, burst_builds, one_call,
                        server.profiled(f"agentstop_burst{n}_{'one' if one_call else 'each'}"),
                    ),
                    one_call,
                )
                for n in range(1, burst_rounds + 1)
                for one_call in (False, True)
            ]  # fmt: skip
    finally:
        agent.send_signal(signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(agent.wait(), 30)
        await watcher.close()
        for process in unrelated:
            process.kill()
            await process.wait()
    log = work / "agent.log"
    agent_shares(log, single + [stop for burst, _ in bursts for stop in burst])
    bulk_result = None if bulk is None else await cancel_builds_stop.run(server, *bulk)
    beside = None if bulk is None else await cancel_beside_mass.run(server, *bulk)
    return {
        "bulk": bulk_result,
        "beside_mass": beside,
        "agent": "ours" if client is None else f"baseline from {client}",
        "idle_processes": idle,
        "containment": "cgroups" if "own cgroup" in log.read_text() else "process groups",
        "single": summarize(single),
        "bursts": [burst_summary(burst, one_call) for burst, one_call in bursts],
        "agent_log": str(log),
    }


def table(result: dict[str, Any]) -> str:
    """The scenario's lines of the results table."""
    single = result["single"]
    lines = [
        f"6 agent stop: real agent, {result.get('agent', 'ours')} ({result['containment']}),"
        " `sleep` steps,"
        f" {result['idle_processes']} unrelated idle processes on the host",
        f"  {'latency (ms)':<46}{'p50':>9}{'p99':>10}{'max':>10}",
    ]

    def row(name: str, summary: dict[str, float]) -> str:
        return (
            f"  {name:<46}{summary['p50_ms']:>9.2f}{summary['p99_ms']:>10.2f}"
            f"{summary['max_ms']:>10.2f}"
        )

    lines.append(
        f"  1 build, grace 0, {single['builds']} cancels one after another"
        f" ({single['forced']} FORCED)"
    )
    lines.append(row("Cancel sent → step process dead (pidfd)", single["sent_to_dead"]))
    lines.append(row("Cancel sent → CANCELED reported", single["sent_to_canceled"]))
    for name, label in (
        ("sent_to_received", "  Cancel sent → StopJob received (server)"),
        ("received_to_signalled", "  agent: StopJob received → signal sent"),
        ("signalled_to_gone", "  agent: signal sent → process dead"),
        ("gone_to_reported", "  agent: process dead → JobStopped queued"),
    ):
        if name in single["agent_share"]:
            lines.append(row(label, single["agent_share"][name]))
    for number, burst in enumerate(result["bursts"], 1):
        how = "one CancelBuilds" if burst.get("one_call") else f"{burst['builds']} Cancels"
        lines.append(
            f"  {burst['builds']} builds on one agent, cancelled at once by {how}"
            f" (burst {number}):"
            f" all dead {burst['all_dead_ms']:.1f} ms"
            f" ({'all' if burst['all_dead'] else 'NOT all'}),"
            f" all CANCELED {burst['all_canceled_ms']:.1f} ms"
            f" ({'all' if burst['all_canceled'] else 'NOT all'}; {burst['forced']} FORCED:"
            " not confirmed by the agent in time)"
        )
        share = burst["agent_share"]
        if share:
            lines.append(
                "    server: Cancel sent → StopJob received p50/max ms"
                f" {share['sent_to_received']['p50_ms']:.2f}/"
                f"{share['sent_to_received']['max_ms']:.2f}"
            )
            lines.append(
                "    agent share p50/max ms: received→signal"
                f" {share['received_to_signalled']['p50_ms']:.2f}/"
                f"{share['received_to_signalled']['max_ms']:.2f},"
                f" signal→dead {share['signalled_to_gone']['p50_ms']:.2f}/"
                f"{share['signalled_to_gone']['max_ms']:.2f},"
                f" dead→JobStopped {share['gone_to_reported']['p50_ms']:.2f}/"
                f"{share['gone_to_reported']['max_ms']:.2f}"
            )
    if result.get("bulk"):
        lines += cancel_builds_stop.lines(result["bulk"])
    if result.get("beside_mass"):
        lines += cancel_beside_mass.lines(result["beside_mass"])
    return "\n".join(lines)


# The stop path's measures and their targets on this machine.
TARGETS = (
    ("1 build, grace 0: request → dead, p50 / p99", "≤ 3 / ≤ 8 ms"),
    ("1 build: request → CANCELED reported, p50", "≤ 5 ms"),
    ("50 builds on one agent at once: all dead", "≤ 30 ms"),
    ("50 builds: all reported CANCELED", "≤ 50 ms"),
    ("5,000 builds x 2 jobs, one CancelBuilds: first StopJob at an agent", "≤ 20 ms"),
    ("same: all 10,000 jobs CANCELED", "≤ 2 s"),
)


def targets_table(result: dict[str, Any]) -> str:
    """The measures of this run next to their targets (50 at once: each round)."""
    single, bursts, bulk = result["single"], result["bursts"], result.get("bulk")
    dead = single["sent_to_dead"]

    def rounds(key: str) -> str:
        """Each burst's value: 50 Cancels | one CancelBuilds, round after round."""
        by_how = [
            [b[key] for b in bursts if bool(b.get("one_call")) is how] for how in (False, True)
        ]
        return " | ".join(" / ".join(f"{v:.0f}" for v in values) for values in by_how) + " ms"

    measured = [
        f"{dead['p50_ms']:.2f} / {dead['p99_ms']:.2f} ms",
        f"{single['sent_to_canceled']['p50_ms']:.2f} ms",
        rounds("all_dead_ms") if bursts else "-",
        rounds("all_canceled_ms") if bursts else "-",
        f"{bulk['first_stop_ms']:.1f} ms" if bulk else "-",
        f"{bulk['all_canceled_ms'] / 1000:.2f} s" if bulk else "-",
    ]
    rows = [
        f"  {'measure (50 at once: each round by 50 Cancels | by one CancelBuilds)':<70}"
        f"{'this run':>22}   target"
    ]
    rows += [
        f"  {name:<70}{value:>22}   {target}"
        for (name, target), value in zip(TARGETS, measured, strict=True)
    ]
    return "\n".join(rows)
