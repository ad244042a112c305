"""The fenced writer's one-statement path, on a real PostgreSQL: a replica's batch of
updates is one round trip (the lease check and the NOTIFY inside it), and it still
commits nothing once its shard was taken over, even by a takeover that commits while
the statement waits for the lease row."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import pytest
from buildcontrol_server.domain import cancellation
from buildcontrol_server.domain.errors import VersionConflict
from buildcontrol_server.domain.states import BuildStatus
from buildcontrol_server.store.fencing import CHANGES_CHANNEL, FencedOut

from tests.replicas.lease_replicas import replica, running_in
from tests.support.store_samples import STOP_TIMES, T0, cancel_info

NOTIFIED_WITHIN = 10.0
# The fenced statement (update_all_checked's CTEs) waiting for a row lock; its text
# is cut at track_activity_query_size, so it is known by its start.
WAITING = (
    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
    " AND query LIKE 'WITH u0 AS (UPDATE builds %'"
)


@asynccontextmanager
async def changes_heard(url: str) -> AsyncIterator[asyncio.Queue[str]]:
    """The payloads of the change channel's NOTIFYs, as a replica's feed hears them."""
    heard: asyncio.Queue[str] = asyncio.Queue()
    connection = await asyncpg.connect(url)
    await connection.add_listener(CHANGES_CHANNEL, lambda *args: heard.put_nowait(args[3]))
    try:
        yield heard
    finally:
        await connection.close()


async def blocked_on_the_lease(url: str, writing: asyncio.Future[None]) -> None:
    """Until the writer's statement waits for a lock (no event announces it). Read on
    a connection of its own: inside a transaction pg_stat_activity stays as first read."""
    connection = await asyncpg.connect(url)
    try:
        async with asyncio.timeout(NOTIFIED_WITHIN):
            while not await connection.fetchval(WAITING):
                assert not writing.done(), "the write did not wait for the lease row"
                await asyncio.sleep(0.01)
    finally:
        await connection.close()


async def test_a_fenced_cancel_is_one_round_trip_and_notifies_its_build(
    postgres_url: str,
) -> None:
    async with replica(postgres_url, "a") as (_leases, store), changes_heard(postgres_url) as heard:
        build = await running_in(store, 1)
        while not heard.empty():  # the submit's and the start's NOTIFYs
            heard.get_nowait()
        commits, trips = store.stats.commits, store.stats.round_trips

        await store.commit(cancellation.cancel(build, cancel_info(), STOP_TIMES, T0 + 10).changes)

        assert (store.stats.commits, store.stats.round_trips) == (commits + 1, trips + 1)
        assert await asyncio.wait_for(heard.get(), NOTIFIED_WITHIN) == build.build_id
        stored = await store.get_build(build.build_id)
        assert stored is not None and stored.status is BuildStatus.CANCELING


async def test_a_stale_fenced_write_is_a_version_conflict_and_writes_nothing(
    postgres_url: str,
) -> None:
    async with replica(postgres_url, "a") as (_leases, store):
        build = await running_in(store, 1)
        stale = copy.deepcopy(build)
        await store.commit(cancellation.cancel(build, cancel_info(), STOP_TIMES, T0 + 10).changes)
        committed = await store.get_build(build.build_id)

        with pytest.raises(VersionConflict):
            await store.commit(
                cancellation.cancel(stale, cancel_info(force=True), STOP_TIMES, T0 + 20).changes
            )

        assert await store.get_build(build.build_id) == committed


async def test_a_takeover_committed_while_the_statement_waits_for_the_lease_fences_it(
    postgres_url: str,
) -> None:
    async with replica(postgres_url, "a") as (leases, store), changes_heard(postgres_url) as heard:
        build, other = await running_in(store, 1), await running_in(store, 2)
        before = await store.get_build(build.build_id)
        taker = await asyncpg.connect(postgres_url)
        try:
            # Another replica's TAKE holds shard 1's lease row, not yet committed.
            transaction = taker.transaction()
            await transaction.start()
            await taker.execute("SELECT 1 FROM shard_leases WHERE shard = 1 FOR UPDATE")
            cancel = cancellation.cancel(build, cancel_info(), STOP_TIMES, T0 + 10).changes
            writing = asyncio.ensure_future(store.commit(cancel))
            await blocked_on_the_lease(postgres_url, writing)
            await taker.execute(
                "UPDATE shard_leases SET owner = 'other', epoch = epoch + 1 WHERE shard = 1"
            )
            await transaction.commit()
            with pytest.raises(FencedOut):
                await writing
        finally:
            await taker.close()
        assert await store.get_build(build.build_id) == before
        assert 1 not in leases.held()
        while not heard.empty():
            heard.get_nowait()
        # NOTIFYs arrive in commit order: a NOTIFY of the fenced write would come first.
        await store.commit(cancellation.cancel(other, cancel_info(), STOP_TIMES, T0 + 10).changes)
        assert await asyncio.wait_for(heard.get(), NOTIFIED_WITHIN) == other.build_id
