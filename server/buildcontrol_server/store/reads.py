"""Read queries that go beyond one statement: builds completed with their jobs and
steps by id, the cancel audit, and `IN (…)` lists longer than SQLite takes at once.

Each function runs on a connection the caller holds inside one read transaction
(SqliteStore._snapshot), so everything it returns comes from the same commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import aiosqlite

from buildcontrol_server.domain.model import Build, CancelRecord
from buildcontrol_server.store import rows, schema
from buildcontrol_server.store.audit_records import record_from_json

# SQLite allows 32,766 parameters per statement (999 before 3.32); stay well below.
IN_CHUNK = 500


# Walks the builds_canceled partial index (cancelled builds only, in id order) and
# probes cancel_audit's primary key for each: other builds' history is not read.
# `build_id > ?` lets a sweep page on: each page starts where the last ended instead
# of probing the already audited prefix again (quadratic over a large backfill).
CANCELED_WITHOUT_AUDIT = (
    f"SELECT {rows.BUILD_COLUMNS} FROM builds WHERE builds.{schema.CANCELED_WHERE}"
    " AND builds.build_id > ?"
    " AND NOT EXISTS (SELECT 1 FROM cancel_audit WHERE cancel_audit.build_id = builds.build_id)"
    " ORDER BY builds.build_id LIMIT ?"
)


async def select_in(
    connection: aiosqlite.Connection,
    sql_template: str,
    keys: Sequence[Any],
    chunk: int | None = None,
) -> list[Any]:
    """Rows of `sql_template` (one `{}` where the `?, ?, …` list goes) for all keys,
    `chunk` (default IN_CHUNK) keys per statement, in the order of the chunks."""
    chunk = chunk or IN_CHUNK
    found: list[Any] = []
    for start in range(0, len(keys), chunk):
        part = keys[start : start + chunk]
        sql = sql_template.format(", ".join("?" * len(part)))
        found.extend(await connection.execute_fetchall(sql, part))
    return found


async def complete_builds(
    connection: aiosqlite.Connection, build_rows: Sequence[Sequence[Any]]
) -> list[Build]:
    """The builds of `build_rows` (in that order) with their stages, jobs and steps."""
    build_ids = [row[0] for row in build_rows]
    job_rows = await select_in(
        connection,
        f"SELECT {rows.JOB_COLUMNS} FROM jobs WHERE build_id IN ({{}}) ORDER BY build_id, position",
        build_ids,
    )
    step_rows = await select_in(
        connection,
        f"SELECT {rows.STEP_COLUMNS} FROM jobs JOIN steps ON steps.job_id = jobs.job_id"
        " WHERE jobs.build_id IN ({}) ORDER BY steps.job_id, steps.step_index",
        build_ids,
    )
    # Chunks keep their own order; assemble only needs each job's steps in order,
    # and a job's steps never span two chunks (they are chunked by build).
    return rows.assemble(build_rows, job_rows, step_rows)


async def audit_records(
    connection: aiosqlite.Connection, build_ids: list[str] | None
) -> list[CancelRecord]:
    if build_ids is None:
        found = await connection.execute_fetchall(
            "SELECT record FROM cancel_audit ORDER BY build_id"
        )
    else:
        # Sorted, so the chunks (each ordered by build_id) come out in one order.
        found = await select_in(
            connection,
            "SELECT record FROM cancel_audit WHERE build_id IN ({}) ORDER BY build_id",
            sorted(set(build_ids)),
        )
    return [record_from_json(row[0]) for row in found]


async def canceled_without_audit(
    connection: aiosqlite.Connection, limit: int, after_build_id: str | None
) -> list[Build]:
    if limit <= 0:
        raise ValueError(f"limit must be positive, not {limit}")
    # "" sorts before every build id: no lower bound.
    parameters = (after_build_id or "", limit)
    build_rows = await connection.execute_fetchall(CANCELED_WITHOUT_AUDIT, parameters)
    return await complete_builds(connection, list(build_rows))
