"""What only PostgreSQL has: the one-server advisory lock, migrations in the database
refused when newer, a database of another program left alone, and a lost connection
(the database restarted) turning the store unavailable until it is back."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest
from buildcontrol_server.domain import cancellation
from buildcontrol_server.domain.model import ChangeSet
from buildcontrol_server.store import postgres_schema, schema
from buildcontrol_server.store.errors import StoreOpenError, StoreUnavailable
from buildcontrol_server.store.factory import StoreUrlError, build_store, check_url
from buildcontrol_server.store.postgres import PostgresStore, redacted
from buildcontrol_server.store.sqlite import SqliteStore

from tests.support.store_samples import STOP_TIMES, T0, cancel_info, start_first_job, submitted

from ..support.ports import free_port
from ..support.postgres_server import PostgresServer


async def open_error(url: str) -> str:
    store = PostgresStore(url)
    with pytest.raises(StoreOpenError) as raised:
        await store.open()
    message = str(raised.value)
    assert "\n" not in message
    return message


async def fetch(url: str, query: str) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(url)
    try:
        return list(await connection.fetch(query))
    finally:
        await connection.close()


def test_postgres_schema_mirrors_every_sqlite_migration() -> None:
    sqlite_steps = [(m.version, m.summary) for m in schema.MIGRATIONS]
    postgres_steps = [(m.version, m.summary) for m in postgres_schema.MIGRATIONS]
    assert postgres_steps == sqlite_steps


def test_factory_picks_the_backend_from_the_url(tmp_path: Path) -> None:
    path = tmp_path / "builds.sqlite3"
    assert isinstance(build_store(None, path), SqliteStore)
    assert isinstance(build_store("postgresql://u@db:5432/b", path), PostgresStore)
    assert isinstance(build_store("postgres://u@db/b", path), PostgresStore)
    for bad in ("mysql://u:secret@db/b", "db:5432", "postgresql:///b"):
        with pytest.raises(StoreUrlError) as raised:
            check_url(bad)
        assert "secret" not in str(raised.value)


def test_messages_never_show_the_password() -> None:
    assert redacted("postgresql://bc:s3cret@db:6432/builds") == "postgresql://bc:***@db:6432/builds"
    assert redacted("postgresql://bc@db/builds") == "postgresql://bc@db/builds"


async def test_second_server_on_the_same_database_is_refused(postgres_url: str) -> None:
    async with PostgresStore(postgres_url) as first:
        build, changes = submitted()
        await first.commit(changes)

        message = await open_error(postgres_url)

        assert "already open by another buildcontrol server" in message
        assert "buildcontrol pid" in message  # the holder's application_name
        assert await first.get_build(build.build_id) == build  # the first goes on
    # Released at close: the next server opens.
    async with PostgresStore(postgres_url) as second:
        assert await second.get_build(build.build_id) == build


async def test_lock_of_a_killed_server_is_released_by_postgres(postgres_url: str) -> None:
    store = PostgresStore(postgres_url)
    await store.open()
    lock = store._connections._lock_connection
    assert lock is not None
    # What a SIGKILL of the server does to its session: the connection just ends.
    lock.terminate()
    await store.close()

    async with PostgresStore(postgres_url) as next_server:
        assert await next_server.load_unfinished() == []


async def test_migrations_create_the_schema_and_record_its_version(postgres_url: str) -> None:
    async with PostgresStore(postgres_url):
        pass
    [row] = await fetch(postgres_url, "SELECT version FROM schema_version")
    assert row["version"] == postgres_schema.POSTGRES_LATEST_VERSION
    tables = await fetch(
        postgres_url, "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
    )
    assert {t["tablename"] for t in tables} == {
        "schema_version",
        "builds",
        "jobs",
        "steps",
        "cancel_audit",
        "submit_requests",
        "webhook_outbox",
        "webhook_deliveries",
        "access_tokens",
        "access_token_state",
        "job_logs",
        "job_log_chunks",
        "shard_leases",
        "replicas",
        "build_inbox",
        "agent_sessions",
        "agent_outbox",
        "job_offers",
        "job_token_key",
    }
    # Reopening applies nothing more.
    async with PostgresStore(postgres_url):
        pass
    assert (await fetch(postgres_url, "SELECT count(*) AS n FROM schema_version"))[0]["n"] == 1


async def test_newer_schema_is_refused_and_left_untouched(postgres_url: str) -> None:
    async with PostgresStore(postgres_url):
        pass
    newer = postgres_schema.POSTGRES_LATEST_VERSION + 1
    await fetch(postgres_url, f"UPDATE schema_version SET version = {newer}")

    message = await open_error(postgres_url)

    assert f"schema version {newer} is newer" in message and "upgrade buildcontrol" in message
    [row] = await fetch(postgres_url, "SELECT version FROM schema_version")
    assert row["version"] == newer


async def test_database_of_another_program_is_left_untouched(postgres_url: str) -> None:
    await fetch(postgres_url, "CREATE TABLE invoices (id int)")

    message = await open_error(postgres_url)

    assert "has 1 tables but no buildcontrol schema" in message
    tables = await fetch(
        postgres_url, "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
    )
    assert [t["tablename"] for t in tables] == ["invoices"]


async def test_unreachable_database_is_a_one_line_open_error(postgres: PostgresServer) -> None:
    message = await open_error(f"postgresql://postgres@127.0.0.1:{free_port()}/nothing")

    assert "cannot open" in message


async def test_restarted_database_makes_writes_unavailable_until_it_is_back(
    postgres: PostgresServer, postgres_url: str
) -> None:
    async with PostgresStore(postgres_url) as store:
        changes_seen: list[bool] = []
        back = asyncio.Event()

        def listener(available: bool) -> None:
            changes_seen.append(available)
            if available:
                back.set()

        store.watch_availability(listener)
        build, changes = submitted()
        await store.commit(changes)

        postgres.stop("immediate")
        try:
            # A write meanwhile fails with the store-unavailable error, writes nothing.
            late, late_changes = submitted(now=T0 + 1)
            with pytest.raises(StoreUnavailable):
                await store.commit(late_changes)
            assert store.available is False
            assert changes_seen[0] is False
        finally:
            postgres.start()

        await asyncio.wait_for(back.wait(), timeout=30)
        assert store.available is True
        # The server goes on: the cancel commits on the same store object.
        fx = cancellation.cancel(build, cancel_info(), STOP_TIMES, T0 + 9)
        await store.commit(fx.changes)
        assert await store.get_build(build.build_id) == build
        assert await store.get_build(late.build_id) is None
        assert changes_seen == [False, True]


async def test_live_build_ids_and_canceling_times_read_back(postgres_url: str) -> None:
    """The reads the main branch's store contract added (unfinished_build_ids,
    canceling_since), ready for its suite to run on PostgreSQL at merge."""
    async with PostgresStore(postgres_url) as store:
        queued, _ = submitted()
        canceling, changes = submitted(now=T0 + 1)
        await store.commit_all([ChangeSet(new_build=queued), changes])
        await store.commit(start_first_job(canceling))
        await store.commit(
            cancellation.cancel(canceling, cancel_info(), STOP_TIMES, T0 + 9).changes
        )

        assert await store.unfinished_build_ids() == sorted([queued.build_id, canceling.build_id])
        assert canceling.cancel is not None
        expected = {canceling.build_id: canceling.cancel.requested_at}
        assert await store.canceling_since() == expected
