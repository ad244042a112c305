"""Builds the benchmarks submit, and getting them running on the fleet's agents."""

from __future__ import annotations

import asyncio
import random

from buildcontrol_proto.v1 import build_control_pb2, build_control_pb2_grpc, build_pb2
from fleet_control import Fleet

SUBMITS_IN_FLIGHT = 64


def build_request(pipeline: str, jobs: int) -> build_control_pb2.SubmitBuildRequest:
    """One stage of `jobs` jobs, one long step each (the agents never finish them)."""
    return build_control_pb2.SubmitBuildRequest(
        pipeline=pipeline,
        stages=[
            build_control_pb2.StageSpec(
                name="test",
                jobs=[
                    build_control_pb2.JobSpec(
                        name=f"job-{j}",
                        steps=[build_control_pb2.StepSpec(name="run", command="sleep 600")],
                    )
                    for j in range(jobs)
                ],
            )
        ],
    )


async def submit(
    stub: build_control_pb2_grpc.BuildControlStub, count: int, pipeline: str, jobs: int
) -> list[str]:
    """Submit `count` builds, SUBMITS_IN_FLIGHT at a time; their ids in order."""
    request = build_request(pipeline, jobs)
    ids: list[str] = [""] * count
    positions = iter(range(count))

    async def worker() -> None:
        for position in positions:
            ids[position] = (await stub.SubmitBuild(request)).build.build_id

    await asyncio.gather(*(worker() for _ in range(min(SUBMITS_IN_FLIGHT, count))))
    return ids


async def running(
    stub: build_control_pb2_grpc.BuildControlStub,
    fleet: Fleet,
    count: int,
    pipeline: str,
    jobs: int = 1,
    held_before: int = 0,
) -> dict[str, list[str]]:
    """Submit `count` builds of `jobs` jobs and wait until the fleet's agents hold all
    of their jobs and the server shows them RUNNING. {build_id: [job_id, ...]}."""
    ids = await submit(stub, count, pipeline, jobs)
    held = await fleet.wait_jobs(held_before + count * jobs, seconds=180)
    wanted = set(ids)
    by_build: dict[str, list[str]] = {}
    for job_id, build_id in held.items():
        if build_id in wanted:
            by_build.setdefault(build_id, []).append(job_id)
    assert len(by_build) == count, f"{len(by_build)} of {count} builds on agents"
    # JobAccepted/StepStarted are applied by the server a moment after the agents send
    # them: wait until a sample of builds (the last submitted among them) is RUNNING.
    sample = ids[-10:] + random.sample(ids, min(20, count))
    for build_id in sample:
        for _ in range(200):
            build = (
                await stub.GetBuild(build_control_pb2.GetBuildRequest(build_id=build_id))
            ).build
            if build.status == build_pb2.BUILD_STATUS_RUNNING and all(
                job.status == build_pb2.JOB_STATUS_RUNNING
                for stage in build.stages
                for job in stage.jobs
            ):
                break
            await asyncio.sleep(0.05)
        else:
            raise RuntimeError(f"build {build_id} is not RUNNING on its agents")
    return by_build
