"""PostgreSQL's job log tables are a migration (v13) like every other table: a database's
schema version says whether it has them. A database one version older upgrades with the log rows a
server before v13 wrote (it made the tables itself when its log store opened), or gets
the tables if it had none; the log store refuses a database that is not migrated."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import pytest
from buildcontrol_server.logs.postgres import PostgresLogStore
from buildcontrol_server.store import postgres_schema
from buildcontrol_server.store.errors import StoreOpenError
from buildcontrol_server.store.postgres import PostgresStore

BUILD = "b0123456789abcdef0123"
JOB = f"{BUILD}-j0"
LOG_TABLES = {"job_logs", "job_log_chunks"}

# What the log store of a server before v13 ran when it opened (outside the migrations).
BEFORE_V13 = (
    """CREATE TABLE IF NOT EXISTS job_logs (
        build_id TEXT COLLATE "C" NOT NULL,
        job_id TEXT COLLATE "C" NOT NULL,
        size BIGINT NOT NULL,
        complete BOOLEAN NOT NULL,
        written_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (build_id, job_id)
    )""",
    """CREATE TABLE IF NOT EXISTS job_log_chunks (
        build_id TEXT COLLATE "C" NOT NULL,
        job_id TEXT COLLATE "C" NOT NULL,
        start_offset BIGINT NOT NULL,
        data BYTEA NOT NULL,
        PRIMARY KEY (build_id, job_id, start_offset)
    )""",
)


@asynccontextmanager
async def connected(url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(url)
    try:
        yield connection
    finally:
        await connection.close()


BEFORE = postgres_schema.LOG_TABLES_VERSION - 1


async def at_v11(url: str, *, with_logs: bool) -> None:
    """A database as the server before the log tables' migration leaves it (with a log
    written, if `with_logs`)."""
    async with connected(url) as connection:
        assert await postgres_schema.migrate(connection, target=BEFORE) == list(
            range(1, BEFORE + 1)
        )
        if with_logs:
            for statement in BEFORE_V13:
                await connection.execute(statement)
            await connection.execute(
                "INSERT INTO job_logs VALUES ($1, $2, 10, false, 1700000000.0)", BUILD, JOB
            )
            await connection.execute(
                "INSERT INTO job_log_chunks VALUES ($1, $2, 0, $3)", BUILD, JOB, b"line one\n"
            )
            await connection.execute(
                "INSERT INTO job_log_chunks VALUES ($1, $2, 9, $3)", BUILD, JOB, b"\x1b"
            )


async def version_and_tables(url: str) -> tuple[int, set[str]]:
    async with connected(url) as connection:
        version = await connection.fetchval("SELECT version FROM schema_version")
        rows = await connection.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
        )
    return int(version), {row["tablename"] for row in rows}


async def test_the_version_before_upgrades_keeping_the_logs_an_older_server_wrote(
    postgres_url: str,
) -> None:
    await at_v11(postgres_url, with_logs=True)
    async with PostgresStore(postgres_url):
        pass
    version, tables = await version_and_tables(postgres_url)
    assert version == postgres_schema.POSTGRES_LATEST_VERSION and tables >= LOG_TABLES

    logs = PostgresLogStore(postgres_url)
    await logs.open()
    try:
        piece = await logs.read(BUILD, JOB, 0, 100)
        assert (piece.data, piece.size, piece.complete) == (b"line one\n\x1b", 10, False)
        # The job's log goes on where it was.
        assert await logs.append(BUILD, JOB, 10, b"[0mtwo\n", True) == 17
        assert (await logs.read(BUILD, JOB, 0, 100)).data == b"line one\n\x1b[0mtwo\n"
    finally:
        await logs.close()


async def test_the_version_before_without_log_tables_gets_them(postgres_url: str) -> None:
    await at_v11(postgres_url, with_logs=False)
    assert LOG_TABLES.isdisjoint((await version_and_tables(postgres_url))[1])
    async with PostgresStore(postgres_url):
        pass
    version, tables = await version_and_tables(postgres_url)
    assert version == postgres_schema.POSTGRES_LATEST_VERSION and tables >= LOG_TABLES


async def test_the_log_store_refuses_a_database_the_build_store_has_not_migrated(
    postgres_url: str,
) -> None:
    await at_v11(postgres_url, with_logs=False)
    before = await version_and_tables(postgres_url)
    logs = PostgresLogStore(postgres_url)
    with pytest.raises(StoreOpenError) as raised:
        await logs.open()
    assert f"schema version {BEFORE} has no job log tables (version {BEFORE + 1})" in str(
        raised.value
    )
    assert "open the build store first" in str(raised.value)
    # Nothing was made: the version still says what the database has.
    assert await version_and_tables(postgres_url) == before
    assert LOG_TABLES.isdisjoint(before[1])
