"""An outbox row the database did not take is written again until it lands: a StopJob
for an agent another replica holds is never left to its deadline (which would end the
job FORCED while the agent, still connected, ran it on), nor an AssignJob to the
job's timeout. In process, on a real PostgreSQL; the owner's pool refuses its first
connections (as during a restart of the database)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from buildcontrol_server import metrics
from buildcontrol_server.agents.hub import AgentHub
from buildcontrol_server.domain.agent_commands import AssignCommand, AssignedStep, StopCommand
from buildcontrol_server.replicas.agent_delivery import AgentDelivery
from buildcontrol_server.store.errors import StoreUnavailable
from buildcontrol_server.store.postgres_connections import PostgresConnections

from tests.replicas.lease_replicas import replica

BUILD = "b0123456789abcdef0123"
WAIT = 20.0


class RefusedConnections:
    """The first `count` acquires of `connections` fail as a lost database does."""

    def __init__(self, connections: PostgresConnections, count: int) -> None:
        self._acquire = connections.acquire
        self.left = count
        connections.acquire = self._refusing  # type: ignore[method-assign]

    @asynccontextmanager
    async def _refusing(self) -> AsyncIterator[asyncpg.Connection]:
        if self.left > 0:
            self.left -= 1
            raise StoreUnavailable("the database went away (injected)")
        async with self._acquire() as connection:
            yield connection


async def outbox_rows(url: str, job_id: str) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(url)
    try:
        return list(
            await connection.fetch(
                "SELECT agent_id, kind FROM agent_outbox WHERE job_id = $1", job_id
            )
        )
    finally:
        await connection.close()


async def until_rows(url: str, job_id: str) -> list[asyncpg.Record]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while not (rows := await outbox_rows(url, job_id)):
        assert loop.time() < deadline, f"no outbox row of {job_id}"
        await asyncio.sleep(0.02)
    return rows


async def test_a_stop_and_an_assignment_the_database_refused_are_written_once_it_is_back(
    postgres_url: str,
) -> None:
    async with replica(postgres_url, "owner") as (leases, store):
        refused = RefusedConnections(store.connections, 6)
        delivery = AgentDelivery(store.connections, AgentHub(reconnect_window=1.0), leases)
        retries = metrics.OUTBOX_WRITE_RETRIES._value.get()
        stop = StopCommand(BUILD, f"{BUILD}-j0", "agent-b", "wrong branch", 5.0, 1e9)
        steps = (AssignedStep(0, "make", "make"),)
        assign = AssignCommand(BUILD, f"{BUILD}-j1", "compile", steps, {})
        try:
            delivery.forward_stop(stop)
            delivery.forward_assign("agent-b", assign)
            stop_rows = await until_rows(postgres_url, stop.job_id)
            assign_rows = await until_rows(postgres_url, assign.job_id)
        finally:
            await delivery.stop()
        assert [(r["agent_id"], r["kind"]) for r in stop_rows] == [("agent-b", "stop")]
        assert [(r["agent_id"], r["kind"]) for r in assign_rows] == [("agent-b", "assign")]
        assert refused.left == 0
        assert metrics.OUTBOX_WRITE_RETRIES._value.get() - retries == 6
