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

    async def read(self, queries: list[tuple[str, tuple[Any, ...]]]) -> list[list[Any]]:
        async with self._snapshot() as connection:
            return [list(await connection.fetch(q, *p)) for q, p in queries]

    async def write(self, statements: list[tuple[str, tuple[Any, ...]]]) -> list[int]:
        async with self._acquire() as connection, connection.transaction():
            counts = []
            for statement, parameters in statements:
                status = await connection.execute(statement, *parameters)
                # "DELETE 12": the command tag ends with the rows it touched.
                counts.append(int(str(status).rsplit(" ", 1)[-1]))
            return counts

    async def database_bytes(self) -> int:
        async with self._snapshot() as connection:
            return int(await connection.fetchval("SELECT pg_database_size(current_database())"))

    async def compact(self) -> int:
        return 0
