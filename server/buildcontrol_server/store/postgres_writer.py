"""The group-commit writer on PostgreSQL: the same semantics as on SQLite.

The queue, the gathering of a burst, the batch cap and the accounting are the SQLite
writer's (group_commit.py); only the transaction differs. One batch is one
transaction on one pool connection:

- a batch of updates only (one cancel or agent report alone: the latency path; or
  many, merged: concurrent cancels and the reports of a burst) is one self-checking
  statement in autocommit, one round trip: its CTEs update every table and
  `buildcontrol_check_versions` aborts the statement unless each compare-and-set
  matched; on a miss nothing is written and the batch is replayed as below;
- otherwise first all change sets merged, in one SAVEPOINT: one INSERT per table and
  one UPDATE of all tables (postgres_updates.py); if any compare-and-set
  misses or PostgreSQL refuses a row, the savepoint is rolled back and the batch
  replayed change set by change set, each in its own SAVEPOINT, so only the change
  sets at fault fail (VersionConflict or StoreWriteError, as on SQLite);
- a lost connection, or a COMMIT that fails, fails every change set of the batch
  with StoreUnavailable (nothing of it was written, or, for a COMMIT whose answer was
  lost, the caller cannot know: the same ambiguity as any client of any database; the
  actor reloads its build from the store before it goes on).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, cast

import asyncpg

from buildcontrol_server import metrics
from buildcontrol_server.store import postgres_sql as sql
from buildcontrol_server.store import postgres_updates as updates
from buildcontrol_server.store.base import StoreStats
from buildcontrol_server.store.conflicts import conflict_between
from buildcontrol_server.store.errors import StoreClosedError, StoreUnavailable, StoreWriteError
from buildcontrol_server.store.group_commit import (
    DEFAULT_MAX_BATCH,
    GroupCommitWriter,
    _CasMismatch,
    _mergeable,
    _QueuedWrite,
    _settle,
)
from buildcontrol_server.store.postgres_connections import PostgresConnections, is_connection_loss
from buildcontrol_server.store.rows import PreparedWrite, Row

log = logging.getLogger(__name__)


class PostgresGroupCommitWriter(GroupCommitWriter):
    def __init__(
        self,
        connections: PostgresConnections,
        stats: StoreStats,
        max_batch: int = DEFAULT_MAX_BATCH,
    ) -> None:
        # No aiosqlite connection: the batches run on a pool connection the writer
        # keeps (PostgresConnections.held), and nobody reads through it, so no lock
        # is shared either.
        super().__init__(cast(Any, None), stats, asyncio.Lock(), max_batch)
        self._connections = connections

    async def _write_batch(self, batch: list[_QueuedWrite]) -> None:
        started = time.perf_counter()
        errors: list[BaseException | None] = [None] * len(batch)
        self._statements = 0
        self._round_trips = 0
        try:
            # The outcome is final once the last statement (or COMMIT) answered; the
            # connection stays the writer's (no release before the callers hear it).
            async with self._connections.held() as connection:
                await self._write_on(connection, batch, errors)
        except asyncio.CancelledError:
            # Cancelled mid-transaction (shutdown gone wrong): tell every caller.
            for queued in batch:
                _settle(queued.future, self._stopped_error())
            raise
        except Exception as error:
            self._fail_batch(batch, error)
            return
        self._stats.round_trips += self._round_trips
        self._record(batch, errors, self._statements, time.perf_counter() - started)
        for queued, failure in zip(batch, errors, strict=True):
            _settle(queued.future, failure)

    async def _write_on(
        self, connection: Any, batch: list[_QueuedWrite], errors: list[BaseException | None]
    ) -> None:
        """Write the batch on `connection`; a change set's failure goes into `errors`."""
        if len(batch) == 1:
            if not await self._updates_alone(connection, batch[0].write):
                # Alone, its own transaction needs no SAVEPOINT inside.
                await self._isolated_on(connection, batch, errors)
        else:
            await self._many_on(connection, batch, errors)

    def _stopped_error(self) -> BaseException:
        """What the callers of a batch cut off by the writer's cancellation get."""
        return StoreClosedError()

    @asynccontextmanager
    async def _counted_transaction(self, connection: Any) -> AsyncIterator[None]:
        """connection.transaction(), counted: BEGIN (or SAVEPOINT) and its end."""
        self._round_trips += 2
        async with connection.transaction():
            yield

    async def _many_on(
        self, connection: Any, batch: list[_QueuedWrite], errors: list[BaseException | None]
    ) -> None:
        """Concurrent cancels and reports (updates only): one round trip for all of
        them, not BEGIN, SAVEPOINT, UPDATE, RELEASE, COMMIT. Anything else: merged in
        one SAVEPOINT; change set by change set if that misses."""
        merged = _mergeable(batch)
        write = _merged(batch) if merged else None
        tried = write is not None and _updates_only(write)
        if tried and write is not None and await self._updates_alone(connection, write):
            return
        async with self._counted_transaction(connection):
            if tried:
                # It missed: merging again in a SAVEPOINT would miss the same way.
                self._stats.isolated_batches += 1
                await self._isolated_on(connection, batch, errors)
            elif not (merged and await self._merged_on(connection, batch)):
                await self._isolated_on(connection, batch, errors)

    async def _updates_alone(self, connection: Any, write: PreparedWrite) -> bool:
        """Updates only, with audit rows (a cancel, an agent's report, the write that
        ends a cancel, or a batch of them merged): one
        self-checking statement in autocommit, one round trip instead of BEGIN,
        UPDATE, COMMIT. False if `write` is not updates only or a version missed
        (nothing written: the caller replays it the long way, which finds and names
        the conflict, change set by change set)."""
        if not _updates_only(write):
            return False
        query, arguments = updates.checked(updated_tables(write), write.insert_audit)
        return await self._run_checked(connection, query, arguments)

    async def _run_checked(self, connection: Any, query: str, arguments: list[Any]) -> bool:
        """One self-checking statement (updates.checked's): False if it missed."""
        self._statements += 1
        self._round_trips += 1
        try:
            await connection.execute(query, *arguments)
        except asyncpg.PostgresError as error:
            if error.sqlstate != updates.VERSIONS_MISSED:
                raise
            return False
        return True

    async def _merged_on(self, connection: Any, batch: list[_QueuedWrite]) -> bool:
        """All change sets in one SAVEPOINT; False (nothing of it kept) on any miss."""
        merged = _merged(batch)
        try:
            async with self._counted_transaction(connection):
                await self._apply_on(connection, merged)
        except (_CasMismatch, asyncpg.PostgresError) as error:
            if is_connection_loss(error):
                raise
            log.debug("merged batch of %d missed (%s); isolating", len(batch), error)
            self._stats.isolated_batches += 1
            return False
        return True

    async def _isolated_on(
        self, connection: Any, batch: list[_QueuedWrite], errors: list[BaseException | None]
    ) -> None:
        """Each change set in its own SAVEPOINT (or its own transaction, outside one)."""
        for position, queued in enumerate(batch):
            try:
                async with self._counted_transaction(connection):
                    await self._apply_on(connection, queued.write)
            except _CasMismatch as mismatch:
                errors[position] = await _describe_conflict(connection, mismatch)
            except asyncpg.PostgresError as error:
                if is_connection_loss(error):
                    raise
                failure = StoreWriteError(f"change set refused by PostgreSQL: {error}")
                failure.__cause__ = error
                errors[position] = failure

    async def _apply_on(self, connection: Any, write: PreparedWrite) -> None:
        # The order of rows.py's `inserts()`: parents before children.
        for statement, table_rows in (
            (sql.INSERT_BUILDS, write.insert_builds),
            (sql.INSERT_JOBS, write.insert_jobs),
            (sql.INSERT_STEPS, write.insert_steps),
            (sql.INSERT_AUDIT, write.insert_audit),
            (sql.INSERT_SUBMIT_REQUESTS, write.insert_requests),
            (sql.INSERT_OUTBOX, write.insert_outbox),
            (sql.INSERT_PENDING_DELIVERIES, write.insert_pending_deliveries),
            (sql.UPSERT_DELIVERIES, last_row_of_each_key(write.upsert_deliveries, 2)),
        ):
            if table_rows:
                self._statements += 1
                self._round_trips += 1
                await connection.execute(statement.sql, *statement.arguments(table_rows))
        tables = (
            (updates.UPDATE_BUILDS, distinct_key_waves(write.update_builds, 1)),
            (updates.UPDATE_JOBS, distinct_key_waves(write.update_jobs, 1)),
            (updates.UPDATE_STEPS, distinct_key_waves(write.update_steps, 2)),
        )
        # One statement per wave for all tables (usually one wave: one round trip).
        for wave in range(max(len(waves) for _, waves in tables)):
            present = [(statement, waves[wave]) for statement, waves in tables if wave < len(waves)]
            query, arguments = updates.counted(present)
            self._statements += 1
            self._round_trips += 1
            matched = await connection.fetchrow(query, *arguments)
            # Keys are distinct within a wave: all matched iff the counts are the sizes.
            for position, (statement, wave_rows) in enumerate(present):
                if matched[position] != len(wave_rows):
                    raise _CasMismatch(statement.table, wave_rows)

    def _fail_batch(self, batch: list[_QueuedWrite], error: Exception) -> None:
        """The transaction as a whole failed: nothing of the batch was written."""
        if isinstance(error, StoreUnavailable):
            failure: Exception = error
            log.warning("store transaction of %d change sets failed: %s", len(batch), error)
        else:
            log.error("store transaction of %d change sets failed", len(batch), exc_info=error)
            failure = StoreWriteError(f"store transaction failed, nothing written: {error}")
            failure.__cause__ = error
        self._stats.failed_writes += len(batch)
        metrics.STORE_FAILED_WRITES.inc(len(batch))
        # Conflicts found inside the transaction are moot: nothing of it committed.
        for queued in batch:
            _settle(queued.future, failure)


