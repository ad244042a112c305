"""Retention on any backend: choose what is past the policy, delete it in small
transactions, count what a purge would delete, and report the tables' sizes.

The SQL is retention_sql.py; each backend gives the two ways to run it (a read in
one snapshot, a write transaction of a few chunks of statements) through `RetentionSession`,
and its own size and compaction (SQLite: the file, incremental vacuum, WAL
checkpoint; PostgreSQL: the database's size, nothing to compact, autovacuum does it).

Deleting here bypasses the group-commit writer and the actors on purpose: only
finished builds are deleted, and no actor holds a finished build nor writes to it
again, so there is no compare-and-set to lose. The transactions are kept small (at
most `max_rows` rows) and, where they share the writer's connection, end after the
chunk under way once a commit waits, so a cancel's commit never waits long behind one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from buildcontrol_server.domain.retention import PURGED_TABLES, Cutoffs, PurgedBatch
from buildcontrol_server.store import retention_sql as sql
from buildcontrol_server.store.retention_sql import Dialect

# Rows one purge transaction may delete (a build's jobs and steps count): 500 rows
# take ~4-10 ms here (2 cores, loaded).
DEFAULT_MAX_ROWS = 500
# Rows of one chunk of a purge transaction (whole builds, at least one). A backend
# whose purge shares the writer's connection (SQLite) commits after the chunk under
# way as soon as a commit waits for the connection, so a cancel's CANCELING write
# waits for at most one chunk (~0.5 ms here), not for the whole transaction.
CHUNK_ROWS = 50
# Builds read as candidates of one transaction (before the row budget trims them).
CANDIDATES = 200

Statement = tuple[str, tuple[Any, ...]]


class RetentionSession(Protocol):
    """How one backend runs retention's SQL (already in its dialect)."""

    dialect: Dialect

    async def read(self, queries: list[tuple[str, tuple[Any, ...]]]) -> list[list[Any]]:
        """Each query's rows, all from one snapshot."""

    async def write(self, chunks: list[list[Statement]]) -> list[list[int]]:
        """Run the chunks of statements in one transaction, in order; for each chunk
        written, each statement's count of rows changed. The first chunk is always
        written; a backend may commit before the others (then fewer lists come back)
        to let waiting commits through, and the caller deletes the rest later."""

    async def database_bytes(self) -> int:
        """What the database takes on disk (SQLite: the file and its WAL)."""

    async def compact(self) -> int:
        """Give freed space back at a quiet moment; pages (or bytes) freed, 0 if none."""


@dataclass(frozen=True)
class StoreSizes:
    rows: dict[str, int]
    database_bytes: int
    # finished_at of the oldest finished build kept; None when there is none.
    oldest_finished_at: float | None


