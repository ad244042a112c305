"""The PostgreSQL build store (through asyncpg): open, close, writes and reads.

Chosen with `--store postgresql://USER@HOST:PORT/DB` (store/factory.py). The same
contract as the SQLite store (store/base.py, one test suite for both):

- writes go through the group-commit writer (postgres_writer.py): concurrent change
  sets share one transaction, every update is compare-and-set on a version, and a
  lost race is the VersionConflict the actor sees on SQLite too;
- the schema is migrated at open (postgres_schema.py) and a newer one is refused;
- one server per database: a session advisory lock (postgres_connections.py);
- reads run in a REPEATABLE READ read-only transaction, so a build, its jobs and its
  steps come from one commit (as SQLite's read transaction under WAL); a single
  build's read is one statement, which reads one snapshot by itself.

Durability is PostgreSQL's: with the default `synchronous_commit = on`, a commit that
returned survives a crash of the database server and of its host.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import cached_property
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from buildcontrol_server.domain.deliveries import Notification
from buildcontrol_server.domain.model import Build, CancelRecord
from buildcontrol_server.store import postgres_schema, rows, webhook_rows
from buildcontrol_server.store import postgres_sql as sql
from buildcontrol_server.store.audit_records import record_from_json
from buildcontrol_server.store.base import StoreStats
from buildcontrol_server.store.errors import StoreClosedError, StoreOpenError
from buildcontrol_server.store.fencing import Fence
from buildcontrol_server.store.group_commit import DEFAULT_MAX_BATCH, CommitsThroughWriter
from buildcontrol_server.store.postgres_connections import (
    PoolSize,
    PostgresConnections,
    is_connection_loss,
)
from buildcontrol_server.store.postgres_fenced_writer import FencedGroupCommitWriter
from buildcontrol_server.store.postgres_writer import PostgresGroupCommitWriter
from buildcontrol_server.store.retention import Retention
from buildcontrol_server.store.retention_postgres import PostgresRetentionSession
from buildcontrol_server.store.schema import SchemaTooNew


def redacted(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ""
    return urlunsplit(parts._replace(netloc=f"{user}{host}"))


class PostgresStore(CommitsThroughWriter):
    def __init__(
        self,
        url: str,
        *,
        pool_size: PoolSize | None = None,
        max_batch: int = DEFAULT_MAX_BATCH,
        fence: Fence | None = None,
    ) -> None:
        """`fence`: run as one replica of several (--replicas on): no one-server lock,
        and every write checks the replica's shard leases (fencing.py)."""
        self.url = url
        self.path = redacted(url)  # what messages name, as SqliteStore.path
        self.stats = StoreStats()
        self._max_batch = max_batch
        self._fence = fence
        self._connections = PostgresConnections(
            url, self.path, pool_size or PoolSize(), exclusive=fence is None
        )
        self._writer: PostgresGroupCommitWriter | None = None

    async def __aenter__(self) -> PostgresStore:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def available(self) -> bool:
        return self._connections.available

    @property
    def connections(self) -> PostgresConnections:
        """The pool, for a replica's leases and commands (replicas/), which share it."""
        return self._connections

    def watch_availability(self, listener: Callable[[bool], None]) -> None:
        self._connections.watch(listener)

    # ---- open / close -------------------------------------------------------------

    async def open(self) -> None:
        if self._writer is not None:
            raise RuntimeError(f"store {self.path} is already open")
        try:
            await self._migrate()
            await self._connections.open()
        except BaseException as error:
            await self._connections.close()
            if isinstance(error, StoreOpenError):
                raise
            if isinstance(error, SchemaTooNew):
                raise StoreOpenError(self.path, f"{error}; upgrade buildcontrol") from error
            if isinstance(error, postgres_schema.NotOurDatabase):
                raise StoreOpenError(self.path, str(error)) from error
            if isinstance(error, Exception) and (
                is_connection_loss(error) or isinstance(error, asyncpg.PostgresError)
            ):
                raise StoreOpenError(self.path, f"cannot open: {error}") from error
            raise
        if self._fence is None:
            self._writer = PostgresGroupCommitWriter(self._connections, self.stats, self._max_batch)
        else:
            self._writer = FencedGroupCommitWriter(
                self._connections, self.stats, self._fence, self._max_batch
            )
        self._writer.start()

    async def _migrate(self) -> None:
        connection = await self._connections.connect()
        try:
            await postgres_schema.migrate(connection)
        finally:
            await connection.close()

    async def close(self) -> None:
        """Write everything queued, then close the pool and release the lock."""
        writer, self._writer = self._writer, None
        if writer is not None:
            await writer.close()
        await self._connections.close()

    # ---- writes -------------------------------------------------------------------

    # commit and commit_all: CommitsThroughWriter (group_commit.py).

    # ---- retention (retention_postgres.py) ------------------------------------------

    @cached_property
    def retention(self) -> Retention:
        return Retention(PostgresRetentionSession(self._snapshot, self._pooled))

    @asynccontextmanager
    async def _pooled(self) -> AsyncIterator[Any]:
        """A connection in autocommit, for a read of one statement: a statement sees
        one snapshot by itself, and BEGIN and COMMIT around it would cost two round
        trips more (`_snapshot` is for reads of several statements)."""
        if self._writer is None:
            raise StoreClosedError()
        async with self._connections.acquire() as connection:
            yield connection

    # ---- reads --------------------------------------------------------------------

    async def get_build(self, build_id: str) -> Build | None:
        async with self._pooled() as connection:
            found = await connection.fetchrow(sql.SELECT_WHOLE_BUILD, build_id)
        if found is None:
            return None
        *build_row, job_rows, step_rows = found
        [build] = rows.assemble([build_row], job_rows, step_rows)
        return build

    async def list_builds(
        self, limit: int, before_build_id: str | None = None, pipeline: str | None = None
    ) -> list[Build]:
        if limit <= 0:
            raise ValueError(f"limit must be positive, not {limit}")
        parameters: list[object] = [
            value for value in (before_build_id, pipeline) if value is not None
        ]
        query = sql.list_builds(before_build_id is not None, pipeline is not None)
        async with self._pooled() as connection:
            found = await connection.fetch(query, *parameters, limit)
        return [rows.build_from_row(row) for row in found]

    async def load_unfinished(self) -> list[Build]:
        async with self._snapshot() as connection:
            build_rows = await connection.fetch(sql.SELECT_UNFINISHED_BUILDS)
            return await self._complete(connection, build_rows)

    async def unfinished_build_ids(self) -> list[str]:
        async with self._pooled() as connection:
            found = await connection.fetch(sql.SELECT_UNFINISHED_IDS)
        return [str(row[0]) for row in found]

    async def canceling_since(self) -> dict[str, float]:
        async with self._pooled() as connection:
            found = await connection.fetch(sql.SELECT_CANCELING_SINCE)
        return {str(row[0]): float(row[1] or 0.0) for row in found}

    async def submit_request(self, submitter: str, request_id: str) -> tuple[str, str] | None:
        async with self._pooled() as connection:
            found = await connection.fetchrow(sql.SELECT_SUBMIT_REQUEST, submitter, request_id)
        return (str(found[0]), str(found[1])) if found is not None else None

    async def audit_records(self, build_ids: list[str] | None = None) -> list[CancelRecord]:
        async with self._pooled() as connection:
            if build_ids is None:
                found = await connection.fetch(sql.SELECT_ALL_AUDIT)
            else:
                found = await connection.fetch(sql.SELECT_AUDIT_OF, sorted(set(build_ids)))
        return [record_from_json(row[0]) for row in found]

    async def canceled_without_audit(
        self, limit: int, after_build_id: str | None = None
    ) -> list[Build]:
        if limit <= 0:
            raise ValueError(f"limit must be positive, not {limit}")
        async with self._snapshot() as connection:
            # "" sorts before every build id (COLLATE "C"): no lower bound.
            build_rows = await connection.fetch(
                sql.SELECT_CANCELED_WITHOUT_AUDIT, after_build_id or "", limit
            )
            return await self._complete(connection, build_rows)

    async def undelivered_webhooks(self, endpoint: str) -> list[webhook_rows.QueuedDelivery]:
        async with self._pooled() as connection:
            found = await connection.fetch(sql.SELECT_UNDELIVERED, endpoint)
        return webhook_rows.queued_deliveries(found)

    async def webhook_outbox_entry(
        self, delivery_id: str
    ) -> tuple[Notification, dict[str, int]] | None:
        async with self._snapshot() as connection:
            entry = await connection.fetchrow(sql.SELECT_OUTBOX_ENTRY, delivery_id)
            if entry is None:
                return None
            attempts = await connection.fetch(sql.SELECT_DELIVERY_ATTEMPTS, delivery_id)
        return webhook_rows.notification_of(entry), {row[0]: int(row[1]) for row in attempts}

    async def webhook_deliveries(self, limit: int) -> list[webhook_rows.OutboxListing]:
        if limit <= 0:
            raise ValueError(f"limit must be positive, not {limit}")
        async with self._pooled() as connection:
            found = await connection.fetch(sql.SELECT_WEBHOOK_LISTING, limit)
        # The SQLite module's row reader: the SELECT list is the same on both backends.
        return [webhook_rows._listing_of(row) for row in found]

    @staticmethod
    async def _complete(connection: Any, build_rows: list[Any]) -> list[Build]:
        """The builds of `build_rows` (in that order) with their jobs and steps."""
        build_ids = [row[0] for row in build_rows]
        if not build_ids:
            return []
        job_rows = await connection.fetch(sql.SELECT_JOBS_OF_BUILDS, build_ids)
        step_rows = await _steps_of(connection, job_rows)
        return rows.assemble(build_rows, job_rows, step_rows)

    @asynccontextmanager
    async def _snapshot(self) -> AsyncIterator[Any]:
        """One read-only transaction: everything read comes from the same commit."""
        if self._writer is None:
            raise StoreClosedError()
        async with (
            self._connections.acquire() as connection,
            connection.transaction(isolation="repeatable_read", readonly=True),
        ):
            yield connection


async def _steps_of(connection: Any, job_rows: list[Any]) -> list[Any]:
    """The steps of the jobs read (none to read for no jobs)."""
    job_ids = [row["job_id"] for row in job_rows]
    if not job_ids:
        return []
    return list(await connection.fetch(sql.SELECT_STEPS_OF_JOBS, job_ids))
