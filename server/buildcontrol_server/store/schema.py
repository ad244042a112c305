"""The database schema as an ordered list of migrations, and the code that applies them.

Rules: a released migration is never edited; a change is a new migration appended at
the end. Each migration runs in its own transaction together with the bump of
`PRAGMA user_version`, so a crash leaves the database at the old or the new version,
never between. Tables are altered in place (ALTER TABLE, CREATE INDEX); nothing is
dropped and recreated, so a server upgrade never loses builds.

`PRAGMA application_id` marks the file as ours: a SQLite file of another program is
refused rather than "migrated".
"""

from __future__ import annotations

from dataclasses import dataclass

import aiosqlite

# "bctl" in ASCII; stored in the SQLite header (offset 68) by migration 1.
APPLICATION_ID = 0x6263746C


@dataclass(frozen=True)
class Migration:
    version: int
    summary: str
    statements: tuple[str, ...]
    # SQLite only: VACUUM once after this step's commit (a VACUUM cannot run inside a
    # transaction), for a file setting that only a rewrite applies (auto_vacuum).
    vacuum_after: bool = False


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "builds, jobs and steps",
        (
            f"PRAGMA application_id = {APPLICATION_ID}",
            # stage_names: JSON list; a stage has no state of its own beyond its name.
            # cancel_*: NULL until the build is cancelled (CancelInfo).
            """CREATE TABLE builds (
                build_id TEXT PRIMARY KEY,
                pipeline TEXT NOT NULL,
                stage_names TEXT NOT NULL,
                created_at REAL NOT NULL,
                status TEXT NOT NULL,
                finished_at REAL,
                cancel_reason TEXT,
                cancel_requested_by TEXT,
                cancel_force INTEGER,
                cancel_grace_period REAL,
                cancel_requested_at REAL,
                version INTEGER NOT NULL
            )""",
            # position: the job's order in its build (job ids do not sort numerically).
            # labels, env: JSON objects.
            """CREATE TABLE jobs (
                job_id TEXT PRIMARY KEY,
                build_id TEXT NOT NULL REFERENCES builds (build_id),
                stage_index INTEGER NOT NULL,
                position INTEGER NOT NULL,
                name TEXT NOT NULL,
                labels TEXT NOT NULL,
                env TEXT NOT NULL,
                status TEXT NOT NULL,
                outcome TEXT,
                agent_id TEXT,
                exit_code INTEGER,
                finished_at REAL,
                version INTEGER NOT NULL
            )""",
            "CREATE INDEX jobs_by_build ON jobs (build_id, position)",
            """CREATE TABLE steps (
                job_id TEXT NOT NULL REFERENCES jobs (job_id),
                step_index INTEGER NOT NULL,
                name TEXT NOT NULL,
                command TEXT NOT NULL,
                status TEXT NOT NULL,
                exit_code INTEGER,
                version INTEGER NOT NULL,
                PRIMARY KEY (job_id, step_index)
            ) WITHOUT ROWID""",
        ),
    ),
    Migration(
        2,
        "indexes for ListBuilds by pipeline and for recovery of unfinished builds",
        (
            # ListBuilds(pipeline=…) pages newest first: an index walk, not a table scan.
            "CREATE INDEX builds_by_pipeline ON builds (pipeline, build_id)",
            # Start-up recovery reads only live builds, which are few among many
            # finished ones; the partial index keeps that read small as history grows.
            # Queries must repeat this exact WHERE for SQLite to use it (UNFINISHED_WHERE).
            "CREATE INDEX builds_unfinished ON builds (build_id)"
            " WHERE status NOT IN ('SUCCEEDED', 'FAILED', 'CANCELED')",
        ),
    ),
    Migration(
        3,
        "cleanup (run_on_cancel), job timeouts, concurrency groups, the cancel audit",
        (
            # Set at submission and never changed, so no CAS update carries them. The
            # defaults are what every build had before v3: no cleanup, server timeout,
            # no group.
            "ALTER TABLE jobs ADD COLUMN run_on_cancel INTEGER NOT NULL DEFAULT 0",
            # Seconds; NULL = the server's default.
            "ALTER TABLE jobs ADD COLUMN timeout REAL",
            "ALTER TABLE steps ADD COLUMN run_on_cancel INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE builds ADD COLUMN concurrency_group TEXT",
            "ALTER TABLE builds ADD COLUMN cancel_in_progress INTEGER NOT NULL DEFAULT 0",
            # "Which live builds share this group?" is asked on every submission to a
            # group: a walk of the few live builds of that group, not of the history.
            # Queries repeat UNFINISHED_WHERE and compare concurrency_group with `=`
            # (which implies IS NOT NULL, so SQLite can use the partial index).
            "CREATE INDEX builds_unfinished_by_group ON builds (concurrency_group, build_id)"
            " WHERE status NOT IN ('SUCCEEDED', 'FAILED', 'CANCELED')"
            " AND concurrency_group IS NOT NULL",
            # One row per cancelled build (the key makes a second write a no-op, see
            # INSERT OR IGNORE in audit_records.py). No foreign key to builds: the
            # record is self-contained and must outlive any future pruning of builds,
            # and a write that can never succeed would stall the audit writer's retries.
            # requested_at/finished_at repeat the record's times for range queries.
            """CREATE TABLE cancel_audit (
                build_id TEXT PRIMARY KEY,
                record TEXT NOT NULL,
                requested_at REAL,
                finished_at REAL,
                written_at REAL
            )""",
            # The start-up sweep looks for CANCELED builds without an audit row; this
            # keeps it to the cancelled builds instead of the whole history (CANCELED_WHERE).
            "CREATE INDEX builds_canceled ON builds (build_id) WHERE status = 'CANCELED'",
        ),
    ),
    Migration(
        4,
        "the submitter of each build (authentication, issue 6)",
        (
            # The token's principal; fixed at submission. NULL for builds submitted
            # before v4 or with authentication off: under a RESTRICTED cancel policy
            # only an admin may cancel those.
            "ALTER TABLE builds ADD COLUMN submitted_by TEXT",
        ),
    ),
    Migration(
        5,
        "when each job started (job timeouts count from it across restarts)",
        (
            # Epoch seconds of the job's assignment to an agent; NULL until then. Jobs
            # of older rows get NULL: after an upgrade their timeout counts from the
            # server's start, as it did before v5.
            "ALTER TABLE jobs ADD COLUMN started_at REAL",
        ),
    ),
    Migration(
        6,
        "idempotency keys of SubmitBuild (request_id)",
        (
            # One row per (submitter, request_id): the primary key is the unique index
            # that makes a second build of one key impossible, even if two submits of
            # it raced. submitter is '' with authentication off. digest: SHA-256 of
            # the request without its key, to refuse the key reused for another body.
            """CREATE TABLE submit_requests (
                submitter TEXT NOT NULL,
                request_id TEXT NOT NULL,
                digest TEXT NOT NULL,
                build_id TEXT NOT NULL REFERENCES builds (build_id),
                PRIMARY KEY (submitter, request_id)
            ) WITHOUT ROWID""",
        ),
    ),
    Migration(
        7,
        "escalations of a cancel kept beside the first cancel",
        (
            # JSON list of {requested_by, reason, requested_at, force}, in order; NULL
            # for a build never escalated (and every build before v7). A column of the
            # build row, not a table: it changes in the same compare-and-set update as
            # the rest of the cancel, so the two can never disagree.
            "ALTER TABLE builds ADD COLUMN cancel_escalations TEXT",
        ),
    ),
    Migration(
        8,
        "the webhook outbox and its per-endpoint delivery log",
        (
            # One row per event that has webhooks, written in the transaction of the
            # event itself (a build's CANCELED write), so no crash can lose one.
            # delivery_id is the idempotency key sent in X-Buildcontrol-Delivery;
            # payload is the cancel record's JSON (the body's "record"). Kept after
            # delivery, for redelivery.
            """CREATE TABLE webhook_outbox (
                delivery_id TEXT PRIMARY KEY,
                event TEXT NOT NULL,
                build_id TEXT NOT NULL,
                payload TEXT NOT NULL,
                created_at REAL NOT NULL
            )""",
            # One row per (delivery, endpoint), inserted PENDING with the outbox row
            # for each endpoint configured then, updated after each request.
            # endpoint is a digest of the URL (the URL may hold a secret);
            # endpoint_label names it for people. state: DeliveryState.
            """CREATE TABLE webhook_deliveries (
                delivery_id TEXT NOT NULL,
                endpoint TEXT NOT NULL,
                endpoint_label TEXT NOT NULL,
                state TEXT NOT NULL,
                attempts INTEGER NOT NULL,
                last_status INTEGER,
                last_error TEXT,
                last_attempt_at REAL,
                PRIMARY KEY (delivery_id, endpoint)
            ) WITHOUT ROWID""",
            # The start-up read of what is left to deliver walks only the unfinished
            # deliveries of one endpoint, not the whole history (UNDELIVERED).
            "CREATE INDEX webhook_deliveries_unfinished ON webhook_deliveries (endpoint)"
            " WHERE state IN ('FAILED', 'PENDING')",
        ),
    ),
    Migration(
        9,
        "access tokens in the database (PostgreSQL; SQLite keeps its tokens file)",
        # Nothing on SQLite: one server on one host reads the tokens file beside its
        # database (docs/security.md says why); the step keeps the versions aligned.
        (),
    ),
    Migration(
        10,
        "retention: indexes of the purge, incremental vacuum",
        (
            # The purge walks the oldest finished builds, a few hundred at a time;
            # live builds are never purged and stay out of this index. Queries
            # repeat TERMINAL_WHERE of retention_sql.py for SQLite to use it.
            "CREATE INDEX builds_finished ON builds (finished_at, build_id)"
            " WHERE status IN ('SUCCEEDED', 'FAILED', 'CANCELED')",
            # A purged build takes its submit keys along: found by build, not by a scan.
            "CREATE INDEX submit_requests_by_build ON submit_requests (build_id)",
            # Audit records and outbox entries past their own windows, oldest first.
            "CREATE INDEX cancel_audit_by_finished ON cancel_audit (finished_at)",
            "CREATE INDEX webhook_outbox_by_created ON webhook_outbox (created_at)",
            # Freed pages go back to the file system in small steps at quiet moments
            # (PRAGMA incremental_vacuum) instead of staying in the file for good.
            # A file made before v10 is rewritten once (vacuum_after) for it to apply:
            # about the time of copying the file; new files have it from the start.
            "PRAGMA auto_vacuum = INCREMENTAL",
        ),
        vacuum_after=True,
    ),
    Migration(
        11,
        "which env entries of a job are secret",
        (
            # JSON list of names of the job's env entries whose values are secret
            # (masked as *** in its log); '[]' for every job before v11.
            "ALTER TABLE jobs ADD COLUMN secret_env_names TEXT NOT NULL DEFAULT '[]'",
        ),
    ),
    Migration(
        12,
        "replicas: shard leases, live replicas, cross-replica commands",
        # Nothing on SQLite: one server per database file (replicas need PostgreSQL).
        (),
    ),
    Migration(
        13,
        "job logs in the database (PostgreSQL; SQLite keeps them as files)",
        # Nothing on SQLite: its job logs are files under the data dir (logs/files.py,
        # docs/logs.md says why); the step keeps the versions aligned.
        (),
    ),
    Migration(
        14,
        "replicas: jobs offered to the agents of other replicas",
        # Nothing on SQLite: one server per database file (replicas need PostgreSQL).
        (),
    ),
    Migration(
        15,
        "the job-token key, one for every server of the database",
        # Nothing on SQLite: its one server keeps the key in DATA_DIR/job-token.key.
        (),
    ),
)

