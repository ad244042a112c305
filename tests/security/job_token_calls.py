"""A build RUNNING on a scripted agent with its job tokens, and the status of a refused call."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import grpc
import pytest

from tests.security.scripted import settled
from tests.support.agent_peer import AgentPeer
from tests.support.secure_servers import SecureServer


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
