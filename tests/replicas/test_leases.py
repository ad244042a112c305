"""Shard leases and the fence, in process on a real PostgreSQL: how replicas share the
shards, and that a replica whose lease was taken over commits nothing."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest
from buildcontrol_server.domain import cancellation
from buildcontrol_server.domain.model import ChangeSet
from buildcontrol_server.domain.states import BuildStatus
from buildcontrol_server.replicas.leases import ShardLeases, shard_of
from buildcontrol_server.store.factory import StoreUrlError, build_store
from buildcontrol_server.store.fencing import FencedOut

from tests.replicas.lease_replicas import LEASE, SHARDS, build_in, replica
from tests.support.store_samples import STOP_TIMES, T0, cancel_info


async def settles(leases: ShardLeases, condition: Callable[[], bool], within: float = 20) -> None:
    """Wait, round by round of the leases, until `condition` holds."""
    async with leases.rounds:
        await asyncio.wait_for(leases.rounds.wait_for(condition), within)


async def lease_rows(url: str) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(url)
    try:
        return list(await connection.fetch("SELECT * FROM shard_leases ORDER BY shard"))
    finally:
        await connection.close()


async def test_a_lone_replica_takes_every_shard(postgres_url: str) -> None:
    async with replica(postgres_url, "a") as (leases, _store):
        assert leases.held() == set(range(SHARDS))
        rows = await lease_rows(postgres_url)
        assert [row["shard"] for row in rows] == list(range(SHARDS))
        assert {row["owner"] for row in rows} == {leases.instance_id}
        assert {row["epoch"] for row in rows} == {1}


async def test_a_joining_replica_gets_half_and_a_leaving_one_hands_its_half_back(
    postgres_url: str,
) -> None:
    async with replica(postgres_url, "a") as (a, _):
        async with replica(postgres_url, "b") as (b, _):
            await settles(b, lambda: len(b.held()) == SHARDS // 2)
            await settles(a, lambda: len(a.held()) == SHARDS // 2)
            assert a.held().isdisjoint(b.held())
            # A clean stop hands the leases back: no waiting for them to expire.
            await b.stop()
            await b.release_all()
            await settles(a, lambda: len(a.held()) == SHARDS, within=LEASE * 0.9)
        rows = await lease_rows(postgres_url)
        assert {row["owner"] for row in rows} == {a.instance_id}
        # Every takeover bumped the epoch: the shards that went to b and back are at 3.
        assert sorted(row["epoch"] for row in rows) == [1] * (SHARDS // 2) + [3] * (SHARDS // 2)


async def test_the_leases_of_a_replica_that_stopped_renewing_are_taken_once_expired(
    postgres_url: str,
) -> None:
    async with replica(postgres_url, "a") as (a, _):
        await a.stop()  # a hangs: its leases run out on their own
        async with replica(postgres_url, "b") as (b, _):
            await settles(b, lambda: len(b.held()) == SHARDS)


async def test_a_write_of_a_shard_taken_over_commits_nothing(postgres_url: str) -> None:
    async with replica(postgres_url, "a") as (leases, store):
        build = build_in({0})
        await store.commit(ChangeSet(new_build=copy.deepcopy(build)))
        # Another replica takes shard 0 over (what its TAKE does), between renewals.
        connection = await asyncpg.connect(postgres_url)
        try:
            await connection.execute(
                "UPDATE shard_leases SET owner = 'other', epoch = epoch + 1 WHERE shard = 0"
            )
        finally:
            await connection.close()
        cancel = cancellation.cancel(build, cancel_info(), STOP_TIMES, T0 + 10).changes
        with pytest.raises(FencedOut):
            await store.commit(cancel)
        stored = await store.get_build(build.build_id)
        assert stored is not None and stored.status is BuildStatus.QUEUED
        assert stored.version == 0  # as submitted: the cancel wrote nothing
        # The fence told the leases: shard 0 is not this replica's any more.
        assert 0 not in leases.held() and not leases.owns(build.build_id)
        # Builds of the shards still held are written as before.
        other = build_in({1})
        await store.commit(ChangeSet(new_build=other))
        assert await store.get_build(other.build_id) is not None


async def test_a_batch_writes_the_change_sets_of_held_shards_and_refuses_the_rest(
    postgres_url: str,
) -> None:
    async with replica(postgres_url, "a") as (_leases, store):
        kept, lost = build_in({1}), build_in({2})
        for build in (kept, lost):
            await store.commit(ChangeSet(new_build=copy.deepcopy(build)))
        connection = await asyncpg.connect(postgres_url)
        try:
            await connection.execute(
                "UPDATE shard_leases SET owner = 'other', epoch = epoch + 1 WHERE shard = 2"
            )
        finally:
            await connection.close()
        changes = [
            cancellation.cancel(build, cancel_info(), STOP_TIMES, T0 + 10).changes
            for build in (kept, lost)
        ]
        outcomes = await store.commit_all(changes)
        assert outcomes[0] is None and isinstance(outcomes[1], FencedOut)
        stored_kept = await store.get_build(kept.build_id)
        stored_lost = await store.get_build(lost.build_id)
        assert stored_kept is not None and stored_kept.status is BuildStatus.CANCELED
        assert stored_lost is not None and stored_lost.status is BuildStatus.QUEUED


def test_replicas_need_postgresql(tmp_path: Path) -> None:
    with pytest.raises(StoreUrlError) as raised:
        build_store(None, tmp_path / "b.sqlite3", fence=ShardLeases(SHARDS, LEASE, "a"))
    assert "--replicas on needs a PostgreSQL store" in str(raised.value)


def test_the_shard_of_a_build_is_stable_across_processes() -> None:
    # crc32, not Python's per-process salted hash(): every replica computes the same.
    # A pinned value: a change of the hash would move every build to another owner.
    assert shard_of("b018bcfe5680012345678", 64) == 23
    assert shard_of("b018bcfe5680012345678", 1) == 0
