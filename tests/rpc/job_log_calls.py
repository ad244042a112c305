"""An in-process agent on a test server, and waiting for a build to end, for the job-log tests."""

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
