"""Builds for the process tests (e2e, replicas), and waiting on WatchBuild for their
steps to run or end."""

from __future__ import annotations

import grpc
from buildcontrol_proto.v1 import build_control_pb2, build_control_pb2_grpc, build_pb2

Stub = build_control_pb2_grpc.BuildControlStub


def one_job(
    command: str, labels: dict[str, str] | None = None
) -> build_control_pb2.SubmitBuildRequest:
    return build_control_pb2.SubmitBuildRequest(
        pipeline="e2e",
        stages=[
            build_control_pb2.StageSpec(
                name="test",
                jobs=[
                    build_control_pb2.JobSpec(
                        name="job",
                        labels=labels or {"os": "linux"},
                        steps=[build_control_pb2.StepSpec(command=command)],
                    )
                ],
            )
        ],
    )


async def running_step(stub: Stub, build_id: str) -> build_pb2.Build:
    """Follow WatchBuild until the build's first step runs on an agent."""
    async for event in stub.WatchBuild(
        build_control_pb2.WatchBuildRequest(build_id=build_id), timeout=20
    ):
        if (
            event.WhichOneof("event") == "step_changed"
            and event.step_changed.status == build_pb2.STEP_STATUS_RUNNING
        ):
            break
        if (
            event.WhichOneof("event") == "snapshot"
            and event.snapshot.stages[0].jobs[0].steps[0].status == build_pb2.STEP_STATUS_RUNNING
        ):
            break
    return (await stub.GetBuild(build_control_pb2.GetBuildRequest(build_id=build_id))).build


TERMINAL = {
    build_pb2.BUILD_STATUS_SUCCEEDED,
    build_pb2.BUILD_STATUS_FAILED,
    build_pb2.BUILD_STATUS_CANCELED,
}


def build_of(
    jobs: int, command: str, pipeline: str = "recovery"
) -> build_control_pb2.SubmitBuildRequest:
    return build_control_pb2.SubmitBuildRequest(
        pipeline=pipeline,
        stages=[
            build_control_pb2.StageSpec(
                name="s",
                jobs=[
                    build_control_pb2.JobSpec(
                        name=f"j{i}",
                        labels={"os": "linux"},
                        steps=[build_control_pb2.StepSpec(command=command)],
                    )
                    for i in range(jobs)
                ],
            )
        ],
    )


async def all_steps_running(stub: Stub, build_id: str) -> None:
    watch = stub.WatchBuild(build_control_pb2.WatchBuildRequest(build_id=build_id), timeout=60)
    snapshot = (await watch.read()).snapshot
    running = {
        j.job_id
        for s in snapshot.stages
        for j in s.jobs
        if j.steps[0].status == build_pb2.STEP_STATUS_RUNNING
    }
    total = sum(len(s.jobs) for s in snapshot.stages)
    while len(running) < total:
        event = await watch.read()
        if (
            event.WhichOneof("event") == "step_changed"
            and event.step_changed.status == build_pb2.STEP_STATUS_RUNNING
        ):
            running.add(event.step_changed.job_id)
    watch.cancel()


async def until_terminal(stub: Stub, build_id: str) -> build_pb2.Build:
    """WatchBuild ends when the build is terminal; a dropped watch is resumed."""
    while True:
        try:
            async for _ in stub.WatchBuild(
                build_control_pb2.WatchBuildRequest(build_id=build_id), timeout=60
            ):
                pass
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.UNAVAILABLE:
                raise
            continue
        build = (await stub.GetBuild(build_control_pb2.GetBuildRequest(build_id=build_id))).build
        if build.status in TERMINAL:
            return build
