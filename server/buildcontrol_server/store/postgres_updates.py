"""The compare-and-set updates of the PostgreSQL store: every table in one statement.

`UPDATE … FROM <rows> AS u … RETURNING` the keys it matched, one data-modifying CTE
per table (builds, jobs, steps: a cancel updates all three), one round trip. asyncpg's
`executemany` returns no row counts, so a miss is found by counting the returned keys
(every row names one primary key). An `UPDATE … FROM` changes each target row at most
once, so the rows of one statement name distinct keys (postgres_writer.py splits
repeated keys into later statements).

How a table's rows come in depends on how many there are:

- up to VALUES_ROWS_MAX: a VALUES list of scalar parameters. A lone cancel or agent
  report (one row per table) is the latency path: measured here (2 cores, PostgreSQL
  15, asyncpg 0.32, fsync on) its statement took 0.6-0.8 ms against 1.1-1.8 ms with
  `unnest` arrays; up to 32 rows per table VALUES stayed the faster (a multi-argument
  `unnest` in FROM builds a tuple store per array, whatever the rows);
- more: one `unnest` array per column, one statement text whatever the count (500
  rows: 4-8 ms against 8-13 ms for `executemany`).

A VALUES list's text depends on its row count, so each count is a statement of its
own, prepared once per pool connection and kept in asyncpg's statement cache; the
bound keeps those texts few and short (under asyncpg's 15 KiB cacheable size).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from buildcontrol_server.store.postgres_sql import (
    BUILD_COLUMN_TYPES,
    INSERT_AUDIT,
    JOB_COLUMN_TYPES,
    STEP_COLUMN_TYPES,
    ArrayStatement,
    insert_audit,
    leases_held,
    rows_from,
)
from buildcontrol_server.store.rows import Row

# A table's rows up to this many go in as a VALUES list, more as unnest arrays.
VALUES_ROWS_MAX = 32
# Statement texts kept (one per shape: the tables written and their VALUES counts).
TEXTS_KEPT = 512
# SQLSTATE of buildcontrol_check_versions (postgres_schema.py): a compare-and-set missed.
VERSIONS_MISSED = "BC409"


@dataclass(frozen=True)
class UpdateStatement(ArrayStatement):
    """A compare-and-set UPDATE; `at(offset, listed)` is its text with parameters
    numbered from offset + 1, to sit beside others in one statement."""

    assigned: tuple[tuple[str, str], ...] = ()
    keys: tuple[tuple[str, str], ...] = ()

    def at(self, offset: int, listed: int | None = None) -> str:
        """`listed`: that many rows as a VALUES list; None: unnest arrays."""
        table = self.table
        columns = [*self.assigned, *self.keys, ("expected_version", "int8")]
        sets = ", ".join(f"{name} = u.{name}" for name, _ in self.assigned)
        matches = " AND ".join(f"{table}.{name} = u.{name}" for name, _ in self.keys)
        returned = ", ".join(f"{table}.{name}" for name, _ in self.keys)
        return (
            f"UPDATE {table} SET {sets} FROM {rows_from(columns, offset, listed)}"
            f" WHERE {matches} AND {table}.version = u.expected_version RETURNING {returned}"
        )


def _update(
    table: str,
    column_types: Sequence[tuple[str, str]],
    assigned: Sequence[str],
    keys: Sequence[str],
) -> UpdateStatement:
    """Rows are (assigned columns…, key columns…, expected version), as rows.py has them;
    each column's type is the table's (`column_types`)."""
    types = dict(column_types)
    typed_assigned = tuple((name, types[name]) for name in assigned)
    typed_keys = tuple((name, types[name]) for name in keys)
    count = len(assigned) + len(keys) + 1
    statement = UpdateStatement(table, "", count, typed_assigned, typed_keys)
    return UpdateStatement(table, statement.at(0), count, typed_assigned, typed_keys)


UPDATE_BUILDS = _update(
    "builds",
    BUILD_COLUMN_TYPES,
    (
        "status",
        "finished_at",
        "cancel_reason",
        "cancel_requested_by",
        "cancel_force",
        "cancel_grace_period",
        "cancel_requested_at",
        "version",
        "cancel_escalations",
    ),
    ("build_id",),
)
UPDATE_JOBS = _update(
    "jobs",
    JOB_COLUMN_TYPES,
    ("status", "outcome", "agent_id", "exit_code", "finished_at", "version", "started_at"),
    ("job_id",),
)
UPDATE_STEPS = _update(
    "steps", STEP_COLUMN_TYPES, ("status", "exit_code", "version"), ("job_id", "step_index")
)

# The tables of one statement with their rows, in the order of the result's counts.
Tables = Sequence[tuple[UpdateStatement, Sequence[Row]]]
# Per table: the statement and its VALUES row count (None: unnest arrays).
Shape = tuple[tuple[UpdateStatement, int | None], ...]


def listed(count: int) -> int | None:
    """How `count` rows of a table go in: that many VALUES rows, or None (arrays)."""
    return count if count <= VALUES_ROWS_MAX else None


def counted(tables: Tables) -> tuple[str, list[Any]]:
    """The updates of `tables` in one statement and its parameters; its one result
    row is the number of rows each table matched, in the order given."""
    shape = _shape(tables)
    return _counted_text(shape), _parameters(tables, shape)


def checked(tables: Tables, audit: Sequence[Row], fenced: bool = False) -> tuple[str, list[Any]]:
    """`counted` that aborts itself (VERSIONS_MISSED) unless each table matched all
    its rows: atomic without BEGIN/COMMIT around it, in autocommit. With `audit`,
    the audit rows (INSERT_AUDIT's columns) of the cancels it ends are inserted by
    the same statement, and aborted with the rest on a miss. The last parameter is
    the rows each table must match. `fenced` (a replica's write,
    postgres_fenced_writer.py): the caller appends to that list the number of lease
    rows it must still hold, then five parameters: the shards and their epochs and
    its instance id (postgres_sql.leases_held), the NOTIFY's channel and payload
    (sent by the statement, so delivered only if it commits)."""
    shape = _shape(tables)
    audit_listed = (listed(len(audit)),) if audit else ()
    arguments = _parameters(tables, shape)
    for count in audit_listed:
        arguments += INSERT_AUDIT.parameters(audit, count is not None)
    arguments.append([len(table_rows) for _, table_rows in tables])
    return _checked_text(shape, audit_listed, fenced), arguments


def _shape(tables: Tables) -> Shape:
    return tuple((statement, listed(len(table_rows))) for statement, table_rows in tables)


def _parameters(tables: Tables, shape: Shape) -> list[Any]:
    arguments: list[Any] = []
    for (statement, count), (_, table_rows) in zip(shape, tables, strict=True):
        arguments += statement.parameters(table_rows, count is not None)
    return arguments


def _ctes(shape: Shape) -> tuple[list[str], list[str], int]:
    """One CTE per table, the counts of their matches, and the parameters used."""
    parts: list[str] = []
    counts: list[str] = []
    offset = 0
    for position, (statement, count) in enumerate(shape):
        parts.append(f"u{position} AS ({statement.at(offset, count)})")
        counts.append(f"(SELECT count(*) FROM u{position})")
        offset += statement.column_count * (1 if count is None else count)
    return parts, counts, offset


@functools.lru_cache(maxsize=TEXTS_KEPT)
def _counted_text(shape: Shape) -> str:
    parts, counts, _ = _ctes(shape)
    return f"WITH {', '.join(parts)} SELECT {', '.join(counts)}"


@functools.lru_cache(maxsize=TEXTS_KEPT)
def _checked_text(shape: Shape, audit: tuple[int | None, ...], fenced: bool) -> str:
    """`audit`: () without audit rows, else (their VALUES count or None,)."""
    parts, counts, offset = _ctes(shape)
    for count in audit:
        # A data-modifying CTE runs to completion whether or not it is read.
        parts.append(f"a AS ({insert_audit(offset, count)})")
        offset += INSERT_AUDIT.column_count * (1 if count is None else count)
    notify = ""
    if fenced:
        # The lease rows still held, locked until the statement commits.
        parts.append(f"f AS ({leases_held(offset + 1)})")
        counts.append("(SELECT count(*) FROM f)")
        notify = f", pg_notify(${offset + 5}, ${offset + 6})"
    return (
        f"WITH {', '.join(parts)} SELECT buildcontrol_check_versions("
        f"ARRAY[{', '.join(counts)}]::bigint[], ${offset + 1}::bigint[]){notify}"
    )
