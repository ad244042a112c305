"""A purge on SQLite shares the writer's connection with the group-commit writer: its
transaction commits after the chunk under way as soon as a commit waits for the
connection, and it checkpoints the WAL itself, so that no commit runs SQLite's
auto-checkpoint during a purge."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest
from buildcontrol_server.domain.retention import Cutoffs
from buildcontrol_server.store import retention_sqlite
from buildcontrol_server.store.retention import CHUNK_ROWS, Retention
from buildcontrol_server.store.retention_sqlite import CHECKPOINT_EVERY, SqliteRetentionSession
from buildcontrol_server.store.sqlite import SqliteStore
from buildcontrol_server.store.writer_lock import WriterLock

from tests.store.retention_samples import NOW, finished
from tests.support.store_samples import T0

# A finished sample build is 7 rows (itself, 2 jobs, 4 steps).
BUILD_ROWS = 7
PER_CHUNK = CHUNK_ROWS // BUILD_ROWS


async def test_the_writer_lock_says_while_a_task_waits_for_it() -> None:
    lock = WriterLock()
    blocked = asyncio.Event()

    async def wait_for_the_lock() -> None:
        blocked.set()  # acquire() below blocks in this same step
        async with lock:
            pass

    async with lock:
        assert not lock.wanted.is_set()
        waiter = asyncio.create_task(wait_for_the_lock())
        await blocked.wait()
        assert lock.wanted.is_set()
    await waiter
    assert not lock.wanted.is_set()
    async with lock:  # nobody waits: an uncontended lock never says so
        assert not lock.wanted.is_set()


async def test_a_purge_transaction_commits_after_one_chunk_while_a_commit_waits(
    db_file: str,
) -> None:
    async with SqliteStore(db_file) as store:
        builds = [await finished(store, T0 + n) for n in range(PER_CHUNK + 5)]
        commit_waits = threading.Event()
        commit_waits.set()  # as while a group-commit batch waits for the connection
        retention = Retention(
            SqliteRetentionSession(
                store.path, store._snapshot, store._between_batches, commit_waits
            )
        )
        cutoffs = Cutoffs(builds_before=NOW)

        first = await retention.purge_builds_batch(cutoffs, max_rows=1_000)
        commit_waits.clear()
        rest = await retention.purge_builds_batch(cutoffs, max_rows=1_000)

        assert first is not None and rest is not None
        assert first.build_ids == tuple(b.build_id for b in builds[:PER_CHUNK])
        assert first.rows == {
            "steps": 4 * PER_CHUNK,
            "jobs": 2 * PER_CHUNK,
            "submit_requests": 0,
            "builds": PER_CHUNK,
        }
        # The chunk not written in the first transaction stayed whole for the second.
        assert rest.build_ids == tuple(b.build_id for b in builds[PER_CHUNK:])
        assert rest.total == 5 * BUILD_ROWS
        assert (await store.retention.sizes()).rows["builds"] == 0


async def test_without_a_waiting_commit_a_purge_transaction_writes_every_chunk(
    db_file: str,
) -> None:
    async with SqliteStore(db_file) as store:
        for n in range(3 * PER_CHUNK):
            await finished(store, T0 + n)
        batch = await store.retention.purge_builds_batch(Cutoffs(builds_before=NOW), 1_000)
        assert batch is not None and len(batch.build_ids) == 3 * PER_CHUNK
        assert await store.retention.purge_builds_batch(Cutoffs(builds_before=NOW)) is None


def wal_frames(path: str) -> int:
    """Frames in the WAL since it last restarted (a passive checkpoint reports them)."""
    connection = sqlite3.connect(path)
    try:
        [(_, frames, _)] = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    finally:
        connection.close()
    return int(frames)


async def frames_left_by_a_purge(path: str, transactions: int) -> int:
    """WAL frames left after `transactions` purge transactions (one build each) on a
    writer whose auto-checkpoint is off: only the purge's own checkpoints restart it."""
    async with SqliteStore(path) as store:
        await store._write_connection.execute("PRAGMA wal_autocheckpoint = 0")  # type: ignore[union-attr]
        for n in range(transactions):
            await finished(store, T0 + n)
        wal_frames(path)  # all checkpointed: the WAL restarts at the next write
        batches = 0
        while await store.retention.purge_builds_batch(Cutoffs(builds_before=NOW), BUILD_ROWS):
            batches += 1
        assert batches == transactions
        return wal_frames(path)


async def test_a_purge_checkpoints_the_wal_itself_so_no_commit_has_to(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    transactions = 6 * CHECKPOINT_EVERY
    left = await frames_left_by_a_purge(str(tmp_path / "a.sqlite"), transactions)
    monkeypatch.setattr(retention_sqlite, "CHECKPOINT_EVERY", 10 * transactions)
    without = await frames_left_by_a_purge(str(tmp_path / "b.sqlite"), transactions)
    # Without its checkpoints the WAL holds every purge transaction's frames; with
    # them, those of the last CHECKPOINT_EVERY transactions at most.
    assert left <= without * (CHECKPOINT_EVERY + 1) / transactions, (left, without)
