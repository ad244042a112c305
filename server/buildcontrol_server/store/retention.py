"""Retention on any backend: choose what is past the policy, delete it in small
transactions, count what a purge would delete, and report the tables' sizes.

The SQL is retention_sql.py; each backend gives the two ways to run it (a read in
one snapshot, a write transaction of a few statements) through `RetentionSession`,
and its own size and compaction (SQLite: the file, incremental vacuum, WAL
checkpoint; PostgreSQL: the database's size, nothing to compact, autovacuum does it).

Deleting here bypasses the group-commit writer and the actors on purpose: only
finished builds are deleted, and no actor holds a finished build nor writes to it
again, so there is no compare-and-set to lose. The transactions are kept small (at
most `max_rows` rows) so a cancel's commit never waits long behind one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from buildcontrol_server.domain.retention import PURGED_TABLES, Cutoffs, PurgedBatch
from buildcontrol_server.store import retention_sql as sql
from buildcontrol_server.store.retention_sql import Dialect

# Rows one purge transaction may delete (a build's jobs and steps count). 500 rows
# take ~4-8 ms here (2 cores, loaded): the longest a cancel's commit waits behind one.
DEFAULT_MAX_ROWS = 500
# Builds read as candidates of one transaction (before the row budget trims them).
CANDIDATES = 200


class RetentionSession(Protocol):
    """How one backend runs retention's SQL (already in its dialect)."""

    dialect: Dialect

    async def read(self, queries: list[tuple[str, tuple[Any, ...]]]) -> list[list[Any]]:
        """Each query's rows, all from one snapshot."""

    async def write(self, statements: list[tuple[str, tuple[Any, ...]]]) -> list[int]:
        """Run the statements in one transaction; each one's count of rows changed."""

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

    async def _write(self, statements: list[tuple[str, tuple[Any, ...]]]) -> list[int]:
        return await self._session.write([(self._dialect.sql(s), p) for s, p in statements])

    # ---- purge ----------------------------------------------------------------------

    async def purge_builds_batch(
        self, cutoffs: Cutoffs, max_rows: int = DEFAULT_MAX_ROWS
    ) -> PurgedBatch | None:
        """Delete the oldest finished builds past the policy, with their jobs, steps
        and submit keys, in one transaction of at most `max_rows` rows (one build
        more than that is still deleted alone). None when nothing is past it."""
        chosen = await self._build_candidates(cutoffs, max_rows)
        if not chosen:
            return None
        ids = self._dialect.ids(chosen)
        counts = await self._write([(statement, (ids,)) for _, statement in sql.DELETE_BUILDS])
        rows = {table: count for (table, _), count in zip(sql.DELETE_BUILDS, counts, strict=True)}
        return PurgedBatch(tuple(chosen), rows)

    async def _build_candidates(self, cutoffs: Cutoffs, max_rows: int) -> list[str]:
        """The oldest finished builds past the policy whose rows fit in `max_rows`
        (at least one): what is past it is a prefix of the oldest-first order."""
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
        chosen: list[str] = []
        total = 0
        for position, (build_id, finished_at, rows) in enumerate(results[0]):
            past_time = before is not None and finished_at is not None and finished_at < before
            total += int(rows)
            if not (past_time or position < excess) or (chosen and total > max_rows):
                break
            chosen.append(str(build_id))
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