def updated_tables(write: PreparedWrite) -> updates.Tables:
    """The tables `write` updates, with their rows, for one checked statement."""
    return [
        (statement, table_rows)
        for statement, table_rows in (
            (updates.UPDATE_BUILDS, write.update_builds),
            (updates.UPDATE_JOBS, write.update_jobs),
            (updates.UPDATE_STEPS, write.update_steps),
        )
        if table_rows
    ]


def _updates_only(write: PreparedWrite) -> bool:
    """Updates and nothing else but audit rows (the record of a cancel rides with the
    write that ends it), each entity moved once (one that moves twice needs ordered
    statements): what one checked statement can write."""
    # (inserts() hands out the write's own lists: `is` tells the audit's apart)
    if any(rows for _, rows in write.inserts() if rows is not write.insert_audit):
        return False
    tables = ((write.update_builds, 1), (write.update_jobs, 1), (write.update_steps, 2))
    return any(table_rows for table_rows, _ in tables) and all(
        len(distinct_key_waves(table_rows, key_length)) <= 1 for table_rows, key_length in tables
    )


def _merged(batch: list[_QueuedWrite]) -> PreparedWrite:
    """Every change set of the batch as one write (inserts first: _mergeable holds)."""
    merged = PreparedWrite()
    for queued in batch:
        merged.extend(queued.write)
    return merged


