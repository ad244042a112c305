"""Schema v3 in the store contract, on every backend: the new build, job and step
columns, the cancel audit rows, and the query behind the audit's start-up sweep."""

from __future__ import annotations

import copy
import sqlite3
import time
from dataclasses import replace

import pytest
from buildcontrol_server.domain import cancellation
from buildcontrol_server.domain.errors import VersionConflict
from buildcontrol_server.domain.model import CancelRecord, ChangeSet
from buildcontrol_server.store import reads
from buildcontrol_server.store.audit_records import record_from_json, record_to_json
from buildcontrol_server.store.base import BuildStore
from buildcontrol_server.store.sqlite import SqliteStore

from tests.support.store_samples import (
    STOP_TIMES,
    T0,
    cancel_info,
    canceled,
    commit_canceled,
    start_first_job,
    submitted,
    wide_spec,
)


async def store_canceled(store: BuildStore, count: int, start: float = T0) -> list[CancelRecord]:
    """`count` CANCELED builds, stored, without audit rows; their records."""
    return [CancelRecord.of(build) for build in await commit_canceled(store, count, start)]


async def test_v3_fields_round_trip(store: BuildStore) -> None:
    build, changes = submitted(wide_spec(jobs=2, steps=2))
    build.concurrency_group = "deploy-prod"
    build.cancel_in_progress = True
    cleanup = build.stages[0].jobs[1]
    cleanup.run_on_cancel = True
    cleanup.steps[1].run_on_cancel = True
    build.stages[0].jobs[0].timeout = 90.5
    await store.commit(changes)

    loaded = await store.get_build(build.build_id)
    [unfinished] = await store.load_unfinished()
    [listed] = await store.list_builds(limit=5)

    assert loaded == build == unfinished
    assert loaded is not None
    assert (loaded.concurrency_group, loaded.cancel_in_progress) == ("deploy-prod", True)
    assert [j.run_on_cancel for j in loaded.jobs()] == [False, True]
    assert [j.timeout for j in loaded.jobs()] == [90.5, None]
    assert [s.run_on_cancel for s in loaded.jobs()[1].steps] == [False, True]
    assert (listed.concurrency_group, listed.cancel_in_progress) == ("deploy-prod", True)


async def test_updates_leave_v3_fields_as_submitted(store: BuildStore) -> None:
    build, changes = submitted(wide_spec(jobs=1, steps=2))
    build.concurrency_group = "g"
    build.stages[0].jobs[0].run_on_cancel = True
    build.stages[0].jobs[0].timeout = 12.0
    build.stages[0].jobs[0].steps[0].run_on_cancel = True
    await store.commit(changes)
    await store.commit(start_first_job(build))

    assert await store.get_build(build.build_id) == build


async def test_change_set_of_only_audit_records_is_one_commit(store: BuildStore) -> None:
    first, second = (CancelRecord.of(canceled(now=T0 + n)[0]) for n in range(2))
    before = store.stats.commits

    await store.commit(ChangeSet(audit=[second, first]))

    assert store.stats.commits == before + 1
    assert await store.audit_records() == [first, second]  # ordered by build id
    assert await store.audit_records([second.build_id]) == [second]
    assert await store.audit_records([second.build_id, "b-unknown"]) == [second]
    assert await store.audit_records([]) == []


async def test_second_record_of_a_build_is_ignored(store: BuildStore) -> None:
    record = CancelRecord.of(canceled()[0])
    await store.commit(ChangeSet(audit=[record]))

    results = await store.commit_all(
        [ChangeSet(audit=[replace(record, reason="written twice")]), ChangeSet(audit=[record])]
    )

    assert results == [None, None]
    assert await store.audit_records() == [record]


async def test_audit_commits_in_the_transaction_of_its_change_set(
    store: BuildStore, backend: str
) -> None:
    build, insert = submitted()
    await store.commit(insert)
    fx = cancellation.cancel(build, cancel_info(), STOP_TIMES, T0 + 1)
    fx.changes.audit.append(CancelRecord.of(build))
    before, trips = store.stats.commits, store.stats.round_trips

    await store.commit(fx.changes)

    assert store.stats.commits == before + 1
    if backend == "postgresql":
        # Updates and the record in one self-checking statement: one round trip.
        assert store.stats.round_trips == trips + 1
    assert await store.audit_records() == [CancelRecord.of(build)]


async def test_audit_rows_of_a_rejected_change_set_are_not_written(store: BuildStore) -> None:
    build, insert = submitted()
    await store.commit(insert)
    stale = copy.deepcopy(build)
    await store.commit(start_first_job(build))
    late = cancellation.cancel(stale, cancel_info(), STOP_TIMES, T0 + 2)
    late.changes.audit.append(CancelRecord.of(stale))

    with pytest.raises(VersionConflict):
        await store.commit(late.changes)

    assert await store.audit_records() == []


async def test_canceled_without_audit_lists_only_unaudited_canceled_builds(
    store: BuildStore,
) -> None:
    _, insert_queued = submitted(now=T0 + 100)
    running, insert_running = submitted(now=T0 + 101)
    await store.commit_all([insert_queued, insert_running])
    await store.commit(start_first_job(running))
    audited, *rest = await store_canceled(store, 4)
    await store.commit(ChangeSet(audit=[audited]))

    found = await store.canceled_without_audit(limit=10)
    first_two = await store.canceled_without_audit(limit=2)

    assert [CancelRecord.of(b) for b in found] == rest  # complete, oldest first
    assert all(len(job.steps) == 2 for b in found for job in b.jobs())
    assert found == [await store.get_build(r.build_id) for r in rest]
    assert [b.build_id for b in first_two] == [r.build_id for r in rest[:2]]
    next_page = await store.canceled_without_audit(limit=10, after_build_id=rest[1].build_id)
    assert [CancelRecord.of(b) for b in next_page] == rest[2:]
    await store.commit(ChangeSet(audit=rest))
    assert await store.canceled_without_audit(limit=10) == []
    with pytest.raises(ValueError, match="limit"):
        await store.canceled_without_audit(limit=0)


async def test_reads_of_many_builds_span_several_in_lists(
    store: BuildStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reads, "IN_CHUNK", 2)
    records = await store_canceled(store, 5)

    found = await store.canceled_without_audit(limit=5)
    await store.commit(ChangeSet(audit=records))

    assert [CancelRecord.of(b) for b in found] == records
    ids = [r.build_id for r in reversed(records)]
    assert await store.audit_records(ids) == records


def test_record_json_round_trips_exactly() -> None:
    build, _ = canceled(wide_spec(3, 1))
    record = replace(CancelRecord.of(build), requested_at=T0 + 0.1, grace_period=1 / 3)

    assert record_from_json(record_to_json(record)) == record


async def test_audit_row_keeps_times_and_write_time(db_file: str) -> None:
    async with SqliteStore(db_file) as store:
        [record] = await store_canceled(store, 1)
        before = time.time()
        await store.commit(ChangeSet(audit=[record]))
        after = time.time()

    with sqlite3.connect(db_file) as connection:
        row = connection.execute(
            "SELECT build_id, requested_at, finished_at, written_at, record FROM cancel_audit"
        ).fetchone()
    connection.close()
    assert row[:3] == (record.build_id, record.requested_at, record.finished_at)
    assert before - 0.01 <= row[3] <= after + 0.01
    assert record_from_json(row[4]) == record