LATEST_VERSION = MIGRATIONS[-1].version

# The condition of the builds_unfinished partial index, for queries that should use it.
UNFINISHED_WHERE = "status NOT IN ('SUCCEEDED', 'FAILED', 'CANCELED')"
# The condition of the builds_canceled partial index (v3).
CANCELED_WHERE = "status = 'CANCELED'"
# What `PRAGMA auto_vacuum` reads in INCREMENTAL mode.
INCREMENTAL_AUTO_VACUUM = 2


async def read_version(connection: aiosqlite.Connection) -> int:
    rows = list(await connection.execute_fetchall("PRAGMA user_version"))
    return int(rows[0][0])


async def read_application_id(connection: aiosqlite.Connection) -> int:
    rows = list(await connection.execute_fetchall("PRAGMA application_id"))
    return int(rows[0][0])


async def count_tables(connection: aiosqlite.Connection) -> int:
    rows = list(
        await connection.execute_fetchall(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    )
    return int(rows[0][0])


class SchemaTooNew(Exception):
    """The database was written by a newer buildcontrol; this code must not touch it."""

    def __init__(self, version: int) -> None:
        super().__init__(f"schema version {version} is newer than this server's ({LATEST_VERSION})")
        self.version = version


async def migrate(connection: aiosqlite.Connection, target: int = LATEST_VERSION) -> list[int]:
    """Apply every migration above the recorded version up to `target`, each in one
    transaction. Returns the versions applied. The connection must be in autocommit
    mode (isolation_level=None) so the transactions here are the only ones."""
    applied: list[int] = []
    while True:
        await connection.execute("BEGIN IMMEDIATE")
        try:
            # Read under the write lock: the recorded version cannot move under us. The
            # open checks read it already, but only here is a WAL left by a crash
            # recovered for sure, and a newer version must stop us before any write.
            current = await read_version(connection)
            if current > LATEST_VERSION:
                raise SchemaTooNew(current)
            pending = [m for m in MIGRATIONS if current < m.version <= target]
            if not pending:
                await connection.execute("ROLLBACK")
                return applied
            migration = pending[0]
            for statement in migration.statements:
                await connection.execute(statement)
            await connection.execute(f"PRAGMA user_version = {migration.version}")
            await connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                await connection.execute("ROLLBACK")
            raise
        applied.append(migration.version)
        if migration.vacuum_after:
            await _vacuum_unless_incremental(connection)


async def _vacuum_unless_incremental(connection: aiosqlite.Connection) -> None:
    """Rewrite the file once so auto_vacuum=INCREMENTAL applies; a crash before the
    rewrite leaves it as it was (freed pages reused, not returned), which is safe.
    A new file already has the mode (set before its first table), so no rewrite."""
    rows = list(await connection.execute_fetchall("PRAGMA auto_vacuum"))
    if int(rows[0][0]) == INCREMENTAL_AUTO_VACUUM:
        return
    await connection.execute("PRAGMA auto_vacuum = INCREMENTAL")
    await connection.execute("VACUUM")
