"""The audit log: batched write-behind, retries on store errors, and the start-up
sweep that makes a record survive a writer that never got to write it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from buildcontrol_server.domain.model import Build, CancelRecord, ChangeSet
from buildcontrol_server.effects.audit import AuditLog, record_of
from buildcontrol_server.store.errors import StoreWriteError
from buildcontrol_server.store.sqlite import SqliteStore

from tests.support.store_samples import canceled, commit_canceled

from .samples import sample, sample_record

WRITTEN = "buildcontrol_audit_records_written_total"
SWEPT = "buildcontrol_audit_records_swept_total"
FAILURES = "buildcontrol_audit_write_failures_total"
# Retries are exercised, not waited for.
FAST = {"retry_base": 0.001, "retry_cap": 0.005}


class FlakyStore:
    """A store whose first `failures` commits and `read_failures` sweep reads fail."""

    def __init__(self, store: SqliteStore, failures: int = 0, read_failures: int = 0) -> None:
        self.store = store
        self.failures = failures
        self.read_failures = read_failures
        self.failed = 0

    async def commit(self, changes: ChangeSet) -> None:
        if self.failures > 0:
            self.failures -= 1
            self.failed += 1
            raise StoreWriteError("disk I/O error (injected)")
        await self.store.commit(changes)

    async def canceled_without_audit(
        self, limit: int, after_build_id: str | None = None
    ) -> list[Build]:
        if self.read_failures > 0:
            self.read_failures -= 1
            self.failed += 1
            raise StoreWriteError("database is locked (injected)")
        return await self.store.canceled_without_audit(limit, after_build_id)


class StuckStore:
    """Audit commits never finish: the writer is stuck when the process goes down."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self.entered = asyncio.Event()

    async def commit(self, changes: ChangeSet) -> None:
        self.entered.set()
        await asyncio.Event().wait()

    async def canceled_without_audit(
        self, limit: int, after_build_id: str | None = None
    ) -> list[Build]:
        return await self.store.canceled_without_audit(limit, after_build_id)


async def flushed(log: AuditLog) -> None:
    await asyncio.wait_for(log.flush(), 5.0)


async def test_records_are_written_in_batches(memory_store: SqliteStore) -> None:
    log = AuditLog(memory_store, batch=100)
    records = [sample_record(n) for n in range(250)]
    for record in records:  # queued before the writer starts: batches are full
        log.record(record)
    assert sample("buildcontrol_audit_queue_depth_records") == 250
    stats = memory_store.stats
    commits, rows, written = stats.commits, stats.rows, sample(WRITTEN)

    await log.start()
    await flushed(log)

    assert stats.commits - commits == 3  # 100 + 100 + 50
    assert stats.rows - rows == 250
    assert sample(WRITTEN) - written == 250
    assert sample("buildcontrol_audit_queue_depth_records") == 0
    assert log.pending == 0
    assert await memory_store.audit_records() == records
    await log.stop(timeout=1.0)


async def test_stop_writes_what_is_queued(memory_store: SqliteStore) -> None:
    log = AuditLog(memory_store)
    await log.start()
    records = [sample_record(n) for n in range(20)]
    for record in records:
        log.record(record)

    await log.stop(timeout=5.0)

    assert log.pending == 0
    assert await memory_store.audit_records() == records


async def test_store_errors_are_retried_until_every_record_is_written(
    memory_store: SqliteStore,
) -> None:
    flaky = FlakyStore(memory_store, failures=3)
    log = AuditLog(flaky, batch=4, **FAST)
    failures = sample(FAILURES)
    await log.start()
    records = [sample_record(n) for n in range(10)]

    for record in records:
        log.record(record)
    await flushed(log)

    assert flaky.failed == 3
    assert sample(FAILURES) - failures == 3
    assert await memory_store.audit_records() == records
    await log.stop(timeout=1.0)


async def test_sweep_writes_records_of_canceled_builds_without_one(
    memory_store: SqliteStore,
) -> None:
    builds = await commit_canceled(memory_store, 5)
    already = CancelRecord.of(builds[0])
    await memory_store.commit(ChangeSet(audit=[already]))
    flaky = FlakyStore(memory_store, failures=1, read_failures=2)
    swept = sample(SWEPT)

    log = AuditLog(flaky, batch=2, **FAST)
    await asyncio.wait_for(log.start(), 5.0)

    assert await memory_store.audit_records() == [CancelRecord.of(b) for b in builds]
    assert sample(SWEPT) - swept == 4
    assert flaky.failed == 3
    await log.stop(timeout=1.0)


async def test_records_left_by_a_stopped_writer_are_swept_on_the_next_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = str(tmp_path / "audit.sqlite")
    async with SqliteStore(path) as store:
        stuck = StuckStore(store)
        first = AuditLog(stuck)
        await first.start()  # nothing to sweep yet
        builds = await commit_canceled(store, 5)
        for build in builds:  # as the actors do: after the CANCELED commit
            first.record(CancelRecord.of(build))
        await asyncio.wait_for(stuck.entered.wait(), 5.0)

        await first.stop(timeout=0.05)

        assert first.pending == 5
        assert await store.audit_records() == []
        assert "5 records unwritten" in caplog.text
    swept = sample(SWEPT)

    async with SqliteStore(path) as reopened:
        second = AuditLog(reopened)
        await second.start()
        assert await reopened.audit_records() == [CancelRecord.of(b) for b in builds]
        await second.stop(timeout=1.0)
    assert sample(SWEPT) - swept == 5


async def test_a_record_both_queued_and_swept_is_stored_once(memory_store: SqliteStore) -> None:
    [build] = await commit_canceled(memory_store, 1)
    log = AuditLog(memory_store)
    log.record(CancelRecord.of(build))

    await log.start()
    await flushed(log)

    assert await memory_store.audit_records() == [CancelRecord.of(build)]
    await log.stop(timeout=1.0)


def test_canceled_build_without_cancel_details_still_gets_a_record() -> None:
    build, _ = canceled()
    build.cancel, build.finished_at = None, None

    record = record_of(build)

    assert (record.build_id, record.reason, record.requested_by) == (
        build.build_id,
        "(not recorded)",
        "",
    )
    assert record.finished_at == record.requested_at == build.created_at
    assert len(record.jobs) == len(build.jobs())
