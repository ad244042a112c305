"""A Hello is reconciled after its stream is open: jobs can be assigned, and stopped,
on that stream before the reconciliation runs (the Hello's re-sent results are applied
first, and that takes a commit). The Hello was written before those commands, so it
says nothing about them: the reconciliation judges only the jobs held for the agent
when the Hello came, and an actor never sends again what went out on the very stream
of the Hello (it arrives in order, or the stream drops and the next Hello asks)."""

from __future__ import annotations

import asyncio
from typing import Any

from buildcontrol_proto.v1 import build_pb2

from tests.support.agent_peer import AgentPeer
from tests.support.build_calls import submit, wait_status
from tests.support.servers import Running

WAIT = 20.0


class HeldHello:
    """Holds the server between a stream's open and the reconciliation of its Hello."""

    def __init__(self, server: Running) -> None:
        control = server.app.control
        self.holding = asyncio.Event()
        self.gate = asyncio.Event()
        self.reconciled = asyncio.Event()
        apply_earlier = control.reports.apply_earlier
        agent_connected = control.agent_connected

        async def held_apply(session: Any, reports: Any) -> None:
            await apply_earlier(session, reports)
            self.holding.set()
            await self.gate.wait()

        async def connected(session: Any, hello: Any) -> None:
            await agent_connected(session, hello)
            self.reconciled.set()

        control.reports.apply_earlier = held_apply  # type: ignore[method-assign]
        control.agent_connected = connected  # type: ignore[method-assign]


async def test_a_job_assigned_before_its_streams_hello_was_reconciled_is_not_sent_again(
    server: Running,
) -> None:
    held = HeldHello(server)
    agent = AgentPeer(server.target, "a1", capacity=2)
    await agent.connect()
    async with asyncio.timeout(WAIT):
        await held.holding.wait()
    first = await submit(server)
    job = await agent.take_job()  # assigned on the stream whose Hello waits
    held.gate.set()
    async with asyncio.timeout(WAIT):
        await held.reconciled.wait()
    # Anything the reconciliation sent is queued on the stream before this assignment.
    second = await submit(server)
    between = []
    while (message := await agent.next()).WhichOneof("event") != "assign_job":
        between.append(message.WhichOneof("event"))
    assert message.assign_job.build_id == second.build_id, "the first job was assigned again"
    assert "stop_job" not in between
    for build, assigned in ((first, job), (second, message.assign_job)):
        agent.finished(build.build_id, assigned.job_id)
        await wait_status(server, build.build_id, build_pb2.BUILD_STATUS_SUCCEEDED)
    await agent.leave()
