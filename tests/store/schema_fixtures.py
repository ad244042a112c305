"""The stored version-1 database file and SQLite's query plan of a statement."""

from __future__ import annotations

import sqlite3
from pathlib import Path

FIXTURE = Path(__file__).parent / "fixtures" / "schema_v1.sqlite"


def query_plan(path: str, sql: str) -> str:
    with sqlite3.connect(path) as connection:
        plan = connection.execute(f"EXPLAIN QUERY PLAN {sql}").fetchall()
    connection.close()
    return " ".join(str(row[-1]) for row in plan)
