"""How the PostgreSQL writer's updates take their rows (a VALUES list for a few, unnest
arrays for many: postgres_updates.py), and the pool connection it keeps between its
batches (PostgresConnections.held), and what a restart of the database does to both
stores' connections."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import inspect
import re
import subprocess
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest
from buildcontrol_server.domain import cancellation, lifecycle
from buildcontrol_server.domain.errors import VersionConflict
from buildcontrol_server.domain.model import Build
from buildcontrol_server.domain.states import BuildStatus, JobStatus
from buildcontrol_server.logs.postgres import PostgresLogStore
from buildcontrol_server.store import postgres_updates as updates
from buildcontrol_server.store.errors import StoreUnavailable
from buildcontrol_server.store.postgres import PostgresStore

from tests.support.postgres_server import (
    DATABASE,
    HOW_TO_GET,
    PostgresServer,
    fresh_database,
    start_server,
)
from tests.support.store_samples import (
    STOP_TIMES,
    T0,
    cancel_info,
    start_first_job,
    submitted,
    wide_spec,
)

BOUND = updates.VALUES_ROWS_MAX


def statement_of(rows: int, audit: int = 0) -> tuple[str, list[object]]:
    """The checked statement of `rows` rows in each of builds, jobs and steps."""
    tables = [
        (updates.UPDATE_BUILDS, [("x",) * updates.UPDATE_BUILDS.column_count] * rows),
        (updates.UPDATE_JOBS, [("x",) * updates.UPDATE_JOBS.column_count] * rows),
        (updates.UPDATE_STEPS, [("x",) * updates.UPDATE_STEPS.column_count] * rows),
    ]
    return updates.checked(tables, [("b", "{}", 1.0, 2.0)] * audit)


@pytest.mark.parametrize(("rows", "listed"), [(1, True), (BOUND, True), (BOUND + 1, False)])
def test_few_rows_go_in_as_a_values_list_and_many_as_arrays(rows: int, listed: bool) -> None:
    query, arguments = statement_of(rows, audit=rows)

    assert ("VALUES" in query) is listed
    assert ("unnest" in query) is not listed
    # Every parameter is numbered once, the last one (the expected counts) last.
    numbers = sorted({int(n) for n in re.findall(r"\$(\d+)", query)})
    assert numbers == list(range(1, len(arguments) + 1))
    assert arguments[-1] == [rows, rows, rows]


def test_the_longest_values_statement_stays_in_asyncpgs_statement_cache() -> None:
    cacheable = inspect.signature(asyncpg.connect).parameters["max_cacheable_statement_size"]
    query, _ = statement_of(BOUND, audit=BOUND)

    assert len(query.encode()) <= cacheable.default


async def running(store: PostgresStore, jobs: int, now: float) -> Build:
    """A build of `jobs` one-step jobs, each running on an agent of its own."""
    build, changes = submitted(wide_spec(jobs=jobs, steps=1), now)
    await store.commit(changes)
    for n in range(jobs):
        await store.commit(start_first_job(build, agent_id=f"agent-{n}", now=now + 1))
    return build


@pytest.fixture
async def store(postgres_url: str) -> AsyncIterator[PostgresStore]:
    async with PostgresStore(postgres_url) as opened:
        yield opened


@pytest.mark.parametrize("jobs", [1, BOUND, BOUND + 1])
async def test_a_lone_cancel_is_one_round_trip_on_either_side_of_the_bound(
    store: PostgresStore, jobs: int
) -> None:
    build = await running(store, jobs, T0)
    before = store.stats.commits, store.stats.round_trips, store.stats.statements

    fx = cancellation.cancel(build, cancel_info(), STOP_TIMES, T0 + 10)
    await store.commit(fx.changes)

    assert (store.stats.commits, store.stats.round_trips, store.stats.statements) == (
        before[0] + 1,
        before[1] + 1,
        before[2] + 1,
    )
    loaded = await store.get_build(build.build_id)
    assert loaded == build
    assert loaded is not None and loaded.status is BuildStatus.CANCELING
    assert {job.status for job in loaded.jobs()} == {JobStatus.STOPPING}


async def test_one_stale_row_among_a_values_list_writes_none_of_them(
    store: PostgresStore,
) -> None:
    build = await running(store, 3, T0)
    stale = copy.deepcopy(build)
    # The third job's step finishes (its version moves on) before the stale copy is
    # cancelled: one row of the cancel's steps list misses, the other two match.
    third = build.stages[0].jobs[2]
    finished = lifecycle.step_finished(build, third.job_id, "agent-2", 0, 0, T0 + 5)
    await store.commit(finished.changes)
    stored = await store.get_build(build.build_id)

    fx = cancellation.cancel(stale, cancel_info(), STOP_TIMES, T0 + 10)
    with pytest.raises(VersionConflict, match=third.job_id):
        await store.commit(fx.changes)

    assert await store.get_build(build.build_id) == stored
    assert await store.audit_records([build.build_id]) == []


async def test_the_writer_keeps_one_pool_connection_across_its_batches(
    store: PostgresStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    builds = [await running(store, 1, T0 + 100 * n) for n in range(5)]
    taken: list[object] = []
    acquire = asyncpg.Pool.acquire

    def counted(pool: asyncpg.Pool, *args: Any, **kwargs: Any) -> Any:
        taken.append(pool)
        return acquire(pool, *args, **kwargs)

    monkeypatch.setattr(asyncpg.Pool, "acquire", counted)
    for build in builds:
        fx = cancellation.cancel(build, cancel_info(), STOP_TIMES, T0 + 1000)
        await store.commit(fx.changes)
    monkeypatch.undo()

    assert taken == []
    for build in builds:
        assert await store.get_build(build.build_id) == build


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL of this test alone: it is restarted."""
    server = start_server()
    if server is None:
        pytest.skip(HOW_TO_GET)
    try:
        server.psql(f"CREATE DATABASE {DATABASE}")
        yield server
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            server.stop()
        server.remove()


