"""A whole group-commit transaction in one hop to SQLite's thread.

Every `await` on an aiosqlite connection is one round trip to its worker thread and
back through the event loop (~0.1 ms, several times that on a loaded machine). The
common transaction (BEGIN IMMEDIATE, a SAVEPOINT, one `executemany` per statement
shape, RELEASE, COMMIT) made six to ten of them, and a lone cancel waits for its
CANCELING commit before its StopJob may leave. Here the whole of it is one function
run on the connection's own thread: one hop. Only when a compare-and-set misses (or
SQLite refuses a row) does it roll back to before the statements and leave the
transaction open, for the writer to replay the change sets one by one, each in its
own SAVEPOINT, as before. Each statement shape's rows go as a few statements of
many rows (sqlite_rows.py), not one step per row.
"""

from __future__ import annotations

import sqlite3

import aiosqlite

from buildcontrol_server.store.rows import PreparedWrite
from buildcontrol_server.store.sqlite_rows import insert_rows, update_rows


async def commit_merged(connection: aiosqlite.Connection, write: PreparedWrite) -> tuple[bool, int]:
    """Write `write` and commit, in one hop. (True, statements) once committed;
    (False, statements) when a row was refused: nothing of it remains and the
    transaction is still open. An error that aborts the transaction is raised."""
    # aiosqlite's own queue to its thread (the path its execute() takes), given the
    # whole transaction instead of one statement; `_conn` is the sqlite3 connection
    # that lives on that thread.
    outcome: tuple[bool, int] = await connection._execute(  # type: ignore[no-untyped-call]
        _transaction, connection._conn, write
    )
    return outcome


def _transaction(connection: sqlite3.Connection, write: PreparedWrite) -> tuple[bool, int]:
    connection.execute("BEGIN IMMEDIATE")
    connection.execute("SAVEPOINT batch")
    statements = 0
    try:
        statements = _apply(connection, write)
    except (_Refused, sqlite3.Error):
        if not connection.in_transaction:
            raise  # SQLite aborted the transaction: the whole batch fails
        connection.execute("ROLLBACK TO batch")
        connection.execute("RELEASE batch")
        return False, statements
    connection.execute("RELEASE batch")
    connection.execute("COMMIT")
    return True, statements


class _Refused(Exception):
    """Some rows of an update did not match their expected version."""


def _apply(connection: sqlite3.Connection, write: PreparedWrite) -> int:
    statements = 0
    for sql, rows in write.inserts():
        if rows:
            statements += 1
            insert_rows(connection, sql, rows)
    for _table, sql, rows in write.updates():
        if rows:
            statements += 1
            # Every row names one primary key, so all matched iff the sum is len.
            if update_rows(connection, sql, rows) != len(rows):
                raise _Refused()
    return statements
