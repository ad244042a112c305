"""Many rows per SQLite statement (store/sqlite_rows.py) write what `executemany`
wrote: the same rows, in the same order, the same compare-and-set counts, also when
a key comes twice or the rows outnumber one statement's placeholders."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest
from buildcontrol_server.store import sqlite_rows
from buildcontrol_server.store.audit_records import INSERT_AUDIT
from buildcontrol_server.store.rows import UPDATE_STEP
from buildcontrol_server.store.webhook_rows import INSERT_PENDING_DELIVERY, UPSERT_DELIVERY

UPDATE_ITEM = "UPDATE items SET status = ?, version = ? WHERE item_id = ? AND version = ?"
INSERT_ITEM = "INSERT INTO items (item_id, status, version) VALUES (?, ?, 1)"


@pytest.fixture
def connection() -> Iterator[sqlite3.Connection]:
    db = sqlite3.connect(":memory:", isolation_level=None)
    db.execute("CREATE TABLE items (item_id TEXT PRIMARY KEY, status TEXT, version INTEGER)")
    db.execute(
        "CREATE TABLE steps (job_id TEXT, step_index INTEGER, status TEXT, exit_code INTEGER,"
        " version INTEGER, PRIMARY KEY (job_id, step_index))"
    )
    db.execute(
        "CREATE TABLE cancel_audit (build_id TEXT PRIMARY KEY, record TEXT, requested_at REAL,"
        " finished_at REAL, written_at REAL)"
    )
    db.execute(
        "CREATE TABLE webhook_deliveries (delivery_id TEXT, endpoint TEXT, endpoint_label TEXT,"
        " state TEXT, attempts INTEGER, last_status INTEGER, last_error TEXT,"
        " last_attempt_at REAL, PRIMARY KEY (delivery_id, endpoint))"
    )
    yield db
    db.close()


def _items(db: sqlite3.Connection) -> list[tuple[Any, ...]]:
    return db.execute("SELECT item_id, status, version FROM items ORDER BY item_id").fetchall()


def test_inserts_write_every_row_with_the_constants_of_the_statement(
    connection: sqlite3.Connection,
) -> None:
    sqlite_rows.insert_rows(connection, INSERT_ITEM, [(f"i{n:03d}", "NEW") for n in range(300)])
    items = _items(connection)
    assert len(items) == 300 and items[0] == ("i000", "NEW", 1) and items[-1][0] == "i299"
    # A function call inside the VALUES group, as the audit rows have.
    audit = [(f"b{n}", "{}", 1.5, 2.5) for n in range(3)]
    sqlite_rows.insert_rows(connection, INSERT_AUDIT, audit)
    written = connection.execute("SELECT build_id, written_at FROM cancel_audit").fetchall()
    assert [row[0] for row in written] == ["b0", "b1", "b2"]
    assert all(row[1] > 1.7e9 for row in written)


def test_an_upsert_applies_rows_of_one_key_in_order(connection: sqlite3.Connection) -> None:
    sqlite_rows.insert_rows(connection, INSERT_PENDING_DELIVERY, [("d1", "ep", "label")])
    rows = [
        ("d1", "ep", "label", "FAILED", 1, 500, "boom", 1.0),
        ("d1", "ep", "label", "DELIVERED", 2, 200, None, 2.0),
    ]
    sqlite_rows.insert_rows(connection, UPSERT_DELIVERY, rows)
    state = connection.execute("SELECT state, attempts FROM webhook_deliveries").fetchall()
    assert state == [("DELIVERED", 2)]


def test_updates_count_only_rows_whose_version_matched(connection: sqlite3.Connection) -> None:
    sqlite_rows.insert_rows(connection, INSERT_ITEM, [("a", "NEW"), ("b", "NEW"), ("c", "NEW")])
    changed = sqlite_rows.update_rows(
        connection, UPDATE_ITEM, [("DONE", 2, "a", 1), ("DONE", 2, "b", 7), ("DONE", 2, "c", 1)]
    )
    assert changed == 2
    assert _items(connection) == [("a", "DONE", 2), ("b", "NEW", 1), ("c", "DONE", 2)]


def test_a_key_updated_twice_goes_in_order_as_one_by_one(connection: sqlite3.Connection) -> None:
    sqlite_rows.insert_rows(connection, INSERT_ITEM, [("a", "NEW"), ("b", "NEW")])
    rows = [("RUNNING", 2, "a", 1), ("RUNNING", 2, "b", 1), ("DONE", 3, "a", 2)]
    assert sqlite_rows.update_rows(connection, UPDATE_ITEM, rows) == 3
    assert _items(connection) == [("a", "DONE", 3), ("b", "RUNNING", 2)]


def test_a_key_of_several_columns_is_one_key(connection: sqlite3.Connection) -> None:
    connection.executemany(
        "INSERT INTO steps VALUES (?, ?, 'PENDING', NULL, 1)", [("j", 0), ("j", 1)]
    )
    rows: list[tuple[Any, ...]] = [("RUNNING", None, 2, "j", 0, 1), ("RUNNING", None, 2, "j", 1, 1)]
    rows.append(("SUCCEEDED", 0, 3, "j", 0, 2))
    assert sqlite_rows.update_rows(connection, UPDATE_STEP, rows) == 3
    states = connection.execute("SELECT step_index, status, version FROM steps").fetchall()
    assert sorted(states) == [(0, "SUCCEEDED", 3), (1, "RUNNING", 2)]


def test_more_rows_than_one_statement_takes(connection: sqlite3.Connection) -> None:
    # A SQLite built with a low limit: 10 placeholders, 3 rows of 2 values a statement
    # (the INSERT's third column is a constant), 2 rows of 4 for the UPDATE.
    connection.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 10)
    sqlite_rows.insert_rows(connection, INSERT_ITEM, [(f"i{n}", "NEW") for n in range(11)])
    assert len(_items(connection)) == 11
    rows = [("DONE", 2, f"i{n}", 1) for n in range(11)]
    assert sqlite_rows.update_rows(connection, UPDATE_ITEM, rows) == 11
    assert {item[1:] for item in _items(connection)} == {("DONE", 2)}


def test_a_statement_it_was_not_written_for_is_refused() -> None:
    for sql in (
        "UPDATE items SET version = version + 1 WHERE item_id = ?",
        "UPDATE items SET status = ? WHERE item_id = ? OR version = ?",
        "DELETE FROM items WHERE item_id = ?",
    ):
        with pytest.raises(ValueError):
            sqlite_rows.update_rows(sqlite3.connect(":memory:"), sql, [("x", "y", 1)] * 2)
