"""The store contract, run against every backend (`backend` fixture: SQLite file,
SQLite memory, PostgreSQL)."""

from __future__ import annotations

import asyncio
import copy

import pytest
from buildcontrol_server.domain import cancellation, lifecycle
from buildcontrol_server.domain.errors import VersionConflict
from buildcontrol_server.domain.model import ChangeSet
from buildcontrol_server.domain.states import BuildStatus, JobOutcome, JobStatus, StepStatus
from buildcontrol_server.store.base import BuildStore
from buildcontrol_server.store.errors import StoreClosedError, StoreWriteError
from prometheus_client import REGISTRY

from tests.store.backends import make_store
from tests.support.store_samples import (
    STOP_TIMES,
    T0,
    cancel_info,
    start_first_job,
    submitted,
    wide_spec,
)


def exported(metric: str) -> float:
    return REGISTRY.get_sample_value(metric) or 0.0


def commits_and_writes(store: BuildStore) -> tuple[int, int]:
    return store.stats.commits, store.stats.writes


async def test_new_build_round_trips_every_field(store: BuildStore) -> None:
    build, changes = submitted()
    await store.commit(changes)

    loaded = await store.get_build(build.build_id)

    assert loaded == build
    assert loaded is not None
    compile_job = loaded.stages[0].jobs[0]
    assert compile_job.labels == {"os": "linux", "arch": "amd64"}
    assert compile_job.env == {"CC": "clang", "EMPTY": ""}
    assert [step.name for step in compile_job.steps] == ["deps", "make -j4"]
    assert [stage.name for stage in loaded.stages] == ["build", "test"]
    assert loaded.stages[1].jobs[0].stage_index == 1


async def test_get_build_of_unknown_id_is_none(store: BuildStore) -> None:
    assert await store.get_build("b0000000000000000000a") is None


async def test_a_read_cancelled_while_it_begins_leaves_later_reads_working(
    store: BuildStore,
) -> None:
    build, changes = submitted()
    await store.commit(changes)
    for _ in range(3):
        reading = asyncio.create_task(store.get_build(build.build_id))
        await asyncio.sleep(0)  # it now waits for its BEGIN, which runs regardless
        reading.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reading
    # Before: the BEGIN of the cancelled read stayed open, and every later read failed
    # with "cannot start a transaction within a transaction" until a restart.
    assert await store.get_build(build.build_id) == build


async def test_updates_write_every_mutable_field_with_versions(store: BuildStore) -> None:
    build, changes = submitted()
    await store.commit(changes)
    await store.commit(start_first_job(build))
    job = build.stages[0].jobs[0]
    await store.commit(lifecycle.step_finished(build, job.job_id, "agent-1", 0, 0, T0 + 2).changes)
    await store.commit(cancellation.cancel(build, cancel_info(), STOP_TIMES, T0 + 3).changes)
    await store.commit(
        lifecycle.job_stopped(build, job.job_id, "agent-1", JobOutcome.KILLED, -9, T0 + 4).changes
    )

    loaded = await store.get_build(build.build_id)

    assert loaded == build  # status, cancel info, outcome, exit codes, finished_at, versions
    assert loaded is not None
    assert loaded.status is BuildStatus.CANCELED
    assert loaded.cancel == cancel_info()
    assert loaded.finished_at == T0 + 4
    stopped = loaded.stages[0].jobs[0]
    assert (stopped.status, stopped.outcome, stopped.exit_code) == (
        JobStatus.CANCELED,
        JobOutcome.KILLED,
        -9,
    )
    assert stopped.agent_id == "agent-1"
    assert [s.status for s in stopped.steps] == [StepStatus.SUCCEEDED, StepStatus.CANCELED]
    assert stopped.steps[0].exit_code == 0
    assert loaded.stages[0].jobs[1].outcome is JobOutcome.NEVER_STARTED
    assert loaded.version == build.version > 1


async def test_stale_update_raises_version_conflict_and_writes_nothing(
    store: BuildStore,
) -> None:
    build, changes = submitted()
    await store.commit(changes)
    stale = copy.deepcopy(build)
    await store.commit(start_first_job(build))

    with pytest.raises(VersionConflict, match=rf"build {build.build_id} .*expected version 0"):
        await store.commit(cancellation.cancel(stale, cancel_info(), STOP_TIMES, T0 + 5).changes)

    assert await store.get_build(build.build_id) == build
    assert store.stats.failed_writes == 1


