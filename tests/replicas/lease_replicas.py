"""Replicas in process for the lease and fence tests: a store with its shard leases, as
a replica runs them without the gRPC server, and builds placed in chosen shards."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from buildcontrol_server.domain.model import Build
from buildcontrol_server.domain.submission import new_build
from buildcontrol_server.replicas.leases import ShardLeases, shard_of
from buildcontrol_server.store.postgres import PostgresStore

from tests.support.store_samples import T0, two_stage_spec

SHARDS = 8
LEASE = 1.0  # seconds: renewed every 0.25 s


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
