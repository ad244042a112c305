"""A build RUNNING on a scripted agent with its job tokens, and the status of a refused call."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import grpc
import pytest
from buildcontrol_proto.v1 import build_control_pb2, build_pb2

from tests.security.scripted import settled
from tests.support.agent_peer import AgentPeer
from tests.support.secure_servers import SecureServer

WAIT = 10.0


async def refusal(work: Awaitable[Any]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await work
    return caught.value.code(), caught.value.details() or ""


async def assigned(server: SecureServer, jobs: int = 1) -> tuple[str, AgentPeer, list[Any]]:
    """A build of alice's with `jobs` jobs RUNNING on agent-a; their AssignJobs."""
    agent = server.agent("agent-a")
    await agent.connect()
    build = await server.submit("alice", jobs=jobs)
    assignments = [await agent.take_job() for _ in range(jobs)]
    await settled(server, build.build_id)
    return build.build_id, agent, assignments


async def finish(server: SecureServer, agent: AgentPeer, build_id: str, job_id: str) -> None:
    """The agent reports the job finished; return once the build's own stream says it
    SUCCEEDED (the server's word, not the report's)."""
    watch = server.stub.WatchBuild(
        build_control_pb2.WatchBuildRequest(build_id=build_id),
        metadata=server.auth("root"),
        timeout=WAIT,
    )
    try:
        assert (await watch.read()).HasField("snapshot")
        agent.finished(build_id, job_id)
        while True:
            changed = (await watch.read()).job_changed
            if changed.job_id == job_id and changed.status == build_pb2.JOB_STATUS_SUCCEEDED:
                return
    finally:
        watch.cancel()