async def test_conflict_in_a_batch_fails_only_its_change_set(store: BuildStore) -> None:
    build, changes = submitted()
    other, other_changes = submitted(now=T0 + 1)
    await store.commit_all([changes, other_changes])
    await store.commit(start_first_job(build))
    stale = copy.deepcopy(build)
    running = build.stages[0].jobs[0]
    # Good: the agent finishes the running step. Bad: a cancel computed from a copy that
    # does not know about it. Its build row still matches, its step row does not: the
    # whole bad change set must vanish, not just the row that missed.
    good = lifecycle.step_finished(build, running.job_id, "agent-1", 0, 0, T0 + 2).changes
    bad = cancellation.cancel(stale, cancel_info(), STOP_TIMES, T0 + 2).changes
    unrelated = cancellation.cancel(other, cancel_info(), STOP_TIMES, T0 + 2).changes
    before = commits_and_writes(store)

    results = await store.commit_all([good, bad, unrelated])

    assert results[0] is None and results[2] is None
    assert isinstance(results[1], VersionConflict)
    assert f"step {running.job_id}#0" in str(results[1])
    assert commits_and_writes(store) == (before[0] + 1, before[1] + 2)
    assert store.stats.isolated_batches == 1  # merged attempt missed, replayed one by one
    assert await store.get_build(build.build_id) == build  # nothing of the cancel
    assert await store.get_build(other.build_id) == other
    loaded = await store.get_build(build.build_id)
    assert loaded is not None and loaded.status is BuildStatus.RUNNING
    assert loaded.stages[0].jobs[1].status is JobStatus.PENDING


async def test_sql_error_in_a_batch_fails_only_its_change_set(store: BuildStore) -> None:
    build, changes = submitted()
    await store.commit(changes)
    newcomer, newcomer_changes = submitted(now=T0 + 1)
    duplicate = ChangeSet(new_build=copy.deepcopy(build))

    results = await store.commit_all([newcomer_changes, duplicate])

    assert results[0] is None
    assert isinstance(results[1], StoreWriteError)
    # SQLite: "UNIQUE constraint failed"; PostgreSQL: "violates unique constraint".
    assert "unique constraint" in str(results[1]).lower()
    assert await store.get_build(newcomer.build_id) == newcomer


async def test_200_concurrent_commits_share_few_transactions(store: BuildStore) -> None:
    submissions = [submitted(now=T0 + n) for n in range(200)]
    before = commits_and_writes(store)

    await asyncio.gather(*(store.commit(changes) for _, changes in submissions))

    commits, writes = commits_and_writes(store)
    assert writes - before[1] == 200
    assert commits - before[0] <= 50
    listed = await store.list_builds(limit=500)
    assert {b.build_id for b in listed} == {build.build_id for build, _ in submissions}

    # The same for 200 concurrent cancels from 200 tasks.
    builds = [build for build, _ in submissions]
    before = commits_and_writes(store)

    async def cancel(index: int) -> None:
        fx = cancellation.cancel(builds[index], cancel_info(), STOP_TIMES, T0 + 500)
        await store.commit(fx.changes)

    await asyncio.gather(*(asyncio.create_task(cancel(n)) for n in range(200)))

    commits, writes = commits_and_writes(store)
    assert writes - before[1] == 200
    assert commits - before[0] <= 50
    assert await store.load_unfinished() == []
    for build in builds[::20]:
        assert await store.get_build(build.build_id) == build


async def test_cancel_of_20_jobs_with_5_steps_is_one_commit(
    store: BuildStore, backend: str
) -> None:
    build, changes = submitted(wide_spec(jobs=20, steps=5))
    await store.commit(changes)
    for n in range(8):  # some jobs on agents, the rest never started
        await store.commit(start_first_job(build, agent_id=f"agent-{n}", now=T0 + 1 + n))
    before_commits, before_statements = store.stats.commits, store.stats.statements

    fx = cancellation.cancel(build, cancel_info(), STOP_TIMES, T0 + 20)
    await store.commit(fx.changes)

    assert store.stats.commits == before_commits + 1
    assert store.stats.batch_sizes[-1] == 1
    # SQLite: one executemany per table (the build, its 20 jobs, its 100 steps);
    # PostgreSQL: one UPDATE of all three (one round trip).
    assert store.stats.statements == before_statements + (1 if backend == "postgresql" else 3)
    assert len(fx.changes.jobs) == 20 and len(fx.changes.steps) == 100
    loaded = await store.get_build(build.build_id)
    assert loaded == build
    assert loaded is not None and loaded.status is BuildStatus.CANCELING


