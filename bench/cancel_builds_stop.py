"""The CancelBuilds row of the agent-stop scenario: one CancelBuilds for thousands of
running builds on load agents, measured from the call to the first StopJob an agent
received (the first batch's write committed), to the last one, and to every build
reported CANCELED.

Builds of `jobs` jobs run on a fleet of load agents (load_agent.py, their own process):
they take every job and confirm each stop at once, so what is measured is the
server's: batching the CANCELING writes, sending the StopJobs, applying the 2 x
confirmations. The agents stamp each StopJob with time.monotonic() as it arrives (one
clock for the machine), so the call's start can be subtracted from it."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc
from buildcontrol_proto.v1 import build_control_pb2, build_control_pb2_grpc, build_pb2
from builds import running
from fleet_control import Fleet
from load_agent import PUSH
from server_process import ServerProcess

COMMITS = "buildcontrol_store_commits_total"
AGENTS = 200
PIPELINE = "bench-cancel-builds"
QUIET_FOR = 0.5


async def run(server: ServerProcess, builds: int, jobs: int) -> dict[str, Any]:
    """`builds` running builds of `jobs` jobs, one CancelBuilds by pipeline."""
    capacity = -(-builds * jobs // AGENTS)  # every job finds a slot
    fleet = await Fleet.start(server.target)
    try:
        await fleet.connect(AGENTS, capacity, PUSH, "bulk")
        async with grpc.aio.insecure_channel(server.target) as channel:
            stub = build_control_pb2_grpc.BuildControlStub(channel)
            held = await running(stub, fleet, builds, PIPELINE, jobs=jobs)
            await quiet(server)
            commits = server.metric(COMMITS)
            request = build_control_pb2.CancelBuildsRequest(
                pipeline=PIPELINE, reason="bench", batch_builds=True
            )
            async with server.profiled("agentstop_bulk"):
                cpu = server.cpu_seconds()
                started = time.monotonic()
                first = accepted = 0.0
                canceled = 0
                async for message in stub.CancelBuilds(request):
                    kind = message.WhichOneof("event")
                    if kind == "accepted":
                        accepted = time.monotonic()
                    elif kind == "builds":
                        first = first or time.monotonic()
                        canceled += sum(
                            build.status == build_pb2.BUILD_STATUS_CANCELED
                            for build in message.builds.builds
                        )
                    elif kind == "summary":
                        break
                ended = time.monotonic()
                cpu = server.cpu_seconds() - cpu
            commits = server.metric(COMMITS) - commits
        stops = (await fleet.stops())["stops"]
    finally:
        await fleet.close()
    wanted = {job for job_ids in held.values() for job in job_ids}
    learned = [at for job, at in stops.items() if job in wanted]
    assert canceled == builds, f"{canceled} of {builds} builds CANCELED"
    assert len(learned) == builds * jobs, f"{len(learned)} of {builds * jobs} stops arrived"
    return {
        "builds": builds,
        "jobs": builds * jobs,
        "agents": AGENTS,
        "first_stop_ms": (min(learned) - started) * 1000,
        "last_stop_ms": (max(learned) - started) * 1000,
        "accepted_ms": (accepted - started) * 1000,
        "first_canceled_ms": (first - started) * 1000,
        "all_canceled_ms": (ended - started) * 1000,
        "commits": commits,
        # The server's CPU seconds (all its threads) from the call to the summary: the
        # phase is bound by the event loop's thread when this is close to the wall time.
        "server_cpu_s": cpu,
    }


async def quiet(server: ServerProcess, seconds: float = 60) -> None:
    """Setup, not measured: wait until the server has written the agents' last
    JobAccepted/StepStarted (its commit count holds still for QUIET_FOR seconds), so
    the CancelBuilds does not queue behind the tail of the setup."""
    deadline = time.monotonic() + seconds
    last = server.metric(COMMITS)
    while time.monotonic() < deadline:
        await asyncio.sleep(QUIET_FOR)
        now = server.metric(COMMITS)
        if now == last:
            return
        last = now


def lines(result: dict[str, Any]) -> list[str]:
    return [
        f"  {result['builds']} builds x {result['jobs'] // result['builds']} jobs on"
        f" {result['agents']} load agents, one CancelBuilds: first StopJob at an agent"
        f" {result['first_stop_ms']:.1f} ms, last {result['last_stop_ms']:.0f} ms;"
        f" accepted {result['accepted_ms']:.0f} ms; first build CANCELED"
        f" {result['first_canceled_ms']:.0f} ms, all {result['jobs']} jobs CANCELED"
        f" {result['all_canceled_ms']:.0f} ms; {result['commits']:.0f} commits;"
        f" server CPU {result.get('server_cpu_s', 0):.2f} s",
    ]
