"""An in-process agent on a test server, waiting for a build to end, and a finished build
whose steps printed colours and non-UTF-8 bytes, for the job-log and CLI-log tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from buildcontrol_client import Agent, AgentOptions
from buildcontrol_proto.v1 import build_control_pb2, build_pb2

from tests.support.servers import Running

WAIT = 30.0

TERMINAL = {
    build_pb2.BUILD_STATUS_SUCCEEDED,
    build_pb2.BUILD_STATUS_FAILED,
    build_pb2.BUILD_STATUS_CANCELED,
}


@asynccontextmanager
async def agent_for(server: Running, work_dir: Path) -> AsyncIterator[Agent]:
    agent = Agent(server.target, "agent-logs", options=AgentOptions(work_dir=work_dir))
    task = asyncio.create_task(agent.run())
    try:
        yield agent
    finally:
        agent.request_shutdown()
        await asyncio.wait_for(task, WAIT)


async def ended(server: Running, build_id: str) -> build_pb2.Build:
    request = build_control_pb2.WatchBuildRequest(build_id=build_id)
    async for event in server.stub.WatchBuild(request, timeout=WAIT):
        if event.WhichOneof("event") == "snapshot" and event.snapshot.status in TERMINAL:
            return event.snapshot
        if event.WhichOneof("event") == "build_changed" and event.build_changed.status in TERMINAL:
            return (
                await server.stub.GetBuild(build_control_pb2.GetBuildRequest(build_id=build_id))
            ).build
    raise AssertionError("the build did not end")


async def stored_log(server: Running, build_id: str, job_id: str) -> bytes:
    """The whole stored log of a job, page by page (GetJobLog returns 1 MiB at most)."""
    stored = b""
    while True:
        page = await server.stub.GetJobLog(
            build_control_pb2.GetJobLogRequest(build_id=build_id, job_id=job_id, offset=len(stored))
        )
        if not page.data:
            return stored
        stored += page.data


def two_jobs() -> build_control_pb2.SubmitBuildRequest:
    def job(name: str, command: str) -> build_control_pb2.JobSpec:
        return build_control_pb2.JobSpec(
            name=name, steps=[build_control_pb2.StepSpec(name="print", command=command)]
        )

    return build_control_pb2.SubmitBuildRequest(
        pipeline="logs",
        stages=[
            build_control_pb2.StageSpec(
                name="s",
                jobs=[
                    job("compile", r"printf 'a1\n\033[32mgreen\033[0m\n\377end'"),
                    job("test", "echo t1; echo t2"),
                ],
            )
        ],
    )


async def finished_build(server: Running, tmp_path: Path) -> str:
    build = (await server.stub.SubmitBuild(two_jobs())).build
    async with agent_for(server, tmp_path / "work"):
        await ended(server, build.build_id)
    return build.build_id