async def test_a_batch_of_concurrent_cancels_is_one_round_trip_on_postgresql(
    store: BuildStore, backend: str
) -> None:
    builds = [submitted(now=T0 + n) for n in range(20)]
    await store.commit_all([changes for _, changes in builds])
    for build, _ in builds:
        await store.commit(start_first_job(build))
    before_commits, before_trips = store.stats.commits, store.stats.round_trips

    results = await store.commit_all(
        [
            cancellation.cancel(build, cancel_info(), STOP_TIMES, T0 + 50).changes
            for build, _ in builds
        ]
    )

    assert results == [None] * 20
    assert store.stats.commits == before_commits + 1
    assert store.stats.isolated_batches == 0
    if backend == "postgresql":
        # One self-checking UPDATE of builds, jobs and steps, in autocommit: one round
        # trip for the batch, not BEGIN, SAVEPOINT, UPDATE, RELEASE, COMMIT.
        assert store.stats.round_trips == before_trips + 1
    for build, _ in builds:
        assert await store.get_build(build.build_id) == build


async def test_commit_all_puts_every_change_set_in_one_transaction(store: BuildStore) -> None:
    builds = [submitted(now=T0 + n) for n in range(50)]
    await store.commit_all([changes for _, changes in builds])
    before = store.stats.commits
    exported_before = exported("buildcontrol_store_commits_total")
    writes_before = exported("buildcontrol_store_writes_total")

    results = await store.commit_all(
        [
            cancellation.cancel(build, cancel_info(), STOP_TIMES, T0 + 99).changes
            for build, _ in builds
        ]
    )

    assert results == [None] * 50
    assert store.stats.commits == before + 1
    assert store.stats.batch_sizes[-1] == 50
    assert store.stats.isolated_batches == 0
    assert exported("buildcontrol_store_commits_total") == exported_before + 1
    assert exported("buildcontrol_store_writes_total") == writes_before + 50


async def test_update_queued_before_its_build_is_inserted_fails_alone(
    store: BuildStore,
) -> None:
    build, insert = submitted()
    too_early = cancellation.cancel(copy.deepcopy(build), cancel_info(), STOP_TIMES, T0 + 1).changes

    results = await store.commit_all([too_early, insert])

    assert isinstance(results[0], VersionConflict)
    assert f"build {build.build_id}" in str(results[0]) and "does not exist" in str(results[0])
    assert results[1] is None
    assert await store.get_build(build.build_id) == build


async def test_empty_change_set_needs_no_transaction(store: BuildStore) -> None:
    before = store.stats.commits
    await store.commit(ChangeSet())
    assert await store.commit_all([ChangeSet(), ChangeSet()]) == [None, None]
    assert store.stats.commits == before


async def test_list_builds_pages_newest_first_with_pipeline_filter(store: BuildStore) -> None:
    web = [submitted(now=T0 + 2 * n)[0] for n in range(5)]
    api = [submitted(wide_spec(1, 1, pipeline="api"), now=T0 + 2 * n + 1)[0] for n in range(5)]
    await store.commit_all([ChangeSet(new_build=b) for b in web + api])
    newest_first = sorted(web + api, key=lambda b: b.build_id, reverse=True)

    first = await store.list_builds(limit=4)
    second = await store.list_builds(limit=4, before_build_id=first[-1].build_id)
    last = await store.list_builds(limit=4, before_build_id=second[-1].build_id)

    assert [b.build_id for b in first + second + last] == [b.build_id for b in newest_first]
    assert len(last) == 2
    assert all(b.stages == [] for b in first)
    assert first[0].pipeline == newest_first[0].pipeline
    assert first[0].status is BuildStatus.QUEUED and first[0].created_at == T0 + 9

    api_page = await store.list_builds(limit=3, pipeline="api")
    api_rest = await store.list_builds(
        limit=3, pipeline="api", before_build_id=api_page[-1].build_id
    )
    assert [b.build_id for b in api_page + api_rest] == [
        b.build_id for b in sorted(api, key=lambda b: b.build_id, reverse=True)
    ]
    assert await store.list_builds(limit=3, pipeline="nope") == []
    with pytest.raises(ValueError, match="limit"):
        await store.list_builds(limit=0)


