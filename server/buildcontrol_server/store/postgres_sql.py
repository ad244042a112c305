"""The SQL text of the PostgreSQL store: `$n` parameters, statements over arrays.

The rows are the ones rows.py makes for SQLite (`PreparedWrite`), so both backends
write exactly the same values. Each write is one statement over column arrays:

- inserts: `INSERT … SELECT * FROM unnest($1::text[], …)`, one round trip per table;
- compare-and-set updates: postgres_updates.py (VALUES lists for few rows, the same
  `unnest` arrays for many).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from buildcontrol_server.store import rows, webhook_rows


@dataclass(frozen=True)
class ArrayStatement:
    """A statement whose parameters are one array per column of its rows."""

    table: str
    sql: str
    column_count: int

    def arguments(self, table_rows: Sequence[Sequence[Any]]) -> list[list[Any]]:
        """The rows transposed into one list per column (the `unnest` arrays)."""
        return [[row[column] for row in table_rows] for column in range(self.column_count)]

    def parameters(self, table_rows: Sequence[Sequence[Any]], listed: bool) -> list[Any]:
        """The rows' parameters: row after row for a VALUES list (`listed`, see
        rows_from), else one array per column."""
        if not listed:
            return self.arguments(table_rows)
        return [row[column] for row in table_rows for column in range(self.column_count)]


def _unnest(types: Sequence[str], offset: int = 0) -> str:
    return ", ".join(f"${n}::{kind}[]" for n, kind in enumerate(types, start=offset + 1))


def _scalars(types: Sequence[str], offset: int) -> str:
    return ", ".join(f"${n}::{kind}" for n, kind in enumerate(types, start=offset + 1))


def rows_from(columns: Sequence[tuple[str, str]], offset: int, listed: int | None) -> str:
    """The FROM item `… AS u(columns)` of a statement's rows, its parameters numbered
    from offset + 1: `listed` rows of scalar parameters (a VALUES list, row after
    row), or with `listed` None one `unnest` array per column (postgres_updates.py
    says when each)."""
    names = ", ".join(name for name, _ in columns)
    types = [kind for _, kind in columns]
    if listed is None:
        return f"unnest({_unnest(types, offset)}) AS u({names})"
    width = len(types)
    values = ", ".join(f"({_scalars(types, offset + row * width)})" for row in range(listed))
    return f"(VALUES {values}) AS u({names})"


def _insert(table: str, columns: Sequence[str], types: Sequence[str], suffix: str = "") -> str:
    names = ", ".join(columns)
    return f"INSERT INTO {table} ({names}) SELECT * FROM unnest({_unnest(types)}){suffix}"


# Every column of the three tables with its PostgreSQL type (the updates name theirs).
BUILD_COLUMN_TYPES = (
    ("build_id", "text"),
    ("pipeline", "text"),
    ("stage_names", "text"),
    ("created_at", "float8"),
    ("status", "text"),
    ("finished_at", "float8"),
    ("cancel_reason", "text"),
    ("cancel_requested_by", "text"),
    ("cancel_force", "int8"),
    ("cancel_grace_period", "float8"),
    ("cancel_requested_at", "float8"),
    ("version", "int8"),
    ("concurrency_group", "text"),
    ("cancel_in_progress", "int8"),
    ("submitted_by", "text"),
    ("cancel_escalations", "text"),
)
JOB_COLUMN_TYPES = (
    ("job_id", "text"),
    ("build_id", "text"),
    ("stage_index", "int8"),
    ("position", "int8"),
    ("name", "text"),
    ("labels", "text"),
    ("env", "text"),
    ("status", "text"),
    ("outcome", "text"),
    ("agent_id", "text"),
    ("exit_code", "int8"),
    ("finished_at", "float8"),
    ("version", "int8"),
    ("run_on_cancel", "int8"),
    ("timeout", "float8"),
    ("started_at", "float8"),
    ("secret_env_names", "text"),
)
STEP_COLUMN_TYPES = (
    ("job_id", "text"),
    ("step_index", "int8"),
    ("name", "text"),
    ("command", "text"),
    ("status", "text"),
    ("exit_code", "int8"),
    ("version", "int8"),
    ("run_on_cancel", "int8"),
)
_SUBMIT_REQUEST_INSERT_COLUMNS = (
    ("submitter", "text"),
    ("request_id", "text"),
    ("digest", "text"),
    ("build_id", "text"),
)
_OUTBOX_INSERT_COLUMNS = (
    ("delivery_id", "text"),
    ("event", "text"),
    ("build_id", "text"),
    ("payload", "text"),
    ("created_at", "float8"),
)
_DELIVERY_COLUMNS = (
    ("delivery_id", "text"),
    ("endpoint", "text"),
    ("endpoint_label", "text"),
    ("state", "text"),
    ("attempts", "int8"),
    ("last_status", "int8"),
    ("last_error", "text"),
    ("last_attempt_at", "float8"),
)
_PENDING_DELIVERY_COLUMNS = _DELIVERY_COLUMNS[:3]
_AUDIT_INSERT_COLUMNS = (
    ("build_id", "text"),
    ("record", "text"),
    ("requested_at", "float8"),
    ("finished_at", "float8"),
)


def _insert_statement(
    table: str, columns: Sequence[tuple[str, str]], suffix: str = ""
) -> ArrayStatement:
    names = [name for name, _ in columns]
    types = [kind for _, kind in columns]
    return ArrayStatement(table, _insert(table, names, types, suffix), len(columns))


INSERT_BUILDS = _insert_statement("builds", BUILD_COLUMN_TYPES)
INSERT_JOBS = _insert_statement("jobs", JOB_COLUMN_TYPES)
INSERT_STEPS = _insert_statement("steps", STEP_COLUMN_TYPES)


# DO NOTHING: the start-up sweep and a retry after an ambiguous failure may write
# the same cancel as its CANCELED write did; the first row stands (as SQLite's OR
# IGNORE). written_at is the statement's own clock, in epoch seconds with fractions.
def insert_audit(offset: int, listed: int | None = None) -> str:
    """The audit rows' INSERT, parameters from offset + 1 (`listed`: rows_from)."""
    return (
        "INSERT INTO cancel_audit (build_id, record, requested_at, finished_at, written_at)"
        " SELECT u.*, extract(epoch FROM statement_timestamp())::float8"
        f" FROM {rows_from(_AUDIT_INSERT_COLUMNS, offset, listed)}"
        " ON CONFLICT (build_id) DO NOTHING"
    )


