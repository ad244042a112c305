"""The audit's start-up sweep: the records of CANCELED builds that have none, in pages,
retried on store errors. (A cancel's own record commits with its CANCELED write:
tests/store/test_store_audit.py, tests/rpc/test_audit_rpc.py.)"""

from __future__ import annotations

import asyncio
from dataclasses import replace

from buildcontrol_server.domain.model import Build, CancelRecord, ChangeSet
from buildcontrol_server.effects.audit import AuditLog, record_of
from buildcontrol_server.store.errors import StoreWriteError
from buildcontrol_server.store.sqlite import SqliteStore

from tests.support.store_samples import canceled, commit_canceled

from .samples import sample

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


async def test_the_sweep_writes_in_pages_of_the_batch(memory_store: SqliteStore) -> None:
    builds = await commit_canceled(memory_store, 250)
    stats = memory_store.stats
    commits, rows, written = stats.commits, stats.rows, sample(WRITTEN)

    await AuditLog(memory_store, batch=100).start()

    assert stats.commits - commits == 3  # 100 + 100 + 50
    assert stats.rows - rows == 250
    assert sample(WRITTEN) - written == 250
    assert await memory_store.audit_records() == [CancelRecord.of(b) for b in builds]


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


async def test_a_build_whose_record_committed_with_it_is_not_swept_again(
    memory_store: SqliteStore,
) -> None:
    [build] = await commit_canceled(memory_store, 1)
    await memory_store.commit(ChangeSet(audit=[replace(CancelRecord.of(build), reason="first")]))
    swept = sample(SWEPT)

    await AuditLog(memory_store).start()

    assert [r.reason for r in await memory_store.audit_records()] == ["first"]
    assert sample(SWEPT) == swept


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
