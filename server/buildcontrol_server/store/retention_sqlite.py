"""Retention's SQL on SQLite: reads in the store's read snapshot, deletes on the
writer connection between two group-commit batches, and compaction.

A purge transaction is one hop to the writer connection's thread (BEGIN IMMEDIATE,
its chunks, COMMIT), so it holds the connection for the SQL's time only, not for a
round trip through a busy event loop per statement. After each chunk it looks at the
writer lock's `wanted` (writer_lock.py): when a group-commit batch waits, it commits
there and returns, and the caller deletes the rest in its next transaction. A cancel
queued meanwhile thus waits for one chunk (≤ CHUNK_ROWS rows, ~0.5 ms), not a batch.

WAL checkpoints stay off the commit path during a purge. A purge writes ~50 WAL pages
per transaction; left alone, every 1,000 pages SQLite's auto-checkpoint would run
inside whichever COMMIT crossed that line (copy the WAL into the file and fsync it:
tens to hundreds of ms on a file of a million builds), holding the writer, and the
first commit after it would pay the WAL restart's fsync (1-50 ms here). So every
CHECKPOINT_EVERY purge transactions, right before the next one, a passive checkpoint
runs on a connection of its own (it takes no write lock: commits go on meanwhile),
and the purge transaction right after it is the writer that restarts the WAL and
pays that fsync, not a cancel.

Compaction (at quiet moments): `PRAGMA incremental_vacuum(N)` returns up to N free
pages to the file system (the file is in auto_vacuum=INCREMENTAL mode since schema
v10; in any other mode it does nothing and freed pages are reused by later inserts),
then `PRAGMA wal_checkpoint(TRUNCATE)` copies the WAL into the file and truncates it
to zero bytes (a busy reader makes it stop early; it is tried again next time).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import aiosqlite

from buildcontrol_server.store.retention import Statement
from buildcontrol_server.store.retention_sql import SQLITE

# Pages returned per compaction (4 KiB pages: 16 MiB), so one compaction holds the
# writer lock for a bounded time; the rest is returned at the next quiet moment.
VACUUM_PAGES = 4_096
# Purge transactions between two checkpoints. One of 500 rows writes ~50 WAL pages
# (measured on a file of a million builds), so 8 of them stay well under SQLite's
# auto-checkpoint (1,000 pages) with the commits of a burst in between.
CHECKPOINT_EVERY = 8


class SqliteRetentionSession:
    dialect = SQLITE

    def __init__(
        self,
        path: str,
        snapshot: Callable[[], AbstractAsyncContextManager[aiosqlite.Connection]],
        writer: Callable[[], AbstractAsyncContextManager[aiosqlite.Connection]],
        commit_waits: threading.Event,
    ) -> None:
        self._path = path
        self._snapshot = snapshot
        self._writer = writer
        self._commit_waits = commit_waits
        self._transactions = 0  # purge transactions since the last checkpoint

    async def read(self, queries: list[Statement]) -> list[list[Any]]:
        async with self._snapshot() as connection:
            return [list(await connection.execute_fetchall(q, p)) for q, p in queries]

    async def write(self, chunks: list[list[Statement]]) -> list[list[int]]:
        if self._transactions >= CHECKPOINT_EVERY and _wal_bytes(self._path):
            await self._checkpoint()
            self._transactions = 0
        self._transactions += 1
        async with self._writer() as connection:
            # The whole transaction in one hop (aiosqlite's queue to its thread, as
            # sqlite_transaction.py). It runs to its end even if this task is
            # cancelled meanwhile, so wait for it before the lock is let go.
            hop = asyncio.ensure_future(
                connection._execute(  # type: ignore[no-untyped-call]
                    _transaction, connection._conn, chunks, self._commit_waits
                )
            )
            try:
                written: list[list[int]] = await asyncio.shield(hop)
            except asyncio.CancelledError:
                await asyncio.wait({hop})
                raise
            return written

    async def _checkpoint(self) -> None:
        """A passive checkpoint on a connection of its own: it copies what it can of
        the WAL into the file without taking the write lock nor waiting for anyone."""
        async with aiosqlite.connect(self._path) as connection:
            await connection.execute_fetchall("PRAGMA wal_checkpoint(PASSIVE)")

    async def database_bytes(self) -> int:
        async with self._snapshot() as connection:
            [[pages]] = await connection.execute_fetchall("PRAGMA page_count")
            [[page_size]] = await connection.execute_fetchall("PRAGMA page_size")
        return int(pages) * int(page_size) + _wal_bytes(self._path)

    async def compact(self) -> int:
        async with self._writer() as connection:
            [[free_before]] = await connection.execute_fetchall("PRAGMA freelist_count")
            await connection.execute_fetchall(f"PRAGMA incremental_vacuum({VACUUM_PAGES})")
            [[free_after]] = await connection.execute_fetchall("PRAGMA freelist_count")
            await connection.execute_fetchall("PRAGMA wal_checkpoint(TRUNCATE)")
        return int(free_before) - int(free_after)


def _wal_bytes(path: str) -> int:
    """The WAL file's size (a stat: microseconds, not worth a thread hop)."""
    try:
        return os.stat(path + "-wal").st_size
    except FileNotFoundError:
        return 0


def _transaction(
    connection: sqlite3.Connection, chunks: list[list[Statement]], commit_waits: threading.Event
) -> list[list[int]]:
    """On the connection's thread: the chunks in one transaction, committed after the
    last one or after the first one done while a commit waits; their counts."""
    written: list[list[int]] = []
    connection.execute("BEGIN IMMEDIATE")
    try:
        for statements in chunks:
            written.append([max(connection.execute(q, p).rowcount, 0) for q, p in statements])
            if commit_waits.is_set():
                break
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
    return written
