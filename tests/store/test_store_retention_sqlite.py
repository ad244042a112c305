"""What only SQLite has in retention: the file in auto_vacuum=INCREMENTAL mode (new
files from the start, older ones rewritten once by schema v10), compaction giving the
pages of purged builds back to the file system, and the purge walking indexes."""

from __future__ import annotations

import re
import shutil
import sqlite3
from pathlib import Path

import aiosqlite
from buildcontrol_server.domain.retention import Cutoffs
from buildcontrol_server.store import retention_sql, schema, sqlite
from buildcontrol_server.store.sqlite import SqliteStore

from tests.store.schema_fixtures import FIXTURE, query_plan
from tests.support.store_samples import T0, canceled, wide_spec


def auto_vacuum(path: str) -> int:
    with sqlite3.connect(path) as connection:
        mode = int(connection.execute("PRAGMA auto_vacuum").fetchone()[0])
    connection.close()
    return mode


async def test_a_new_file_is_in_incremental_auto_vacuum_mode(db_file: str) -> None:
    async with SqliteStore(db_file):
        pass
    assert auto_vacuum(db_file) == schema.INCREMENTAL_AUTO_VACUUM


async def test_a_file_of_an_older_schema_is_rewritten_once_into_incremental_mode(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "old.sqlite")
    shutil.copyfile(FIXTURE, path)
    assert auto_vacuum(path) == 0
    async with SqliteStore(path) as store:
        builds_before = await store.list_builds(100)
    assert auto_vacuum(path) == schema.INCREMENTAL_AUTO_VACUUM
    async with SqliteStore(path) as store:
        assert await store.list_builds(100) == builds_before


async def test_a_file_whose_rewrite_was_interrupted_is_rewritten_at_the_next_open(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "old.sqlite")
    shutil.copyfile(FIXTURE, path)
    async with aiosqlite.connect(path, isolation_level=None) as connection:
        await schema.migrate(connection, target=schema.LATEST_VERSION)
        # As if the process died between the v10 commit and its VACUUM.
        await connection.execute("PRAGMA auto_vacuum = NONE")
        await connection.execute("VACUUM")
    assert auto_vacuum(path) == 0
    async with SqliteStore(path):
        pass
    # v10 is recorded, so nothing runs again: the file stays as it is, which is safe
    # (freed pages are reused by later writes instead of returned).
    assert auto_vacuum(path) == 0


async def test_compaction_returns_the_pages_of_purged_builds(db_file: str) -> None:
    async with SqliteStore(db_file) as store:
        for n in range(300):
            _, change_sets = canceled(wide_spec(4, 5), now=T0 + n)
            for changes in change_sets:
                await store.commit(changes)
        full = await store.retention.sizes()
        while await store.retention.purge_builds_batch(Cutoffs(builds_before=T0 + 10**6)):
            pass
        freed = await store.retention.compact()
        compacted = await store.retention.sizes()
    assert freed > 0
    assert compacted.rows["builds"] == 0
    assert compacted.database_bytes < full.database_bytes / 2


async def test_the_purge_statements_walk_indexes_not_tables(db_file: str) -> None:
    async with SqliteStore(db_file):
        pass
    dialect = retention_sql.SQLITE.sql
    for statement in (
        retention_sql.OLDEST_FINISHED.replace("?", "10"),
        dialect(retention_sql.DELETE_AUDIT).replace("?", "1", 1).replace("?", "10"),
        dialect(retention_sql.OLD_OUTBOX).replace("?", "1", 1).replace("?", "10"),
        *(dialect(query).replace("?", "'[]'") for _, query in retention_sql.DELETE_BUILDS),
    ):
        plan = query_plan(db_file, statement)
        # A scan of one of our tables is a walk of all its rows unless an index
        # drives it (json_each, the list of ids, is scanned: it is the batch).
        full_scans = re.findall(r"SCAN (\w+)\b(?! USING)", plan)
        assert not set(full_scans) & set(retention_sql.COUNTED_TABLES), (statement, plan)


async def test_recovery_reads_walk_the_live_builds_not_the_history(db_file: str) -> None:
    async with SqliteStore(db_file):
        pass
    for statement in (sqlite.UNFINISHED_BUILDS, sqlite.UNFINISHED_JOBS, sqlite.UNFINISHED_STEPS):
        plan = query_plan(db_file, statement)
        # Found through the partial index of live builds, never a walk of every row.
        assert "SCAN builds USING INDEX builds_unfinished" in plan, plan
        assert not re.findall(r"SCAN (jobs|steps)\b", plan), plan
