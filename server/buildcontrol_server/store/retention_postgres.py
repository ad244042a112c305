"""Retention's SQL on PostgreSQL: reads in a read-only snapshot, each purge step in
its own short transaction on a pooled connection (beside the group-commit writer's:
row locks keep them apart, and no row a purge deletes is one the writer updates).

Nothing to compact: deleted rows are dead tuples that autovacuum reclaims for reuse
(docs/operations.md: the autovacuum settings that matter for a purging server).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from buildcontrol_server.store.retention import Statement
from buildcontrol_server.store.retention_sql import POSTGRES


class PostgresRetentionSession:
    dialect = POSTGRES

    def __init__(
        self,
        snapshot: Callable[[], AbstractAsyncContextManager[Any]],
        acquire: Callable[[], AbstractAsyncContextManager[Any]],
    ) -> None:
        self._snapshot = snapshot
        self._acquire = acquire

    async def read(self, queries: list[Statement]) -> list[list[Any]]:
        async with self._snapshot() as connection:
            return [list(await connection.fetch(q, *p)) for q, p in queries]

    async def write(self, chunks: list[list[Statement]]) -> list[list[int]]:
        # Every chunk: this transaction is not on the writer's connection, so a
        # commit never waits for it to end (only for the rows it locks, none of
        # which a commit writes).
        async with self._acquire() as connection, connection.transaction():
            written = []
            for statements in chunks:
                counts = []
                for statement, parameters in statements:
                    status = await connection.execute(statement, *parameters)
                    # "DELETE 12": the command tag ends with the rows it touched.
                    counts.append(int(str(status).rsplit(" ", 1)[-1]))
                written.append(counts)
            return written

    async def database_bytes(self) -> int:
        async with self._snapshot() as connection:
            return int(await connection.fetchval("SELECT pg_database_size(current_database())"))

    async def compact(self) -> int:
        return 0
