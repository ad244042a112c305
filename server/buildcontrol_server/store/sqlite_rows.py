"""Many rows in one SQLite statement instead of one `executemany` step per row.

Python's sqlite3 gives up the GIL around each step of a statement and must take it
back before the next row; with the event loop's thread busy, each row waited for it
(up to the 5 ms switch interval): the CANCELING commit of 500 builds took 130-340 ms
of wall time for ~30 ms of work, and CancelBuilds tells its next batch only once the
previous one is committed. Here the rows of one statement shape go as a few
statements of many rows each (`INSERT … VALUES (…), (…)`, `UPDATE … FROM (VALUES
…)`), so SQLite's thread takes the GIL a few times per commit. Measured beside a busy
Python thread (20,000 compare-and-set updates, 2 cores): `executemany` 107 s, here
0.26 s.

An UPDATE joined to VALUES uses one row per target row, so the rows of one key (a
change set merged after another that updated the same entity) go in rounds, in their
order: each round names a key at most once, as `executemany` applied them one by one.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

Row = Sequence[Any]

# UPDATE … FROM came with SQLite 3.33; before it, rows go one by one as before.
_UPDATE_FROM = sqlite3.sqlite_version_info >= (3, 33, 0)
# At most this many placeholders per statement, and at most the connection's own
# limit (SQLITE_MAX_VARIABLE_NUMBER: 32,766 since 3.32, 999 before, lower if SQLite
# was built so): a statement of more is refused.
_MAX_VARIABLES = 32766
_UPDATE = re.compile(r"UPDATE (\w+) SET (.+) WHERE (.+)", re.DOTALL)
_PLACED = re.compile(r"(\w+) = \?")


def insert_rows(connection: sqlite3.Connection, sql: str, rows: Sequence[Row]) -> None:
    """Run the one-row INSERT `sql` for every row, in order."""
    if len(rows) == 1:
        connection.execute(sql, rows[0])  # a lone cancel's: the statement as written
        return
    width = len(rows[0])
    for part in _parts(connection, rows, width):
        connection.execute(_inserts(sql, len(part)), [value for row in part for value in row])


def update_rows(connection: sqlite3.Connection, sql: str, rows: Sequence[Row]) -> int:
    """Run the compare-and-set UPDATE `sql` (`SET col = ?, … WHERE key = ? AND …
    AND version = ?`) for every row, in order; the number of rows it changed."""
    if len(rows) == 1 or not _UPDATE_FROM:
        return connection.executemany(sql, rows).rowcount
    keys = _key_slice(sql)
    changed = 0
    for round_rows in _rounds(rows, keys):
        for part in _parts(connection, round_rows, len(round_rows[0])):
            statement = _updates(sql, len(part))
            cursor = connection.execute(statement, [value for row in part for value in row])
            changed += cursor.rowcount
    return changed


def _parts(connection: sqlite3.Connection, rows: Sequence[Row], width: int) -> list[Sequence[Row]]:
    limit = min(_MAX_VARIABLES, connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))
    per_statement = max(1, limit // width)
    return [rows[start : start + per_statement] for start in range(0, len(rows), per_statement)]


def _rounds(rows: Sequence[Row], keys: slice) -> list[list[Row]]:
    seen: dict[tuple[Any, ...], int] = {}
    rounds: list[list[Row]] = []
    for row in rows:
        key = tuple(row[keys])
        number = seen.get(key, 0)
        seen[key] = number + 1
        if number == len(rounds):
            rounds.append([])
        rounds[number].append(row)
    return rounds


@lru_cache(maxsize=64)
def _parsed(sql: str) -> tuple[str, list[str], list[str]]:
    """(table, SET columns, WHERE columns) of `UPDATE t SET a = ?, … WHERE k = ? AND …`;
    ValueError for any other shape (its rows could not be rewritten faithfully)."""
    match = _UPDATE.fullmatch(sql)
    if match is None:
        raise ValueError(f"not an UPDATE … SET … WHERE …: {sql}")
    table, assignments, conditions = match.groups()
    sets = [_placed(part, sql) for part in assignments.split(", ")]
    keys = [_placed(part, sql) for part in conditions.split(" AND ")]
    return table, sets, keys


def _placed(part: str, sql: str) -> str:
    match = _PLACED.fullmatch(part.strip())
    if match is None:
        raise ValueError(f"only `column = ?` can be rewritten, not {part!r} in: {sql}")
    return match.group(1)


def _key_slice(sql: str) -> slice:
    """Which of a row's values name its entity: the WHERE's, but the last (version)."""
    _, sets, _ = _parsed(sql)
    return slice(len(sets), -1)


@lru_cache(maxsize=256)
def _inserts(sql: str, count: int) -> str:
    start = sql.index("VALUES (") + len("VALUES ")
    depth, end = 0, start
    for end in range(start, len(sql)):
        depth += {"(": 1, ")": -1}.get(sql[end], 0)
        if depth == 0:
            break
    group = sql[start : end + 1]
    return sql[:start] + ", ".join([group] * count) + sql[end + 1 :]


@lru_cache(maxsize=256)
def _updates(sql: str, count: int) -> str:
    table, sets, keys = _parsed(sql)
    assigned = ", ".join(f"{name} = v.column{n}" for n, name in enumerate(sets, 1))
    where = " AND ".join(
        f"{table}.{name} = v.column{n}" for n, name in enumerate(keys, len(sets) + 1)
    )
    group = "(" + ", ".join(["?"] * (len(sets) + len(keys))) + ")"
    values = ", ".join([group] * count)
    return f"UPDATE {table} SET {assigned} FROM (VALUES {values}) AS v WHERE {where}"
