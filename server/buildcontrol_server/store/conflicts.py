"""Turn a compare-and-set miss into a VersionConflict that names the entity.

Only on the failure path: `executemany` reports how many rows matched in total, not
which one missed, so the versions are read back to find it. Called after the
change set was rolled back to its savepoint, so what is read is exactly what the
change set was compared against.
"""

from __future__ import annotations

from typing import Any

import aiosqlite

from buildcontrol_server.domain.errors import VersionConflict
from buildcontrol_server.store.reads import select_in
from buildcontrol_server.store.rows import Row


async def describe_conflict(
    connection: aiosqlite.Connection, table: str, rows: list[Row]
) -> VersionConflict:
    """`rows` are UPDATE rows of rows.py: key columns then expected version, last."""
    expected: dict[tuple[Any, ...], int]
    found: dict[tuple[Any, ...], int]
    if table == "steps":
        expected = {(row[-3], row[-2]): row[-1] for row in rows}
        sql = "SELECT job_id, step_index, version FROM steps WHERE job_id IN ({})"
        job_ids = sorted({key[0] for key in expected})
        found = {
            (row[0], row[1]): row[2]
            for row in await select_in(connection, sql, job_ids)
            if (row[0], row[1]) in expected
        }
        noun = "step"
    else:
        expected = {(row[-2],): row[-1] for row in rows}
        key_column = "build_id" if table == "builds" else "job_id"
        sql = f"SELECT {key_column}, version FROM {table} WHERE {key_column} IN ({{}})"
        keys = [key[0] for key in expected]
        found = {(row[0],): row[1] for row in await select_in(connection, sql, keys)}
        noun = table[:-1]
    return conflict_between(noun, expected, found, table)


def conflict_between(
    noun: str,
    expected: dict[tuple[Any, ...], int],
    found: dict[tuple[Any, ...], int],
    table: str,
) -> VersionConflict:
    """The error of a compare-and-set miss, from the versions expected and found (the
    same wording on every backend)."""
    stale = [key for key, version in expected.items() if found.get(key) != version]
    if not stale:
        return VersionConflict(f"{table}: a row changed while being written")
    key = stale[0]
    name = "#".join(str(part) for part in key)
    current = found.get(key)
    state = f"found version {current}" if current is not None else "it does not exist"
    more = f" (and {len(stale) - 1} more)" if len(stale) > 1 else ""
    return VersionConflict(
        f"{noun} {name} changed concurrently: expected version {expected[key]}, {state}{more}"
    )