async def test_after_the_database_restarted_the_first_write_gets_a_live_connection(
    own_postgres: PostgresServer,
) -> None:
    async with PostgresStore(fresh_database(own_postgres)) as store:
        seen = {True: asyncio.Event(), False: asyncio.Event()}
        store.watch_availability(lambda available: seen[available].set())
        build = await running(store, 1, T0)  # the writer now keeps a connection

        # Restarted while nobody writes: the kept connection dies unused.
        own_postgres.stop("immediate")
        await asyncio.wait_for(seen[False].wait(), 30)  # the lock's session ended
        own_postgres.start()
        await asyncio.wait_for(seen[True].wait(), 30)

        fx = cancellation.cancel(build, cancel_info(), STOP_TIMES, T0 + 10)
        await store.commit(fx.changes)
        assert await store.get_build(build.build_id) == build


async def test_a_log_append_meeting_a_restart_is_unavailable_and_the_next_one_is_stored(
    own_postgres: PostgresServer,
) -> None:
    url = fresh_database(own_postgres)
    async with PostgresStore(url):  # its migrations make the log tables
        logs = PostgresLogStore(url)
        await logs.open()
        try:
            build, job = "b0123456789abcdef0123", "b0123456789abcdef0123-j0"
            assert await logs.append(build, job, 0, b"before ", False) == 7
            own_postgres.stop("immediate")  # the pool's connection dies unused
            with pytest.raises(StoreUnavailable):  # UNAVAILABLE to the agent, which retries
                await logs.append(build, job, 7, b"lost", False)
            own_postgres.start()
            # The failed append stored nothing; the retry of it is whole.
            assert await logs.append(build, job, 7, b"after", True) == 12
            piece = await logs.read(build, job, 0, 100)
            assert (piece.data, piece.complete) == (b"before after", True)
        finally:
            await logs.close()