INSERT_AUDIT = ArrayStatement("cancel_audit", insert_audit(0), len(_AUDIT_INSERT_COLUMNS))
# A plain INSERT, as on SQLite: a second row of one key is refused (StoreWriteError).
INSERT_SUBMIT_REQUESTS = _insert_statement("submit_requests", _SUBMIT_REQUEST_INSERT_COLUMNS)
# DO NOTHING: the event's id is its key; a second write of one event is a no-op.
INSERT_OUTBOX = _insert_statement(
    "webhook_outbox", _OUTBOX_INSERT_COLUMNS, " ON CONFLICT (delivery_id) DO NOTHING"
)
# The PENDING row of each endpoint; never overwrites a state a worker already wrote.
INSERT_PENDING_DELIVERIES = ArrayStatement(
    "webhook_deliveries",
    "INSERT INTO webhook_deliveries (delivery_id, endpoint, endpoint_label, state, attempts)"
    f" SELECT u.*, 'PENDING', 0 FROM unnest({_unnest([k for _, k in _PENDING_DELIVERY_COLUMNS])})"
    " AS u(delivery_id, endpoint, endpoint_label)"
    " ON CONFLICT (delivery_id, endpoint) DO NOTHING",
    len(_PENDING_DELIVERY_COLUMNS),
)
# The rows of one statement must name distinct keys (ON CONFLICT DO UPDATE changes a
# row at most once per statement): postgres_writer.py keeps the last row of each key,
# which is what SQLite's upserts one after another leave.
UPSERT_DELIVERIES = _insert_statement(
    "webhook_deliveries",
    _DELIVERY_COLUMNS,
    " ON CONFLICT (delivery_id, endpoint) DO UPDATE SET"
    " endpoint_label = excluded.endpoint_label, state = excluded.state,"
    " attempts = excluded.attempts, last_status = excluded.last_status,"
    " last_error = excluded.last_error, last_attempt_at = excluded.last_attempt_at",
)


def leases_held(offset: int) -> str:
    """The lease rows of the shards a replica's write touches that it still holds at
    the epochs it knows (parameters offset + 1..3: shards, epochs, its instance id),
    locked against a takeover until the transaction ends (in shard order, as the
    leases' own statements lock them: no deadlock between them). A takeover committed
    meanwhile is seen (READ COMMITTED re-reads a row updated under the lock)."""
    return (
        "SELECT l.shard FROM shard_leases l"
        f" JOIN unnest(${offset + 1}::int[], ${offset + 2}::bigint[]) AS held(shard, epoch)"
        f" ON l.shard = held.shard WHERE l.epoch = held.epoch AND l.owner = ${offset + 3}"
        " ORDER BY l.shard FOR SHARE OF l"
    )


# ---- reads --------------------------------------------------------------------------

