"""Logs in the PostgreSQL database (the PostgreSQL backend's log store).

In the database rather than a directory: with several server replicas, an agent's
upload may reach one replica and a follower another; the database is the one thing
they share (a directory would need a shared file system, and its own backups and
retention). Each uploaded chunk is one row of `job_log_chunks` (bytea, at most 1 MiB);
`job_logs` holds each job's size and completeness, locked (FOR UPDATE) by the append
that extends it, so two streams of one job (an agent reconnecting) cannot interleave.
The tables are made by the build store's migrations (v13, store/postgres_schema.py),
so the database's schema version says whether it has them; the log store opens after
the build store and refuses a database without them."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Collection
from typing import Any

import asyncpg

from buildcontrol_server.logs.offsets import new_bytes
from buildcontrol_server.logs.store import LogSlice
from buildcontrol_server.store import postgres_schema
from buildcontrol_server.store.errors import StoreOpenError, StoreUnavailable
from buildcontrol_server.store.postgres import redacted
from buildcontrol_server.store.postgres_connections import is_connection_loss

UNREACHABLE = "the database holding the logs is unreachable; try again"


class PostgresLogStore:
    def __init__(self, url: str) -> None:
        self._url = url
        self._pool: Any = None

    async def open(self) -> None:
        pool = await asyncpg.create_pool(self._url, min_size=1, max_size=4)
        try:
            async with pool.acquire() as connection:
                version = await postgres_schema.read_version(connection)
        except BaseException:
            await pool.close()
            raise
        if version < postgres_schema.LOG_TABLES_VERSION:
            await pool.close()
            raise StoreOpenError(
                redacted(self._url),
                f"schema version {version} has no job log tables (version "
                f"{postgres_schema.LOG_TABLES_VERSION}): open the build store first, its "
                "migrations make them",
            )
        self._pool = pool

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @contextlib.asynccontextmanager
    async def _connection(self, transaction: bool = False) -> AsyncIterator[Any]:
        """A pool connection; a lost one is UNAVAILABLE to the caller (an agent's
        upload retries it), not an unexpected error. asyncpg's pool replaces it."""
        try:
            async with self._pool.acquire() as connection:
                if not transaction:
                    yield connection
                    return
                async with connection.transaction():
                    yield connection
        except Exception as error:
            if not is_connection_loss(error):
                raise
            raise StoreUnavailable(UNREACHABLE) from error

    async def append(
        self, build_id: str, job_id: str, offset: int, data: bytes, final: bool
    ) -> int:
        async with self._connection(transaction=True) as connection:
            await connection.execute(
                "INSERT INTO job_logs VALUES ($1, $2, 0, false, $3) ON CONFLICT DO NOTHING",
                build_id,
                job_id,
                time.time(),
            )
            row = await connection.fetchrow(
                "SELECT size, complete FROM job_logs WHERE build_id = $1 AND job_id = $2"
                " FOR UPDATE",
                build_id,
                job_id,
            )
            stored = int(row["size"])
            fresh = new_bytes(stored, bool(row["complete"]), offset, data)
            if fresh:
                await connection.execute(
                    "INSERT INTO job_log_chunks VALUES ($1, $2, $3, $4)",
                    build_id,
                    job_id,
                    stored,
                    fresh,
                )
            await connection.execute(
                "UPDATE job_logs SET size = $3, complete = complete OR $4, written_at = $5"
                " WHERE build_id = $1 AND job_id = $2",
                build_id,
                job_id,
                stored + len(fresh),
                final,
                time.time(),
            )
            return stored + len(fresh)

    async def read(self, build_id: str, job_id: str, offset: int, limit: int) -> LogSlice:
        async with self._connection() as connection:
            head = await connection.fetchrow(
                "SELECT size, complete FROM job_logs WHERE build_id = $1 AND job_id = $2",
                build_id,
                job_id,
            )
            if head is None:
                return LogSlice(b"", 0, 0, False)
            size = int(head["size"])
            start = min(offset, size)
            rows = await connection.fetch(
                "SELECT start_offset, data FROM job_log_chunks"
                " WHERE build_id = $1 AND job_id = $2"
                " AND start_offset + length(data) > $3 AND start_offset < $3 + $4"
                " ORDER BY start_offset",
                build_id,
                job_id,
                start,
                limit,
            )
        joined = b"".join(bytes(row["data"]) for row in rows)
        skip = start - int(rows[0]["start_offset"]) if rows else 0
        return LogSlice(joined[skip : skip + limit], start, size, bool(head["complete"]))

    async def delete_logs(self, build_ids: Collection[str]) -> int:
        ids = list(build_ids)
        async with self._connection(transaction=True) as connection:
            await connection.execute(
                "DELETE FROM job_log_chunks WHERE build_id = ANY($1::text[])", ids
            )
            deleted = await connection.fetch(
                "DELETE FROM job_logs WHERE build_id = ANY($1::text[]) RETURNING job_id", ids
            )
        return len(deleted)

    async def delete_older_than(self, cutoff: float) -> int:
        async with self._connection() as connection:
            rows = await connection.fetch(
                "SELECT build_id FROM job_logs GROUP BY build_id HAVING max(written_at) < $1",
                cutoff,
            )
        return await self.delete_logs([row["build_id"] for row in rows])