class Retention:
    def __init__(self, session: RetentionSession) -> None:
        self._session = session
        self._dialect = session.dialect

    async def _read(self, *queries: tuple[str, tuple[Any, ...]]) -> list[list[Any]]:
        return await self._session.read([(self._dialect.sql(q), p) for q, p in queries])

    async def _write(self, statements: list[Statement]) -> list[int]:
        [counts] = await self._write_chunks([statements])
        return counts

    async def _write_chunks(self, chunks: list[list[Statement]]) -> list[list[int]]:
        return await self._session.write(
            [[(self._dialect.sql(s), p) for s, p in chunk] for chunk in chunks]
        )

    # ---- purge ----------------------------------------------------------------------

    async def purge_builds_batch(
        self, cutoffs: Cutoffs, max_rows: int = DEFAULT_MAX_ROWS
    ) -> PurgedBatch | None:
        """Delete the oldest finished builds past the policy, with their jobs, steps
        and submit keys, in one transaction of at most `max_rows` rows (one build
        more than that is still deleted alone), chunk after chunk of CHUNK_ROWS; the
        builds of the chunks written. None when nothing is past it."""
        chosen = await self._build_candidates(cutoffs, max_rows)
        if not chosen:
            return None
        chunks = _chunks(chosen, CHUNK_ROWS)
        written = await self._write_chunks(
            [
                [(statement, (self._dialect.ids(ids),)) for _, statement in sql.DELETE_BUILDS]
                for ids in chunks
            ]
        )
        rows = {
            table: sum(counts[position] for counts in written)
            for position, (table, _) in enumerate(sql.DELETE_BUILDS)
        }
        return PurgedBatch(tuple(i for ids in chunks[: len(written)] for i in ids), rows)

    async def _build_candidates(self, cutoffs: Cutoffs, max_rows: int) -> list[tuple[str, int]]:
        """The oldest finished builds past the policy whose rows fit in `max_rows`
        (at least one), each with its rows: what is past the policy is a prefix of
        the oldest-first order."""
        if cutoffs.builds_before is None and cutoffs.builds_max is None:
            return []
        queries: list[tuple[str, tuple[Any, ...]]] = [(sql.OLDEST_FINISHED, (CANDIDATES,))]
        if cutoffs.builds_max is not None:
            queries.append((sql.COUNT_FINISHED, ()))
        results = await self._read(*queries)
        excess = 0
        if cutoffs.builds_max is not None:
            excess = int(results[1][0][0]) - cutoffs.builds_max
        before = cutoffs.builds_before
        chosen: list[tuple[str, int]] = []
        total = 0
        for position, (build_id, finished_at, rows) in enumerate(results[0]):
            past_time = before is not None and finished_at is not None and finished_at < before
            total += int(rows)
            if not (past_time or position < excess) or (chosen and total > max_rows):
                break
            chosen.append((str(build_id), int(rows)))
        return chosen

    async def purge_audit_batch(self, cutoffs: Cutoffs, limit: int = DEFAULT_MAX_ROWS) -> int:
        """Delete up to `limit` audit records past their window whose build is gone."""
        if cutoffs.audit_before is None:
            return 0
        [count] = await self._write([(sql.DELETE_AUDIT, (cutoffs.audit_before, limit))])
        return count

    async def purge_deliveries_batch(
        self, cutoffs: Cutoffs, limit: int = DEFAULT_MAX_ROWS // 4
    ) -> dict[str, int]:
        """Delete up to `limit` finished outbox entries past their window, with their
        delivery log (a few rows each: one per endpoint)."""
        if cutoffs.deliveries_before is None:
            return {}
        [found] = await self._read((sql.OLD_OUTBOX, (cutoffs.deliveries_before, limit)))
        if not found:
            return {}
        ids = self._dialect.ids([str(row[0]) for row in found])
        counts = await self._write([(s, (ids,)) for _, s in sql.DELETE_DELIVERIES])
        return {table: n for (table, _), n in zip(sql.DELETE_DELIVERIES, counts, strict=True)}

    # ---- dry run and sizes ------------------------------------------------------------

    async def preview(self, cutoffs: Cutoffs) -> dict[str, int]:
        """Rows per table a purge at these cut-offs would delete now."""
        doomed = await self._doomed_builds(cutoffs)
        audit_before = cutoffs.audit_before
        deliveries_before = cutoffs.deliveries_before
        queries: list[tuple[str, tuple[Any, ...]]] = [
            (sql.COUNT_DOOMED_JOBS, (doomed,)),
            (sql.COUNT_DOOMED_STEPS, (doomed,)),
            (sql.COUNT_DOOMED_KEYS, (doomed,)),
        ]
        if audit_before is not None:
            queries.append((sql.COUNT_DOOMED_AUDIT, (audit_before, doomed)))
        if deliveries_before is not None:
            queries.append((sql.COUNT_OUTBOX, (deliveries_before,)))
            queries.append((sql.COUNT_OUTBOX_DELIVERIES, (deliveries_before,)))
        results = iter(int(found[0][0]) for found in await self._read(*queries))
        rows = dict.fromkeys(PURGED_TABLES, 0)
        rows["builds"] = doomed
        for table in ("jobs", "steps", "submit_requests"):
            rows[table] = next(results)
        if audit_before is not None:
            rows["cancel_audit"] = next(results)
        if deliveries_before is not None:
            rows["webhook_outbox"], rows["webhook_deliveries"] = next(results), next(results)
        return rows

    async def _doomed_builds(self, cutoffs: Cutoffs) -> int:
        """How many of the oldest finished builds are past the policy."""
        queries: list[tuple[str, tuple[Any, ...]]] = []
        if cutoffs.builds_before is not None:
            queries.append((sql.COUNT_FINISHED_BEFORE, (cutoffs.builds_before,)))
        if cutoffs.builds_max is not None:
            queries.append((sql.COUNT_FINISHED, ()))
        if not queries:
            return 0
        results = iter(int(found[0][0]) for found in await self._read(*queries))
        doomed = next(results) if cutoffs.builds_before is not None else 0
        if cutoffs.builds_max is not None:
            doomed = max(doomed, next(results) - cutoffs.builds_max)
        return doomed

    async def sizes(self) -> StoreSizes:
        queries = [(sql.count_rows(table), ()) for table in sql.COUNTED_TABLES]
        results = await self._read(*queries, (sql.OLDEST_FINISHED_AT, ()))
        rows = {
            table: int(found[0][0])
            for table, found in zip(sql.COUNTED_TABLES, results, strict=False)
        }
        oldest = results[-1][0][0]
        return StoreSizes(
            rows=rows,
            database_bytes=await self._session.database_bytes(),
            oldest_finished_at=float(oldest) if oldest is not None else None,
        )

    async def compact(self) -> int:
        return await self._session.compact()


def _chunks(builds: list[tuple[str, int]], max_rows: int) -> list[list[str]]:
    """The build ids in order, cut into runs of at most `max_rows` rows (a build
    larger than that is a run of its own)."""
    chunks: list[list[str]] = []
    rows = 0
    for build_id, build_rows in builds:
        if not chunks or rows + build_rows > max_rows:
            chunks.append([])
            rows = 0
        chunks[-1].append(build_id)
        rows += build_rows
    return chunks