# A build with its jobs and steps in one statement (one round trip, where BEGIN, three
# SELECTs and COMMIT took five): a statement reads one snapshot, its subqueries
# included, so the three come from one commit without a transaction. Jobs and steps
# come as arrays of anonymous records (tuples), in the order assemble() wants.
SELECT_WHOLE_BUILD = (
    f"SELECT {rows.BUILD_COLUMNS},"
    f" ARRAY(SELECT ROW({rows.JOB_COLUMNS}) FROM jobs WHERE jobs.build_id = $1"
    " ORDER BY jobs.position),"
    f" ARRAY(SELECT ROW({rows.STEP_COLUMNS}) FROM steps WHERE steps.job_id = ANY("
    "ARRAY(SELECT jobs.job_id FROM jobs WHERE jobs.build_id = $1))"
    " ORDER BY steps.job_id, steps.step_index)"
    " FROM builds WHERE builds.build_id = $1"
)
# Steps by the ids of the jobs just read in the same snapshot, not by a join on
# jobs.build_id: on tables filled faster than autovacuum analyzes them the planner
# chose a hash join over a sequential scan of every step (0.75 ms a read with 4,000
# steps, growing with the table), where this is an index scan of the key.
SELECT_STEPS_OF_JOBS = (
    f"SELECT {rows.STEP_COLUMNS} FROM steps WHERE steps.job_id = ANY($1::text[])"
    " ORDER BY steps.job_id, steps.step_index"
)
SELECT_JOBS_OF_BUILDS = (
    f"SELECT {rows.JOB_COLUMNS} FROM jobs WHERE build_id = ANY($1::text[])"
    " ORDER BY build_id, position"
)
# The partial index builds_unfinished is used when the query repeats its condition.
UNFINISHED = "builds.status NOT IN ('SUCCEEDED', 'FAILED', 'CANCELED')"
SELECT_UNFINISHED_BUILDS = (
    f"SELECT {rows.BUILD_COLUMNS} FROM builds WHERE {UNFINISHED} ORDER BY build_id"
)
SELECT_UNFINISHED_IDS = f"SELECT build_id FROM builds WHERE {UNFINISHED} ORDER BY build_id"
SELECT_CANCELING_SINCE = (
    f"SELECT build_id, cancel_requested_at FROM builds WHERE {UNFINISHED}"
    " AND builds.status = 'CANCELING'"
)
SELECT_ALL_AUDIT = "SELECT record FROM cancel_audit ORDER BY build_id"
SELECT_AUDIT_OF = (
    "SELECT record FROM cancel_audit WHERE build_id = ANY($1::text[]) ORDER BY build_id"
)
SELECT_CANCELED_WITHOUT_AUDIT = (
    f"SELECT {rows.BUILD_COLUMNS} FROM builds WHERE builds.status = 'CANCELED'"
    " AND builds.build_id > $1"
    " AND NOT EXISTS (SELECT 1 FROM cancel_audit WHERE cancel_audit.build_id = builds.build_id)"
    " ORDER BY builds.build_id LIMIT $2"
)
SELECT_SUBMIT_REQUEST = (
    "SELECT digest, build_id FROM submit_requests WHERE submitter = $1 AND request_id = $2"
)


def numbered(sqlite_sql: str) -> str:
    """SQLite's text with its `?` parameters numbered `$1, $2, …` (for queries whose
    text is otherwise the same on both backends and holds no literal `?`)."""
    parts = sqlite_sql.split("?")
    return "".join(f"{part}${n}" for n, part in enumerate(parts[:-1], start=1)) + parts[-1]


SELECT_UNDELIVERED = numbered(webhook_rows.UNDELIVERED)
SELECT_WEBHOOK_LISTING = numbered(webhook_rows.LISTING)
SELECT_OUTBOX_ENTRY = numbered(webhook_rows.OUTBOX_ENTRY)
SELECT_DELIVERY_ATTEMPTS = (
    "SELECT endpoint, attempts FROM webhook_deliveries WHERE delivery_id = $1"
)
SELECT_BUILD_VERSIONS = "SELECT build_id, version FROM builds WHERE build_id = ANY($1::text[])"
SELECT_JOB_VERSIONS = "SELECT job_id, version FROM jobs WHERE job_id = ANY($1::text[])"
SELECT_STEP_VERSIONS = (
    "SELECT job_id, step_index, version FROM steps WHERE job_id = ANY($1::text[])"
)


def list_builds(before: bool, pipeline: bool) -> str:
    """ListBuilds' query; the parameters are (before?, pipeline?, limit) in that order."""
    conditions: list[str] = []
    if before:
        conditions.append(f"build_id < ${len(conditions) + 1}")
    if pipeline:
        conditions.append(f"pipeline = ${len(conditions) + 1}")
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    limit = len(conditions) + 1
    return f"SELECT {rows.BUILD_COLUMNS} FROM builds{where} ORDER BY build_id DESC LIMIT ${limit}"
