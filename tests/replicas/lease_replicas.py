"""Replicas in process for the lease, fence and outbox tests: a store with its shard
leases, as a replica runs them without the gRPC server, builds placed in chosen shards,
a pool that refuses connections, and the agent outbox's rows as the database holds them."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from buildcontrol_server.domain.model import Build, ChangeSet
from buildcontrol_server.domain.submission import new_build
from buildcontrol_server.replicas.leases import ShardLeases, shard_of
from buildcontrol_server.store.errors import StoreUnavailable
from buildcontrol_server.store.postgres import PostgresStore
from buildcontrol_server.store.postgres_connections import PostgresConnections

from tests.support.store_samples import T0, start_first_job, two_stage_spec

SHARDS = 8
LEASE = 1.0  # seconds: renewed every 0.25 s
ROWS_WITHIN = 20.0


@asynccontextmanager
async def replica(url: str, name: str) -> AsyncIterator[tuple[ShardLeases, PostgresStore]]:
    """A store and its leases as a replica runs them (without the gRPC server)."""
    leases = ShardLeases(SHARDS, LEASE, name)
    store = PostgresStore(url, fence=leases)
    await store.open()
    try:
        await leases.start(store.connections)
        yield leases, store
    finally:
        await leases.stop()
        await store.close()


def build_in(shards: set[int], now: float = T0) -> Build:
    """A new build whose id falls in one of `shards`."""
    for step in range(10_000):
        build = new_build(two_stage_spec(), now + step / 1000)
        if shard_of(build.build_id, SHARDS) in shards:
            return build
    raise AssertionError("no build id in the shards")


async def running_in(store: PostgresStore, shard: int) -> Build:
    """A build of `shard` with its first job running, committed."""
    build = build_in({shard})
    await store.commit(ChangeSet(new_build=copy.deepcopy(build)))
    await store.commit(start_first_job(build))
    return build


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
    deadline = loop.time() + ROWS_WITHIN
    while not (rows := await outbox_rows(url, job_id)):
        assert loop.time() < deadline, f"no outbox row of {job_id}"
        await asyncio.sleep(0.02)
    return rows
