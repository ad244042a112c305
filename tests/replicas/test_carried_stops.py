"""A stop for an agent another replica holds rides in its NOTIFY: the holder sends it
from the notification, without reading the agent outbox back (one read less per
cross-replica stop), once per stream even when its safety net reads the row later.
In process, on a real PostgreSQL, two replicas' stores and leases."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from buildcontrol_server import metrics
from buildcontrol_server.agents.hub import AgentHub, AgentSession
from buildcontrol_server.domain import cancellation
from buildcontrol_server.domain.agent_commands import StopCommand
from buildcontrol_server.domain.model import Job
from buildcontrol_server.domain.states import JobStatus
from buildcontrol_server.replicas.agent_delivery import AgentDelivery, stop_body
from buildcontrol_server.replicas.change_feed import ChangeFeed
from buildcontrol_server.store.postgres import PostgresStore
from buildcontrol_server.store.postgres_connections import PostgresConnections

from tests.replicas.lease_replicas import RefusedConnections, replica, running_in, until_rows
from tests.support.store_samples import STOP_TIMES, T0, cancel_info

WAIT = 20.0


async def stopping_job(store: PostgresStore) -> Job:
    """A running job of a build just cancelled (STOPPING), committed."""
    build = await running_in(store, 1)
    await store.commit(cancellation.cancel(build, cancel_info(), STOP_TIMES, T0 + 10).changes)
    job = build.stages[0].jobs[0]
    assert job.status is JobStatus.STOPPING
    return job


@dataclasses.dataclass
class Pair:
    """An owner with a STOPPING job (its delivery writes the outbox) and a holder
    (replica "holder") with agent-b's stream and its change feed."""

    job: Job
    owner: AgentDelivery
    holder: AgentDelivery
    hub: AgentHub
    session: AgentSession
    connections: PostgresConnections  # the holder's pool


@asynccontextmanager
async def owner_and_holder(url: str, hints: bool = True) -> AsyncIterator[Pair]:
    """`hints`: the holder's feed also wakes its reads (the agents channel, the safety
    net); without, only carried stops reach it unless a test reads by hand."""
    async with replica(url, "owner") as (owner_leases, owner_store):
        job = await stopping_job(owner_store)
        owner = AgentDelivery(owner_store.connections, AgentHub(reconnect_window=1.0), owner_leases)
        async with replica(url, "holder") as (holder_leases, holder_store):
            hub = AgentHub(reconnect_window=1.0)
            session = AgentSession("agent-b", {}, 4)
            hub.connect(session)
            holder = AgentDelivery(holder_store.connections, hub, holder_leases)
            feed = ChangeFeed(holder_store.connections)
            if hints:
                feed.on_agent_outbox(holder.woken)
            feed.on_stop_row(holder.carried)
            feed.start()
            try:
                await asyncio.wait_for(feed.connected.wait(), WAIT)
                yield Pair(job, owner, holder, hub, session, holder_store.connections)
            finally:
                await owner.stop()
                await holder.stop()
                await feed.stop()


async def test_a_stop_reaches_the_holder_s_agent_from_its_notify_alone(
    postgres_url: str,
) -> None:
    async with owner_and_holder(postgres_url) as pair:
        job, session = pair.job, pair.session
        # From here the holder reads nothing from its pool (its LISTEN connection is
        # its own): a stop that needed the outbox read would never arrive.
        refused = RefusedConnections(pair.connections, 10**9)
        stop = StopCommand(job.build_id, job.job_id, "agent-b", "wrong branch", 5.0, 1e9)
        pair.owner.forward_stop(stop)
        sent = await asyncio.wait_for(session.outbox.get(), WAIT)
        assert sent == dataclasses.replace(stop, requested_at=None)
        [row] = await until_rows(postgres_url, stop.job_id)
        assert row["kind"] == "stop"  # kept until the agent confirms

        # The safety net reads the row: sent on this stream already, not again.
        refused.left = 0
        await pair.holder._send_waiting()
        assert session.outbox.empty()
        assert await until_rows(postgres_url, stop.job_id) == [row]

        # A new stream of the agent gets it again, from the read.
        again = AgentSession("agent-b", {}, 4)
        pair.hub.connect(again)
        pair.holder.woken("agent-b")
        assert await asyncio.wait_for(again.outbox.get(), WAIT) == sent


async def test_a_carried_stop_for_an_agent_held_elsewhere_is_not_sent_here(
    postgres_url: str,
) -> None:
    async with replica(postgres_url, "holder") as (leases, store):
        hub = AgentHub(reconnect_window=1.0)
        session = AgentSession("agent-c", {}, 4)
        hub.connect(session)
        delivery = AgentDelivery(store.connections, hub, leases)
        try:
            delivery.carried('{"agent_id": "agent-elsewhere", "id": 7, "body": "{}"}')
            assert session.outbox.empty()
        finally:
            await delivery.stop()


