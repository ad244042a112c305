"""What only a database file has: refusing bad files untouched, the one-store lock,
reopening, and a transaction SQLite aborts as a whole."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
from buildcontrol_server.domain import cancellation
from buildcontrol_server.domain.model import ChangeSet
from buildcontrol_server.store import schema
from buildcontrol_server.store import sqlite as sqlite_store
from buildcontrol_server.store.errors import StoreOpenError, StoreWriteError
from buildcontrol_server.store.factory import build_store
from buildcontrol_server.store.lock import FileLock
from buildcontrol_server.store.sqlite import SqliteStore

from tests.support.store_samples import (
    STOP_TIMES,
    T0,
    cancel_info,
    file_digest,
    read_file,
    start_first_job,
    submitted,
    write_file,
)


async def open_error(path: str) -> str:
    store = SqliteStore(path)
    with pytest.raises(StoreOpenError) as raised:
        await store.open()
    message = str(raised.value)
    assert "\n" not in message
    assert path in message
    assert_not_locked(path)
    return message


def assert_not_locked(path: str) -> None:
    """A refused open leaves no lock behind (where a lock file can exist at all)."""
    directory = os.path.dirname(path)
    if os.access(directory, os.W_OK) and not os.path.isdir(path):
        lock = FileLock(path)
        lock.acquire()
        lock.release()


def make_directory(path: Path, mode: int) -> Path:
    path.mkdir()
    path.chmod(mode)
    return path


async def test_reopened_file_reads_back_what_was_committed(db_file: str) -> None:
    async with SqliteStore(db_file) as store:
        build, changes = submitted()
        await store.commit(changes)
        await store.commit(start_first_job(build))
        await store.commit(cancellation.cancel(build, cancel_info(), STOP_TIMES, T0 + 3).changes)

    async with SqliteStore(db_file) as reopened:
        assert await reopened.get_build(build.build_id) == build
        assert await reopened.load_unfinished() == [build]
        assert reopened.stats.commits == 0


async def test_missing_directory_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "absent" / "builds.sqlite")
    message = await open_error(path)
    assert "does not exist" in message


async def test_directory_in_place_of_the_file_is_refused(tmp_path: Path) -> None:
    path = make_directory(tmp_path / "builds.sqlite", mode=0o700)
    assert "is a directory" in await open_error(str(path))


@pytest.mark.skipif(
    os.geteuid() == 0, reason="root may write into any directory; run as a normal user"
)
async def test_unwritable_directory_is_refused(tmp_path: Path) -> None:
    directory = make_directory(tmp_path / "readonly", mode=0o500)
    path = str(directory / "builds.sqlite")
    try:
        message = await open_error(path)
    finally:
        directory.chmod(0o700)
    assert message == f"database {path}: directory {directory} is not writable"


async def test_file_that_is_not_sqlite_is_refused_and_untouched(db_file: str) -> None:
    write_file(db_file, b"name,status\nweb,RUNNING\n" * 100)
    before = file_digest(db_file)

    assert "is not a SQLite database" in await open_error(db_file)

    assert file_digest(db_file) == before


async def test_truncated_header_is_refused(db_file: str) -> None:
    write_file(db_file, b"SQLite")
    assert "is not a SQLite database" in await open_error(db_file)
    assert read_file(db_file) == b"SQLite"


async def test_empty_file_is_initialized(db_file: str) -> None:
    write_file(db_file, b"")
    async with SqliteStore(db_file) as store:
        build, changes = submitted()
        await store.commit(changes)
        assert await store.get_build(build.build_id) == build


@pytest.mark.parametrize("journal_mode", ["wal", "delete"])
async def test_newer_schema_is_refused_and_file_unchanged(db_file: str, journal_mode: str) -> None:
    async with SqliteStore(db_file) as store:
        await store.commit(submitted()[1])
    with sqlite3.connect(db_file) as connection:
        connection.execute(f"PRAGMA journal_mode = {journal_mode}")
        connection.execute(f"PRAGMA user_version = {schema.LATEST_VERSION + 1}")
    connection.close()
    before = file_digest(db_file)

    message = await open_error(db_file)

    assert f"schema version {schema.LATEST_VERSION + 1} is newer" in message
    assert f"({schema.LATEST_VERSION})" in message
    assert file_digest(db_file) == before


async def test_sqlite_file_of_another_program_is_refused_and_untouched(db_file: str) -> None:
    with sqlite3.connect(db_file) as connection:
        connection.execute("CREATE TABLE builds (id INTEGER PRIMARY KEY, name TEXT)")
        connection.execute("INSERT INTO builds (name) VALUES ('theirs')")
    connection.close()
    before = file_digest(db_file)

    assert "no buildcontrol schema" in await open_error(db_file)

    with sqlite3.connect(db_file) as connection:
        connection.execute("PRAGMA user_version = 1")
    connection.close()
    before = file_digest(db_file)
    assert "another application" in await open_error(db_file)
    assert file_digest(db_file) == before


async def test_second_store_on_the_same_file_is_refused_until_the_first_closes(
    db_file: str,
) -> None:
    first = SqliteStore(db_file)
    await first.open()
    try:
        second = SqliteStore(db_file)
        with pytest.raises(StoreOpenError) as raised:
            await second.open()
        message = str(raised.value)
        assert db_file in message
        assert "already open by another buildcontrol store" in message
        assert f"pid {os.getpid()}" in message
    finally:
        await first.close()

    async with SqliteStore(db_file) as second:
        assert await second.list_builds(limit=1) == []


async def test_a_transaction_sqlite_aborts_fails_every_change_set_of_the_batch(
    db_file: str,
) -> None:
    async with SqliteStore(db_file) as store:
        # A trigger that rolls back the whole transaction stands in for disk full or
        # an I/O error: nothing of the batch may be reported as written.
        with sqlite3.connect(db_file) as admin:
            admin.execute(
                "CREATE TRIGGER doomed BEFORE INSERT ON builds WHEN NEW.pipeline = 'doomed'"
                " BEGIN SELECT RAISE(ROLLBACK, 'simulated I/O failure'); END"
            )
        admin.close()
        fine, fine_changes = submitted(now=T0)
        doomed_spec = submitted()[0]
        doomed_spec.pipeline = "doomed"
        results = await store.commit_all([fine_changes, ChangeSet(new_build=doomed_spec)])

        assert all(isinstance(result, StoreWriteError) for result in results)
        assert "simulated I/O failure" in str(results[1])
        assert await store.get_build(fine.build_id) is None
        assert store.stats.commits == 0 and store.stats.failed_writes == 2

        # The writer carries on with the next batch.
        await store.commit(fine_changes)
        assert await store.get_build(fine.build_id) == fine


@pytest.mark.parametrize(("setting", "pragma"), [("NORMAL", 1), ("FULL", 2)])
async def test_the_serve_setting_picks_sqlites_synchronous(
    tmp_path: Path, setting: str, pragma: int
) -> None:
    # --sqlite-synchronous reaches the writer's connection: FULL is an fsync per commit.
    store = build_store(None, tmp_path / "builds.sqlite3", setting)  # type: ignore[arg-type]
    async with store:
        connection = store._write_connection  # type: ignore[attr-defined]
        rows = list(await connection.execute_fetchall("PRAGMA synchronous"))
    assert rows[0][0] == pragma


async def test_a_cancel_commits_in_one_round_trip_to_the_sqlite_thread(tmp_path: Path) -> None:
    # A lone cancel's StopJobs wait for this commit: each hop to aiosqlite's thread
    # and back costs ~0.1 ms and more on a loaded machine, so the transaction is one.
    store = SqliteStore(str(tmp_path / "builds.sqlite"))
    await store.open()
    try:
        build, changes = submitted()
        await store.commit(changes)
        await store.commit(start_first_job(build, agent_id="agent-1", now=T0 + 1))
        connection = store._write_connection
        assert connection is not None
        hops = 0
        real_execute = connection._execute

        async def counted(function: object, *args: object, **kwargs: object) -> object:
            nonlocal hops
            hops += 1
            return await real_execute(function, *args, **kwargs)

        connection._execute = counted  # type: ignore[method-assign]
        fx = cancellation.cancel(build, cancel_info(), STOP_TIMES, T0 + 2)
        await store.commit(fx.changes)
        connection._execute = real_execute  # type: ignore[method-assign]

        assert hops == 1
        loaded = await store.get_build(build.build_id)
        assert loaded is not None and loaded == build
    finally:
        await store.close()


async def test_the_wal_is_cut_back_to_its_limit_when_it_starts_over(db_file: str) -> None:
    wal = Path(f"{db_file}-wal")
    async with SqliteStore(db_file) as store:
        # Grow the WAL past the limit (SQLite's own checkpoint every 1,000 pages resets
        # its frames, not the file's size).
        while wal_size(wal) <= 2 * sqlite_store.WAL_SIZE_LIMIT_BYTES:
            _, changes = submitted()
            await store.commit(changes)
        connection = store._write_connection
        assert connection is not None
        rows = list(await connection.execute_fetchall("PRAGMA journal_size_limit"))
        assert rows[0][0] == sqlite_store.WAL_SIZE_LIMIT_BYTES
        # Every frame copied back (no reader holds one), so the next write starts the
        # WAL over, and that cuts the file.
        checkpoint = await connection.execute_fetchall("PRAGMA wal_checkpoint(PASSIVE)")
        assert next(iter(checkpoint))[0] == 0  # not busy
        build, changes = submitted()
        await store.commit(changes)
        assert wal_size(wal) <= sqlite_store.WAL_SIZE_LIMIT_BYTES
        assert await store.get_build(build.build_id) == build


def wal_size(wal: Path) -> int:
    return wal.stat().st_size
