"""The schema only moves forward: a v1 database (the committed fixture, made by
fixtures/make_schema_v1.py) upgrades in place with every build intact."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import aiosqlite
import pytest
from buildcontrol_server.domain.model import Build, CancelInfo, Job, Stage, Step
from buildcontrol_server.domain.states import BuildStatus, JobOutcome, JobStatus, StepStatus
from buildcontrol_server.store import reads, schema
from buildcontrol_server.store.sqlite import SqliteStore

from tests.store.schema_fixtures import FIXTURE, query_plan

from .fixtures import make_schema_v1 as v1


def copy_fixture(tmp_path: Path) -> str:
    target = tmp_path / "upgraded.sqlite"
    shutil.copyfile(FIXTURE, target)
    return str(target)


def read_schema(path: str) -> tuple[int, set[str]]:
    # immutable: no -wal/-shm beside the committed fixture (nothing writes it meanwhile).
    with sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True) as connection:
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        indexes = {
            row[0]
            for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'index'")
        }
    connection.close()
    return version, indexes


def test_migrations_are_numbered_from_one_without_gaps() -> None:
    assert [m.version for m in schema.MIGRATIONS] == list(range(1, schema.LATEST_VERSION + 1))
    assert schema.LATEST_VERSION >= 2


def test_fixture_is_a_v1_database() -> None:
    version, indexes = read_schema(str(FIXTURE))
    assert version == 1
    assert "builds_by_pipeline" not in indexes


async def test_v1_database_upgrades_with_its_builds_intact(tmp_path: Path) -> None:
    path = copy_fixture(tmp_path)

    async with SqliteStore(path) as store:
        running = await store.get_build(v1.RUNNING)
        canceled = await store.get_build(v1.CANCELED)
        succeeded = await store.get_build(v1.SUCCEEDED)
        unfinished = await store.load_unfinished()
        web = await store.list_builds(limit=10, pipeline="web")

    version, indexes = read_schema(path)
    assert version == schema.LATEST_VERSION
    assert {"builds_by_pipeline", "builds_unfinished", "jobs_by_build"} <= indexes
    package = Job(
        job_id=f"{v1.RUNNING}-j0",
        build_id=v1.RUNNING,
        stage_index=0,
        name="package",
        labels={"arch": "arm64"},
        env={"TOKEN": "x"},
        steps=[
            Step(f"{v1.RUNNING}-j0", 0, "fetch", "git fetch", StepStatus.SUCCEEDED, 0, 2),
            Step(f"{v1.RUNNING}-j0", 1, "build", "make dist", StepStatus.RUNNING, None, 1),
        ],
        status=JobStatus.RUNNING,
        agent_id="agent-3",
        version=2,
    )
    deploy = Job(
        job_id=f"{v1.RUNNING}-j1",
        build_id=v1.RUNNING,
        stage_index=1,
        name="deploy",
        labels={},
        env={},
        steps=[Step(f"{v1.RUNNING}-j1", 0, "ship", "./deploy.sh")],
    )
    assert running == Build(
        build_id=v1.RUNNING,
        pipeline="api",
        stages=[Stage("build", [package]), Stage("deploy", [deploy])],
        created_at=v1.T0 + 20,
        status=BuildStatus.RUNNING,
        version=1,
    )
    assert unfinished == [running]
    assert canceled is not None and succeeded is not None
    assert canceled.cancel == CancelInfo("superseded", "alice", False, 10.0, v1.T0 + 30)
    assert [(j.status, j.outcome, j.exit_code) for j in canceled.jobs()] == [
        (JobStatus.CANCELED, JobOutcome.KILLED, -15),
        (JobStatus.CANCELED, JobOutcome.NEVER_STARTED, None),
    ]
    assert succeeded.status is BuildStatus.SUCCEEDED and succeeded.finished_at == v1.T0 + 60
    assert [stage.name for stage in succeeded.stages] == ["build", "test"]
    assert [b.build_id for b in web] == [v1.CANCELED, v1.SUCCEEDED]


async def test_reopening_a_current_database_applies_nothing(tmp_path: Path) -> None:
    path = copy_fixture(tmp_path)
    async with SqliteStore(path):
        pass
    async with aiosqlite.connect(path, isolation_level=None) as connection:
        assert await schema.migrate(connection) == []
        assert await schema.read_version(connection) == schema.LATEST_VERSION


async def test_migrations_stop_at_the_target_version(tmp_path: Path) -> None:
    path = str(tmp_path / "partial.sqlite")
    async with aiosqlite.connect(path, isolation_level=None) as connection:
        assert await schema.migrate(connection, target=1) == [1]
        assert await schema.read_version(connection) == 1
        assert await schema.migrate(connection) == list(range(2, schema.LATEST_VERSION + 1))


async def test_v2_indexes_serve_list_by_pipeline_and_recovery(tmp_path: Path) -> None:
    path = copy_fixture(tmp_path)
    async with SqliteStore(path):
        pass

    by_pipeline = query_plan(
        path, "SELECT * FROM builds WHERE pipeline = 'web' ORDER BY build_id DESC LIMIT 5"
    )
    recovery = query_plan(path, f"SELECT * FROM builds WHERE {schema.UNFINISHED_WHERE}")

    assert "builds_by_pipeline" in by_pipeline and "TEMP B-TREE" not in by_pipeline
    assert "builds_unfinished" in recovery


async def test_migrate_refuses_a_newer_version_before_writing(tmp_path: Path) -> None:
    path = str(tmp_path / "newer.sqlite")
    async with aiosqlite.connect(path, isolation_level=None) as connection:
        await connection.execute(f"PRAGMA user_version = {schema.LATEST_VERSION + 1}")
        with pytest.raises(schema.SchemaTooNew, match="is newer than this server"):
            await schema.migrate(connection)
        assert not connection.in_transaction
        assert await schema.count_tables(connection) == 0


async def test_v1_rows_get_the_v3_defaults(tmp_path: Path) -> None:
    path = copy_fixture(tmp_path)

    async with SqliteStore(path) as store:
        builds = [await store.get_build(b) for b in (v1.SUCCEEDED, v1.CANCELED, v1.RUNNING)]
        unaudited = await store.canceled_without_audit(limit=10)
        audit = await store.audit_records()

    with sqlite3.connect(path) as connection:
        build_columns = connection.execute(
            "SELECT DISTINCT concurrency_group, cancel_in_progress FROM builds"
        ).fetchall()
        job_columns = connection.execute("SELECT DISTINCT run_on_cancel, timeout FROM jobs")
        job_columns = job_columns.fetchall()
        step_columns = connection.execute("SELECT DISTINCT run_on_cancel FROM steps").fetchall()
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    connection.close()
    assert (build_columns, job_columns, step_columns) == ([(None, 0)], [(0, None)], [(0,)])
    assert "cancel_audit" in tables
    for build in builds:
        assert build is not None
        assert (build.concurrency_group, build.cancel_in_progress) == (None, False)
        assert all(not j.run_on_cancel and j.timeout is None for j in build.jobs())
        assert all(not s.run_on_cancel for j in build.jobs() for s in j.steps)
    # Cancels from before the audit existed are what the audit's first sweep backfills.
    assert [b.build_id for b in unaudited] == [v1.CANCELED]
    assert unaudited == [builds[1]]
    assert audit == []


async def test_v3_indexes_serve_group_lookup_and_audit_sweep(tmp_path: Path) -> None:
    path = copy_fixture(tmp_path)
    async with SqliteStore(path):
        pass

    by_group = query_plan(
        path,
        f"SELECT build_id FROM builds WHERE concurrency_group = 'deploy'"
        f" AND {schema.UNFINISHED_WHERE} ORDER BY build_id",
    )
    sweep = query_plan(path, reads.CANCELED_WITHOUT_AUDIT.replace("?", "'b'", 1).replace("?", "5"))

    assert "builds_unfinished_by_group" in by_group and "TEMP B-TREE" not in by_group
    assert "builds_canceled" in sweep and "TEMP B-TREE" not in sweep
    assert "cancel_audit" in sweep
