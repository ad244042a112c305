"""The log store, one suite for both backends: files under the data dir (SQLite's) and
the database (PostgreSQL's)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from buildcontrol_server.domain.errors import FailedPrecondition, InvalidArgument
from buildcontrol_server.logs.files import FileLogStore
from buildcontrol_server.logs.postgres import PostgresLogStore
from buildcontrol_server.logs.store import LogStore
from buildcontrol_server.store.postgres import PostgresStore

BUILD = "b0123456789abcdef0123"
JOB = f"{BUILD}-j0"
OTHER_BUILD = "b1123456789abcdef0123"


@pytest.fixture(params=["files", "postgresql"])
async def logs(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[LogStore]:
    store: LogStore
    if request.param == "postgresql":
        url = str(request.getfixturevalue("postgres_url"))
        async with PostgresStore(url):
            pass  # its migrations make the log tables (the server opens it first too)
        store = PostgresLogStore(url)
    else:
        store = FileLogStore(tmp_path / "logs")
    await store.open()
    yield store
    await store.close()


async def test_appended_chunks_read_back_in_order(logs: LogStore) -> None:
    assert await logs.append(BUILD, JOB, 0, b"one\n", False) == 4
    assert await logs.append(BUILD, JOB, 4, b"two\n", False) == 8
    piece = await logs.read(BUILD, JOB, 0, 100)
    assert (piece.data, piece.offset, piece.size, piece.complete) == (b"one\ntwo\n", 0, 8, False)
    assert (await logs.read(BUILD, JOB, 2, 4)).data == b"e\ntw"
    assert (await logs.read(BUILD, JOB, 5, 100)).data == b"wo\n"


async def test_a_resent_chunk_is_stored_once(logs: LogStore) -> None:
    await logs.append(BUILD, JOB, 0, b"abcdef", False)
    # The agent did not see the acknowledgement and resends from an older offset.
    assert await logs.append(BUILD, JOB, 3, b"defghi", False) == 9
    assert await logs.append(BUILD, JOB, 0, b"abc", False) == 9
    assert (await logs.read(BUILD, JOB, 0, 100)).data == b"abcdefghi"


async def test_a_chunk_past_the_end_is_refused_and_changes_nothing(logs: LogStore) -> None:
    await logs.append(BUILD, JOB, 0, b"abc", False)
    with pytest.raises(FailedPrecondition, match="past the stored size 3"):
        await logs.append(BUILD, JOB, 4, b"x", False)
    with pytest.raises(InvalidArgument):
        await logs.append(BUILD, JOB, -1, b"x", False)
    assert (await logs.read(BUILD, JOB, 0, 100)).data == b"abc"


async def test_a_complete_log_takes_no_more_bytes(logs: LogStore) -> None:
    await logs.append(BUILD, JOB, 0, b"end\n", True)
    assert (await logs.read(BUILD, JOB, 0, 10)).complete
    assert await logs.append(BUILD, JOB, 0, b"end\n", True) == 4  # a resend: fine
    with pytest.raises(FailedPrecondition, match="complete"):
        await logs.append(BUILD, JOB, 4, b"more", False)


async def test_bytes_are_kept_as_they_came(logs: LogStore) -> None:
    raw = b"\xff\xfe not utf-8 \x1b[31mred\x1b[0m\x00"
    await logs.append(BUILD, JOB, 0, raw, False)
    assert (await logs.read(BUILD, JOB, 0, 100)).data == raw


async def test_an_unknown_job_has_an_empty_log(logs: LogStore) -> None:
    piece = await logs.read(BUILD, JOB, 10, 100)
    assert (piece.data, piece.size, piece.complete) == (b"", 0, False)


async def test_delete_logs_removes_only_the_named_builds(logs: LogStore) -> None:
    await logs.append(BUILD, JOB, 0, b"a", False)
    await logs.append(BUILD, f"{BUILD}-j1", 0, b"b", False)
    await logs.append(OTHER_BUILD, f"{OTHER_BUILD}-j0", 0, b"c", False)
    assert await logs.delete_logs([BUILD]) == 2
    assert (await logs.read(BUILD, JOB, 0, 10)).size == 0
    assert (await logs.read(OTHER_BUILD, f"{OTHER_BUILD}-j0", 0, 10)).data == b"c"


async def test_retention_deletes_logs_older_than_the_cutoff(logs: LogStore) -> None:
    await logs.append(BUILD, JOB, 0, b"old", True)
    assert await logs.delete_older_than(time.time() - 3600) == 0
    assert await logs.delete_older_than(time.time() + 1) == 1
    assert (await logs.read(BUILD, JOB, 0, 10)).size == 0


async def test_large_logs_read_across_chunks(logs: LogStore) -> None:
    chunks = [bytes([65 + i]) * 70_000 for i in range(5)]
    offset = 0
    for chunk in chunks:
        offset = await logs.append(BUILD, JOB, offset, chunk, False)
    whole = b"".join(chunks)
    assert (await logs.read(BUILD, JOB, 0, len(whole))).data == whole
    assert (await logs.read(BUILD, JOB, 69_999, 70_002)).data == whole[69_999:140_001]


def test_the_file_backend_refuses_ids_that_climb_out(tmp_path: Path) -> None:
    store = FileLogStore(tmp_path / "logs")
    with pytest.raises(InvalidArgument):
        store._paths("../etc", "passwd")
