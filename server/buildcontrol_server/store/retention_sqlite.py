"""Retention's SQL on SQLite: reads in the store's read snapshot, deletes on the
writer connection between two group-commit batches, and compaction.

A purge transaction takes the writer connection's lock for its few statements only:
a cancel whose batch is queued meanwhile waits at most one purge transaction (≤ 1,000
rows, a few milliseconds), then the lock goes back to the group-commit writer.

Compaction (at quiet moments): `PRAGMA incremental_vacuum(N)` returns up to N free
pages to the file system (the file is in auto_vacuum=INCREMENTAL mode since schema
v10; in any other mode it does nothing and freed pages are reused by later inserts),
then `PRAGMA wal_checkpoint(TRUNCATE)` copies the WAL into the file and truncates it
to zero bytes (a busy reader makes it stop early; it is tried again next time).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import aiosqlite

from buildcontrol_server.store.retention_sql import SQLITE

# Pages returned per compaction (4 KiB pages: 16 MiB), so one compaction holds the
# writer lock for a bounded time; the rest is returned at the next quiet moment.
VACUUM_PAGES = 4_096


class SqliteRetentionSession:
    dialect = SQLITE

    def __init__(
        self,
        path: str,
        snapshot: Callable[[], AbstractAsyncContextManager[aiosqlite.Connection]],
        writer: Callable[[], AbstractAsyncContextManager[aiosqlite.Connection]],
    ) -> None:
        self._path = path
        self._snapshot = snapshot
        self._writer = writer

    async def read(self, queries: list[tuple[str, tuple[Any, ...]]]) -> list[list[Any]]:
        async with self._snapshot() as connection:
            return [list(await connection.execute_fetchall(q, p)) for q, p in queries]

    async def write(self, statements: list[tuple[str, tuple[Any, ...]]]) -> list[int]:
        async with self._writer() as connection, _transaction(connection):
            counts = []
            for statement, parameters in statements:
                cursor = await connection.execute(statement, parameters)
                counts.append(max(cursor.rowcount, 0))
                await cursor.close()
            return counts

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


class _transaction:
    """BEGIN IMMEDIATE … COMMIT; ROLLBACK on any error or cancellation (re-raised)."""

    def __init__(self, connection: aiosqlite.Connection) -> None:
        self._connection = connection

    async def __aenter__(self) -> None:
        # As the store's read snapshot: BEGIN runs in the connection's thread even if
        # this task is cancelled while it waits, so wait for it and undo what it began.
        begin = asyncio.ensure_future(self._connection.execute("BEGIN IMMEDIATE"))
        try:
            await asyncio.shield(begin)
        except asyncio.CancelledError:
            await asyncio.wait({begin})
            if self._connection.in_transaction:
                await self._connection.execute("ROLLBACK")
            raise

    async def __aexit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is None:
            await self._connection.execute("COMMIT")
        elif self._connection.in_transaction:
            # Shielded: a cancellation must not leave the writer's connection inside a
            # transaction (every later BEGIN of the group-commit writer would fail).
            await asyncio.shield(self._connection.execute("ROLLBACK"))