class ReadHeldBack:
    """The next `fetch` on `connections` returns only once `release` is set: a read
    whose rows are in hand while other work (a NOTIFY's callback) runs."""

    def __init__(self, connections: PostgresConnections) -> None:
        self._acquire = connections.acquire
        self.read = asyncio.Event()
        self.release = asyncio.Event()
        connections.acquire = self._holding  # type: ignore[method-assign]

    @asynccontextmanager
    async def _holding(self) -> AsyncIterator[Any]:
        async with self._acquire() as connection:
            yield _HeldFetch(connection, self)


class _HeldFetch:
    def __init__(self, connection: Any, held: ReadHeldBack) -> None:
        self._connection = connection
        self._held = held

    async def execute(self, *args: Any) -> Any:
        return await self._connection.execute(*args)

    async def fetch(self, *args: Any) -> Any:
        rows = await self._connection.fetch(*args)
        if not self._held.read.is_set():
            self._held.read.set()
            await self._held.release.wait()
        return rows


async def test_a_stop_carried_while_the_safety_net_reads_is_not_sent_again(
    postgres_url: str,
) -> None:
    """The safety net forgets the rows it sent that are gone from the outbox. A row
    carried by a NOTIFY after its read took the table's rows is not among them, and
    yet not gone: the next read must not send it on the same stream again."""
    async with owner_and_holder(postgres_url, hints=False) as pair:
        job, holder = pair.job, pair.holder
        held = ReadHeldBack(pair.connections)
        holder._everyone = True  # the safety net's round, run here by hand
        round_one = asyncio.create_task(holder._send_waiting())
        await asyncio.wait_for(held.read.wait(), WAIT)  # no row yet in its hands
        stop = StopCommand(job.build_id, job.job_id, "agent-b", "wrong branch", 5.0, 1e9)
        pair.owner.forward_stop(stop)
        assert await asyncio.wait_for(pair.session.outbox.get(), WAIT) is not None
        held.release.set()
        await asyncio.wait_for(round_one, WAIT)
        holder._everyone = True
        await holder._send_waiting()  # reads the row: still waiting, sent already
        assert pair.session.outbox.empty()
        rows = await until_rows(postgres_url, job.job_id)
        assert [row["kind"] for row in rows] == ["stop"]


async def test_a_stop_too_big_to_ride_in_a_notify_goes_by_the_read(
    postgres_url: str,
) -> None:
    """A reason of the longest length allowed (1,024 characters), each outside ASCII,
    makes a stop's row far over NOTIFY's 8,000 bytes once escaped as JSON: PostgreSQL
    refuses such a NOTIFY, and the statement with it. The row is written all the same
    and its agent told by the hint (agent id), and the holder sends it from its read."""
    async with owner_and_holder(postgres_url) as pair:
        job = pair.job
        reason = "\N{GRINNING FACE}" * 1_024
        stop = StopCommand(job.build_id, job.job_id, "agent-b", reason, 5.0, 1e9)
        pair.owner.forward_stop(stop)
        sent = await asyncio.wait_for(pair.session.outbox.get(), WAIT)
        assert sent == dataclasses.replace(stop, requested_at=None)
        rows = await until_rows(postgres_url, job.job_id)
        assert [row["kind"] for row in rows] == ["stop"]
        assert pair.session.outbox.empty()


BAD_STOP = (
    "INSERT INTO agent_outbox (agent_id, build_id, job_id, body, kind)"
    " VALUES ('agent-b', $1, $2, $3, 'stop') RETURNING id"
)


async def test_an_outbox_row_that_cannot_be_read_is_deleted_and_holds_no_other_stop_back(
    postgres_url: str,
) -> None:
    """A row another version wrote in a shape this one cannot read (not JSON, or a
    field missing) is deleted with an error counted; the stops after it still go, and a
    stop with a field this version does not know goes too (the field is ignored)."""
    async with owner_and_holder(postgres_url, hints=False) as pair:
        job, holder, session = pair.job, pair.holder, pair.session
        stop = StopCommand(job.build_id, job.job_id, "agent-b", "wrong branch", 5.0, 1e9)
        newer = {**json.loads(stop_body(stop)), "priority": "high"}
        unreadable = metrics.REPLICA_ROWS_UNREADABLE.labels(table="agent_outbox")
        before = unreadable._value.get()
        connection = await asyncpg.connect(postgres_url)
        try:
            bad = [
                await connection.fetchval(BAD_STOP, job.build_id, job.job_id, body)
                for body in ("not json", '{"build_id": "b"}')
            ]
            await connection.fetchval(BAD_STOP, job.build_id, job.job_id, json.dumps(newer))
            holder._everyone = True  # the safety net's round, by hand
            await holder._send_waiting()
            sent = await asyncio.wait_for(session.outbox.get(), WAIT)
            assert sent == dataclasses.replace(stop, requested_at=None)
            assert session.outbox.empty()
            left = await connection.fetch("SELECT id FROM agent_outbox WHERE id = ANY($1)", bad)
            assert left == []
            assert unreadable._value.get() == before + 2
            # A NOTIFY that cannot be read is left to the read: nothing raised here.
            holder.carried("not json")
            holder.carried('{"agent_id": "agent-b", "id": 1, "body": "{}"}')
            assert session.outbox.empty()
        finally:
            await connection.close()