async def test_load_unfinished_returns_every_live_build_complete(store: BuildStore) -> None:
    queued, running, canceling, canceled, succeeded = (
        submitted(wide_spec(2, 2), now=T0 + n)[0] for n in range(5)
    )
    await store.commit_all(
        [ChangeSet(new_build=b) for b in (queued, running, canceling, canceled, succeeded)]
    )
    await store.commit(start_first_job(running))
    await store.commit(start_first_job(canceling))
    await store.commit(cancellation.cancel(canceling, cancel_info(), STOP_TIMES, T0 + 9).changes)
    await store.commit(cancellation.cancel(canceled, cancel_info(), STOP_TIMES, T0 + 9).changes)
    for job in succeeded.jobs():
        await store.commit(lifecycle.assign_job(succeeded, job.job_id, "a", T0 + 9).changes)
        fx = lifecycle.job_finished(succeeded, job.job_id, "a", True, 0, T0 + 10)
        await store.commit(fx.changes)
    assert succeeded.status is BuildStatus.SUCCEEDED

    unfinished = await store.load_unfinished()

    assert sorted(unfinished, key=lambda b: b.build_id) == [queued, running, canceling]
    assert all(len(job.steps) == 2 for b in unfinished for job in b.jobs())


async def test_close_writes_everything_queued_first(store_path: str) -> None:
    store = make_store(store_path)
    await store.open()
    submissions = [submitted(now=T0 + n) for n in range(30)]
    # Tasks start in creation order: every commit is queued before close() runs.
    commits = [asyncio.create_task(store.commit(changes)) for _, changes in submissions]
    closing = asyncio.create_task(store.close())

    await closing

    assert await asyncio.gather(*commits) == [None] * 30
    assert store.stats.writes == 30
    with pytest.raises(StoreClosedError):
        await store.commit(submitted(now=T0 + 99)[1])
    with pytest.raises(StoreClosedError):
        await store.get_build(submissions[0][0].build_id)
    if store_path != ":memory:":
        reopened = make_store(store_path)
        await reopened.open()
        try:
            assert len(await reopened.list_builds(limit=100)) == 30
        finally:
            await reopened.close()


async def test_caller_cancelled_while_waiting_still_gets_its_write(store: BuildStore) -> None:
    build, changes = submitted()
    waiting = asyncio.create_task(store.commit(changes))

    async def cancel_then_commit() -> None:
        # Tasks start in creation order: `waiting` has queued its write by now.
        waiting.cancel()
        await store.commit(submitted(now=T0 + 1)[1])

    await asyncio.create_task(cancel_then_commit())

    assert waiting.cancelled()
    assert await store.get_build(build.build_id) == build


async def test_two_moves_of_one_build_in_one_batch_commit_together_in_order(
    store: BuildStore,
) -> None:
    build, changes = submitted()
    await store.commit(changes)
    # A copy: rows are taken when the write is queued, and the cancel below moves the
    # same objects on (an actor commits before its next move; here both are queued).
    started = copy.deepcopy(start_first_job(build))  # the build moves on once …
    canceled = cancellation.cancel(build, cancel_info(), STOP_TIMES, T0 + 5).changes  # … twice
    before_commits, before_isolated = store.stats.commits, store.stats.isolated_batches

    results = await store.commit_all([started, canceled])

    assert results == [None, None]
    assert store.stats.commits == before_commits + 1
    # Merged as they are (PostgreSQL: one UPDATE per move, in order), not replayed.
    assert store.stats.isolated_batches == before_isolated
    assert await store.get_build(build.build_id) == build


async def test_a_build_read_beside_its_commits_is_always_one_committed_state(
    store: BuildStore,
) -> None:
    """Each read is the build as one commit left it, never the build row of one commit
    with the jobs or steps of another (a cancel changes all three in one commit)."""
    build, changes = submitted(wide_spec(4, 2))
    await store.commit(changes)
    committed = [copy.deepcopy(build)]
    writes = [lambda n=n: start_first_job(build, now=T0 + 1 + n) for n in range(3)]
    writes.append(lambda: cancellation.cancel(build, cancel_info(), STOP_TIMES, T0 + 5).changes)
    for job in build.stages[0].jobs[:3]:
        writes.append(
            lambda job_id=job.job_id: (
                lifecycle.job_stopped(
                    build, job_id, "agent-1", JobOutcome.KILLED, -15, T0 + 6
                ).changes
            )
        )
    reads: list[object] = []
    writing = asyncio.Event()

    async def read_until_written() -> None:
        while not writing.is_set():
            reads.append(await store.get_build(build.build_id))

    readers = [asyncio.create_task(read_until_written()) for _ in range(3)]
    for write in writes:
        await store.commit(write())
        committed.append(copy.deepcopy(build))
        await asyncio.sleep(0)  # let the readers start reads that straddle the next commit
    writing.set()
    await asyncio.gather(*readers)

    assert build.status is BuildStatus.CANCELED
    assert reads, "no read ran beside the commits"
    torn = [read for read in reads if read not in committed]
    assert not torn, f"{len(torn)} of {len(reads)} reads mixed rows of different commits"
