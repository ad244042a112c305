"""The SQLite build store (through aiosqlite): open checks, connections, reads.

Durability: WAL with `synchronous=NORMAL`. A commit is appended to the WAL and the
WAL is fsynced only at checkpoints, so a *process* crash (the common failure: OOM
kill, deploy, bug) loses nothing that was committed, while a *power loss or kernel
crash* may lose the last commits before the checkpoint (the database stays
consistent either way). `FULL` fsyncs the WAL on every commit. Measured here (2
cores, virtio disk, 1,000 serial commits of one small build each through this
store): NORMAL 0.50 ms per commit, FULL 0.60-0.65 ms. This disk absorbs fsyncs
cheaply; on disks without a power-safe write cache an fsync often costs milliseconds
(not measured here).
Group commit makes that cost per batch, not per cancel (200 concurrent writes are
one commit), so operators who must not lose an accepted cancel even on power loss
can pass `synchronous="FULL"` at little cost; NORMAL stays the default because the
cancel path's promise is "survives a server crash", which NORMAL keeps.

Busy timeout: 5 s. The flock (lock.py) keeps other buildcontrol servers out, so the
only other writers are tools an operator runs (sqlite3 shell, a backup); waiting a few
seconds for them beats failing a cancel at once, and a longer wait would hide a tool
that holds the lock for good (every write then fails with a clear error instead).

Connections: one writer (owned by the group-commit writer, group_commit.py) and, for
a file, one reader: under WAL readers never block the writer nor see a batch half
written. `:memory:` has a single connection (a second one would be a second,
empty database), so reads take the writer's lock and wait for the current batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import cached_property
from types import TracebackType
from typing import Literal

import aiosqlite

from buildcontrol_server.domain.deliveries import Notification
from buildcontrol_server.domain.model import Build, CancelRecord
from buildcontrol_server.store import file_checks, reads, rows, schema, webhook_rows
from buildcontrol_server.store.base import StoreStats
from buildcontrol_server.store.errors import StoreClosedError, StoreOpenError
from buildcontrol_server.store.group_commit import (
    DEFAULT_MAX_BATCH,
    CommitsThroughWriter,
    GroupCommitWriter,
)
from buildcontrol_server.store.lock import FileLock
from buildcontrol_server.store.retention import Retention
from buildcontrol_server.store.retention_sqlite import SqliteRetentionSession
from buildcontrol_server.store.writer_lock import WriterLock

MEMORY = ":memory:"
BUSY_TIMEOUT_MS = 5_000
# The WAL file is cut back to this size whenever it starts over after a checkpoint.
# Without it the file keeps its high-water mark for good: under steady load the soak's
# WAL stayed at 4 MiB (the TRUNCATE checkpoint of compaction waits for a quiet second);
# with it, 1.0-3.7 MiB (it still grows up to SQLite's checkpoint every 1,000 pages).
WAL_SIZE_LIMIT_BYTES = 1024 * 1024

# What a start recovers: the live builds, their jobs and steps. CROSS JOIN keeps the
# builds the outer loop, walked through their partial index of live builds (a few
# rows); with a plain JOIN SQLite chose to scan every job and step of the history
# (40 s for a million finished builds on a loaded machine, before serving).
_UNFINISHED = f"builds.{schema.UNFINISHED_WHERE}"
UNFINISHED_BUILDS = f"SELECT {rows.BUILD_COLUMNS} FROM builds WHERE {_UNFINISHED} ORDER BY build_id"
UNFINISHED_JOBS = (
    f"SELECT {rows.JOB_COLUMNS} FROM builds CROSS JOIN jobs ON jobs.build_id ="
    f" builds.build_id WHERE {_UNFINISHED} ORDER BY jobs.build_id, jobs.position"
)
UNFINISHED_STEPS = (
    f"SELECT {rows.STEP_COLUMNS} FROM builds"
    " CROSS JOIN jobs ON jobs.build_id = builds.build_id"
    f" CROSS JOIN steps ON steps.job_id = jobs.job_id WHERE {_UNFINISHED}"
    " ORDER BY steps.job_id, steps.step_index"
)

Synchronous = Literal["NORMAL", "FULL"]


class SqliteStore(CommitsThroughWriter):
    def __init__(
        self,
        path: str,
        *,
        synchronous: Synchronous = "NORMAL",
        busy_timeout_ms: int = BUSY_TIMEOUT_MS,
        max_batch: int = DEFAULT_MAX_BATCH,
    ) -> None:
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be NORMAL or FULL, not {synchronous!r}")
        self.path = path
        self.stats = StoreStats()
        self._memory = path == MEMORY
        self._synchronous = synchronous
        self._busy_timeout_ms = int(busy_timeout_ms)
        self._max_batch = max_batch
        self._file_lock = None if self._memory else FileLock(path)
        self._write_connection: aiosqlite.Connection | None = None
        self._read_connection: aiosqlite.Connection | None = None
        self._write_lock = WriterLock()
        self._read_lock = asyncio.Lock()
        self._writer: GroupCommitWriter | None = None

    async def __aenter__(self) -> SqliteStore:
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
        # A local file: failures are per transaction (disk full, I/O error), never a
        # lost connection to wait out.
        return True

    def watch_availability(self, listener: Callable[[bool], None]) -> None:
        """Never called back: see `available`."""

    # ---- open / close -------------------------------------------------------------

    async def open(self) -> None:
        if self._writer is not None:
            raise RuntimeError(f"store {self.path} is already open")
        try:
            if self._file_lock is not None:
                file_checks.check_directory(self.path)
                self._file_lock.acquire()
                # Read-only checks first: a file we refuse must stay byte-for-byte as it
                # was (even switching to WAL rewrites the header).
                if file_checks.has_content(self.path):
                    await file_checks.check_schema_read_only(
                        self.path, file_checks.read_only_uri(self.path)
                    )
            self._write_connection = await self._connect(writer=True)
            await schema.migrate(self._write_connection)
            if self._memory:
                self._read_connection = self._write_connection
                self._read_lock = self._write_lock
            else:
                self._read_connection = await self._connect(writer=False)
        except BaseException as error:
            await self._close_connections()
            if self._file_lock is not None:
                self._file_lock.release()
            if isinstance(error, schema.SchemaTooNew):
                raise StoreOpenError(self.path, f"{error}; upgrade buildcontrol") from error
            if isinstance(error, aiosqlite.Error):
                raise StoreOpenError(self.path, f"cannot open: {error}") from error
            raise
        self._writer = GroupCommitWriter(
            self._write_connection, self.stats, self._write_lock, self._max_batch
        )
        self._writer.start()

    async def close(self) -> None:
        """Write everything queued, then close the connections and release the lock."""
        writer, self._writer = self._writer, None
        if writer is not None:
            await writer.close()
        await self._close_connections()
        if self._file_lock is not None:
            self._file_lock.release()

    async def _connect(self, *, writer: bool) -> aiosqlite.Connection:
        # isolation_level=None: no implicit BEGINs; every transaction here is explicit.
        connection = await aiosqlite.connect(self.path, isolation_level=None)
        try:
            await connection.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
            if not writer:
                await connection.execute("PRAGMA query_only = ON")
                return connection
            await connection.execute("PRAGMA foreign_keys = ON")
            # Takes effect only on a new, empty database, and only before WAL mode is
            # set (which writes the header); older files are converted by schema v10.
            await connection.execute("PRAGMA auto_vacuum = INCREMENTAL")
            if not self._memory:
                mode = list(await connection.execute_fetchall("PRAGMA journal_mode = WAL"))
                if str(mode[0][0]).lower() != "wal":
                    raise StoreOpenError(
                        self.path, f"the file system refused WAL mode (got {mode[0][0]})"
                    )
                await connection.execute(f"PRAGMA synchronous = {self._synchronous}")
                await connection.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT_BYTES}")
        except BaseException:
            await connection.close()
            raise
        return connection

    async def _close_connections(self) -> None:
        reader, self._read_connection = self._read_connection, None
        writer, self._write_connection = self._write_connection, None
        # The writer closes last: the last connection to close checkpoints the WAL.
        if reader is not None and reader is not writer:
            await reader.close()
        if writer is not None:
            await writer.close()

    # ---- writes -------------------------------------------------------------------

    # commit and commit_all: CommitsThroughWriter (group_commit.py).

    # ---- retention (retention_sqlite.py) --------------------------------------------

    @cached_property
    def retention(self) -> Retention:
        return Retention(
            SqliteRetentionSession(
                self.path, self._snapshot, self._between_batches, self._write_lock.wanted
            )
        )

    @asynccontextmanager
    async def _between_batches(self) -> AsyncIterator[aiosqlite.Connection]:
        """The writer connection, held between two group-commit batches."""
        connection = self._write_connection
        if connection is None or self._writer is None:
            raise StoreClosedError()
        async with self._write_lock:
            yield connection

    # ---- reads --------------------------------------------------------------------

    async def get_build(self, build_id: str) -> Build | None:
        async with self._snapshot() as connection:
            build_rows = await connection.execute_fetchall(
                f"SELECT {rows.BUILD_COLUMNS} FROM builds WHERE build_id = ?", (build_id,)
            )
            if not build_rows:
                return None
            job_rows = await connection.execute_fetchall(
                f"SELECT {rows.JOB_COLUMNS} FROM jobs WHERE build_id = ? ORDER BY position",
                (build_id,),
            )
            step_rows = await connection.execute_fetchall(
                f"SELECT {rows.STEP_COLUMNS} FROM jobs JOIN steps ON steps.job_id = jobs.job_id"
                " WHERE jobs.build_id = ? ORDER BY steps.job_id, steps.step_index",
                (build_id,),
            )
        [build] = rows.assemble(build_rows, job_rows, step_rows)
        return build

    async def list_builds(
        self, limit: int, before_build_id: str | None = None, pipeline: str | None = None
    ) -> list[Build]:
        if limit <= 0:
            raise ValueError(f"limit must be positive, not {limit}")
        conditions: list[str] = []
        parameters: list[object] = []
        if before_build_id is not None:
            conditions.append("build_id < ?")
            parameters.append(before_build_id)
        if pipeline is not None:
            conditions.append("pipeline = ?")
            parameters.append(pipeline)
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        parameters.append(limit)
        async with self._snapshot() as connection:
            found = await connection.execute_fetchall(
                f"SELECT {rows.BUILD_COLUMNS} FROM builds{where} ORDER BY build_id DESC LIMIT ?",
                parameters,
            )
        return [rows.build_from_row(row) for row in found]

    async def load_unfinished(self) -> list[Build]:
        async with self._snapshot() as connection:
            build_rows = await connection.execute_fetchall(UNFINISHED_BUILDS)
            job_rows = await connection.execute_fetchall(UNFINISHED_JOBS)
            step_rows = await connection.execute_fetchall(UNFINISHED_STEPS)
        return rows.assemble(build_rows, job_rows, step_rows)

    async def unfinished_build_ids(self) -> list[str]:
        async with self._snapshot() as connection:
            found = await connection.execute_fetchall(
                f"SELECT build_id FROM builds WHERE {schema.UNFINISHED_WHERE} ORDER BY build_id"
            )
        return [str(row[0]) for row in found]

    async def canceling_since(self) -> dict[str, float]:
        # The UNFINISHED_WHERE condition lets SQLite walk the partial index of live
        # builds (few) instead of the whole history.
        async with self._snapshot() as connection:
            found = await connection.execute_fetchall(
                "SELECT build_id, cancel_requested_at FROM builds"
                f" WHERE {schema.UNFINISHED_WHERE} AND status = 'CANCELING'"
            )
        return {str(row[0]): float(row[1] or 0.0) for row in found}

    async def submit_request(self, submitter: str, request_id: str) -> tuple[str, str] | None:
        async with self._snapshot() as connection:
            found = list(
                await connection.execute_fetchall(
                    rows.SELECT_SUBMIT_REQUEST, (submitter, request_id)
                )
            )
        return (str(found[0][0]), str(found[0][1])) if found else None

    async def audit_records(self, build_ids: list[str] | None = None) -> list[CancelRecord]:
        async with self._snapshot() as connection:
            return await reads.audit_records(connection, build_ids)

    async def canceled_without_audit(
        self, limit: int, after_build_id: str | None = None
    ) -> list[Build]:
        async with self._snapshot() as connection:
            return await reads.canceled_without_audit(connection, limit, after_build_id)

    async def undelivered_webhooks(self, endpoint: str) -> list[webhook_rows.QueuedDelivery]:
        async with self._snapshot() as connection:
            return await webhook_rows.undelivered(connection, endpoint)

    async def webhook_outbox_entry(
        self, delivery_id: str
    ) -> tuple[Notification, dict[str, int]] | None:
        async with self._snapshot() as connection:
            return await webhook_rows.outbox_entry(connection, delivery_id)

    async def webhook_deliveries(self, limit: int) -> list[webhook_rows.OutboxListing]:
        async with self._snapshot() as connection:
            return await webhook_rows.listing(connection, limit)

    @asynccontextmanager
    async def _snapshot(self) -> AsyncIterator[aiosqlite.Connection]:
        """One read transaction: a build and its jobs and steps from the same commit."""
        connection = self._read_connection
        if connection is None:
            raise StoreClosedError()
        async with self._read_lock:
            # BEGIN runs in the connection's thread even if this task is cancelled while
            # it waits; left open, every later BEGIN would fail ("within a transaction")
            # until a restart. So wait for it (shielded) and end what it opened.
            begin = asyncio.ensure_future(connection.execute("BEGIN"))
            try:
                await asyncio.shield(begin)
            except asyncio.CancelledError:
                await asyncio.wait({begin})
                if not begin.cancelled() and begin.exception() is None:
                    await connection.execute("COMMIT")
                raise
            try:
                yield connection
            finally:
                await connection.execute("COMMIT")
