"""Scenario 3: one CancelBuilds for thousands of running builds.

5,000 builds of 2 jobs each run on the fleet's agents; one CancelBuilds (by pipeline)
cancels all of them. Measured: time from the call until its summary (every build
CANCELED: each agent confirmed its stops), until the first build's terminal message,
and the commits the server used meanwhile (buildcontrol_store_commits_total)."""

from __future__ import annotations

import time
from typing import Any

import grpc
from buildcontrol_proto.v1 import build_control_pb2, build_control_pb2_grpc, build_pb2
from builds import running
from fleet_control import Fleet
from server_process import ServerProcess

COMMITS = "buildcontrol_store_commits_total"


async def run(
    server: ServerProcess, fleet: Fleet, builds: int, jobs: int, held_before: int = 0
) -> dict[str, Any]:
    async with grpc.aio.insecure_channel(server.target) as channel:
        stub = build_control_pb2_grpc.BuildControlStub(channel)
        await running(stub, fleet, builds, "burst", jobs=jobs, held_before=held_before)
        async with server.profiled("burst"):
            commits = server.metric(COMMITS)
            cpu = server.cpu_seconds()
            started = time.monotonic()
            first = 0.0
            canceled = 0
            summary = None
            call = stub.CancelBuilds(
                build_control_pb2.CancelBuildsRequest(
                    pipeline="burst", reason="bench burst", batch_builds=True
                )
            )
            async for message in call:
                kind = message.WhichOneof("event")
                if kind == "summary":
                    summary = message.summary
                    break
                if kind != "builds":
                    continue  # accepted: no build has ended yet
                first = first or time.monotonic()
                canceled += sum(
                    build.status == build_pb2.BUILD_STATUS_CANCELED
                    for build in message.builds.builds
                )
            elapsed = time.monotonic() - started
            server_cpu = server.cpu_seconds() - cpu
            commits = server.metric(COMMITS) - commits
    assert summary is not None and summary.canceled == builds, summary
    assert canceled == builds, f"{canceled} of {builds} builds CANCELED"
    return {
        "builds": builds,
        "jobs": builds * jobs,
        "seconds_to_all_canceled": elapsed,
        "seconds_to_first_canceled": first - started,
        "commits": commits,
        "builds_per_commit": builds / commits if commits else None,
        "server_cpu_s": server_cpu,
    }