def last_row_of_each_key(table_rows: Sequence[Row], key_length: int) -> list[Row]:
    """The last row of each key (its first `key_length` columns), in the order of those
    last rows: what upserting the rows one after another would leave, in one statement
    (an upsert may change a row only once per statement)."""
    last: dict[tuple[Any, ...], Row] = {}
    for row in table_rows:
        key = tuple(row[:key_length])
        last.pop(key, None)  # re-inserted below: dicts keep insertion order
        last[key] = row
    return list(last.values())


def distinct_key_waves(table_rows: Sequence[Row], key_length: int) -> list[list[Row]]:
    """The rows in order, cut into statements whose keys are distinct: a merged batch
    may move one entity twice (version 3→4 then 4→5), and one UPDATE changes a row at
    most once. Rows are (…, key columns, expected version)."""
    waves: list[list[Row]] = []
    seen: list[set[tuple[Any, ...]]] = []
    for row in table_rows:
        key = tuple(row[-1 - key_length : -1])
        # After the last wave that already has this key: the order of moves is kept.
        index = 0
        for position in range(len(waves) - 1, -1, -1):
            if key in seen[position]:
                index = position + 1
                break
        if index == len(waves):
            waves.append([])
            seen.append(set())
        waves[index].append(row)
        seen[index].add(key)
    return waves


async def _describe_conflict(connection: Any, mismatch: _CasMismatch) -> Exception:
    """Read the versions back (after the savepoint's rollback) to name the entity."""
    table, table_rows = mismatch.table, mismatch.rows
    expected: dict[tuple[Any, ...], int]
    if table == "steps":
        expected = {(row[-3], row[-2]): row[-1] for row in table_rows}
        job_ids = sorted({key[0] for key in expected})
        found = {
            (row[0], row[1]): row[2]
            for row in await connection.fetch(sql.SELECT_STEP_VERSIONS, job_ids)
            if (row[0], row[1]) in expected
        }
        return conflict_between("step", expected, found, table)
    expected_by_id: dict[tuple[Any, ...], int] = {(row[-2],): row[-1] for row in table_rows}
    query = sql.SELECT_BUILD_VERSIONS if table == "builds" else sql.SELECT_JOB_VERSIONS
    keys = [key[0] for key in expected_by_id]
    found_by_id = {(row[0],): row[1] for row in await connection.fetch(query, keys)}
    return conflict_between(table[:-1], expected_by_id, found_by_id, table)
