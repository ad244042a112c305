"""The PostgreSQL schema: the same migrations as schema.py (SQLite), step by step.

Each `Migration` here has the version and summary of its SQLite twin, so a new SQLite
step is mirrored by appending one here with the same number. Differences from SQLite,
on purpose:

- keys are `TEXT COLLATE "C"`: ids compare byte by byte as in SQLite (ListBuilds pages
  with `build_id < …`), whatever the database's default collation;
- REAL is `DOUBLE PRECISION`, INTEGER is `BIGINT`; 0/1 flags stay integers so both
  backends take the same rows (rows.py);
- the version lives in a one-row `schema_version` table (SQLite: `PRAGMA user_version`),
  and the table's existence marks the database as ours (SQLite: `application_id`).

Every migration runs in one transaction with the bump of `schema_version`, under a
transaction advisory lock, so two servers starting at once do not both apply it.
"""

from __future__ import annotations

from typing import Any

from buildcontrol_server.store.schema import Migration, SchemaTooNew

# Transaction-scoped advisory lock key of migrations ("bctm" in ASCII).
MIGRATION_LOCK_KEY = 0x6263746D

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "builds, jobs and steps",
        (
            "CREATE TABLE schema_version (version BIGINT NOT NULL)",
            "INSERT INTO schema_version (version) VALUES (0)",
            # stage_names: JSON list; cancel_*: NULL until the build is cancelled.
            """CREATE TABLE builds (
                build_id TEXT COLLATE "C" PRIMARY KEY,
                pipeline TEXT COLLATE "C" NOT NULL,
                stage_names TEXT NOT NULL,
                created_at DOUBLE PRECISION NOT NULL,
                status TEXT NOT NULL,
                finished_at DOUBLE PRECISION,
                cancel_reason TEXT,
                cancel_requested_by TEXT,
                cancel_force BIGINT,
                cancel_grace_period DOUBLE PRECISION,
                cancel_requested_at DOUBLE PRECISION,
                version BIGINT NOT NULL
            )""",
            # position: the job's order in its build; labels, env: JSON objects.
            """CREATE TABLE jobs (
                job_id TEXT COLLATE "C" PRIMARY KEY,
                build_id TEXT COLLATE "C" NOT NULL REFERENCES builds (build_id),
                stage_index BIGINT NOT NULL,
                position BIGINT NOT NULL,
                name TEXT NOT NULL,
                labels TEXT NOT NULL,
                env TEXT NOT NULL,
                status TEXT NOT NULL,
                outcome TEXT,
                agent_id TEXT,
                exit_code BIGINT,
                finished_at DOUBLE PRECISION,
                version BIGINT NOT NULL
            )""",
            "CREATE INDEX jobs_by_build ON jobs (build_id, position)",
            # PostgreSQL only: aborts the statement that calls it unless every
            # compare-and-set matched, so a change set of updates alone is one
            # statement in autocommit (one round trip, postgres_writer.py) and still
            # all or nothing. SQLSTATE BC409: "conflict", ours.
            """CREATE FUNCTION buildcontrol_check_versions(matched BIGINT[], expected BIGINT[])
            RETURNS INT LANGUAGE plpgsql AS $$
            BEGIN
                IF matched IS DISTINCT FROM expected THEN
                    RAISE EXCEPTION 'compare-and-set missed: matched %, expected %',
                        matched, expected USING ERRCODE = 'BC409';
                END IF;
                RETURN 0;
            END $$""",
            """CREATE TABLE steps (
                job_id TEXT COLLATE "C" NOT NULL REFERENCES jobs (job_id),
                step_index BIGINT NOT NULL,
                name TEXT NOT NULL,
                command TEXT NOT NULL,
                status TEXT NOT NULL,
                exit_code BIGINT,
                version BIGINT NOT NULL,
                PRIMARY KEY (job_id, step_index)
            )""",
        ),
    ),
    Migration(
        2,
        "indexes for ListBuilds by pipeline and for recovery of unfinished builds",
        (
            "CREATE INDEX builds_by_pipeline ON builds (pipeline, build_id)",
            "CREATE INDEX builds_unfinished ON builds (build_id)"
            " WHERE status NOT IN ('SUCCEEDED', 'FAILED', 'CANCELED')",
        ),
    ),
    Migration(
        3,
        "cleanup (run_on_cancel), job timeouts, concurrency groups, the cancel audit",
        (
            "ALTER TABLE jobs ADD COLUMN run_on_cancel BIGINT NOT NULL DEFAULT 0",
            "ALTER TABLE jobs ADD COLUMN timeout DOUBLE PRECISION",
            "ALTER TABLE steps ADD COLUMN run_on_cancel BIGINT NOT NULL DEFAULT 0",
            'ALTER TABLE builds ADD COLUMN concurrency_group TEXT COLLATE "C"',
            "ALTER TABLE builds ADD COLUMN cancel_in_progress BIGINT NOT NULL DEFAULT 0",
            "CREATE INDEX builds_unfinished_by_group ON builds (concurrency_group, build_id)"
            " WHERE status NOT IN ('SUCCEEDED', 'FAILED', 'CANCELED')"
            " AND concurrency_group IS NOT NULL",
            # No foreign key to builds, as on SQLite: the record outlives any pruning.
            """CREATE TABLE cancel_audit (
                build_id TEXT COLLATE "C" PRIMARY KEY,
                record TEXT NOT NULL,
                requested_at DOUBLE PRECISION,
                finished_at DOUBLE PRECISION,
                written_at DOUBLE PRECISION
            )""",
            "CREATE INDEX builds_canceled ON builds (build_id) WHERE status = 'CANCELED'",
        ),
    ),
    Migration(
        4,
        "the submitter of each build (authentication, issue 6)",
        ("ALTER TABLE builds ADD COLUMN submitted_by TEXT",),
    ),
    Migration(
        5,
        "when each job started (job timeouts count from it across restarts)",
        # Epoch seconds of the job's assignment to an agent; NULL until then.
        ("ALTER TABLE jobs ADD COLUMN started_at DOUBLE PRECISION",),
    ),
    Migration(
        6,
        "idempotency keys of SubmitBuild (request_id)",
        (
            # The primary key makes a second build of one key impossible, even if two
            # submits of it raced; submitter is '' with authentication off.
            """CREATE TABLE submit_requests (
                submitter TEXT COLLATE "C" NOT NULL,
                request_id TEXT COLLATE "C" NOT NULL,
                digest TEXT NOT NULL,
                build_id TEXT COLLATE "C" NOT NULL REFERENCES builds (build_id),
                PRIMARY KEY (submitter, request_id)
            )""",
        ),
    ),
    Migration(
        7,
        "escalations of a cancel kept beside the first cancel",
        # JSON list of escalations, in order; NULL for a build never escalated.
        ("ALTER TABLE builds ADD COLUMN cancel_escalations TEXT",),
    ),
    Migration(
        8,
        "the webhook outbox and its per-endpoint delivery log",
        (
            # Written in the transaction of the event itself; kept after delivery.
            """CREATE TABLE webhook_outbox (
                delivery_id TEXT COLLATE "C" PRIMARY KEY,
                event TEXT NOT NULL,
                build_id TEXT COLLATE "C" NOT NULL,
                payload TEXT NOT NULL,
                created_at DOUBLE PRECISION NOT NULL
            )""",
            # One row per (delivery, endpoint); endpoint is a digest of the URL.
            """CREATE TABLE webhook_deliveries (
                delivery_id TEXT COLLATE "C" NOT NULL,
                endpoint TEXT COLLATE "C" NOT NULL,
                endpoint_label TEXT COLLATE "C" NOT NULL,
                state TEXT NOT NULL,
                attempts BIGINT NOT NULL,
                last_status BIGINT,
                last_error TEXT,
                last_attempt_at DOUBLE PRECISION,
                PRIMARY KEY (delivery_id, endpoint)
            )""",
            # What is left to deliver at one endpoint: a walk of the unfinished rows.
            "CREATE INDEX webhook_deliveries_unfinished ON webhook_deliveries (endpoint)"
            " WHERE state IN ('FAILED', 'PENDING')",
        ),
    ),
    Migration(
        9,
        "access tokens in the database (PostgreSQL; SQLite keeps its tokens file)",
        (
            # One row per token, as SHA-256 only; position keeps the order they were
            # created in (`token list`). agent_id: an id pattern, for agent tokens only.
            """CREATE TABLE access_tokens (
                sha256 TEXT COLLATE "C" PRIMARY KEY,
                name TEXT NOT NULL,
                role TEXT NOT NULL,
                agent_id TEXT,
                position BIGINT NOT NULL
            )""",
            # generation: bumped by every change (servers re-read on a new one);
            # bootstrapped: 1 once a first start created tokens, so a table emptied
            # by revocations is not filled with a fresh admin token by the next start.
            """CREATE TABLE access_token_state (
                generation BIGINT NOT NULL,
                bootstrapped BIGINT NOT NULL
            )""",
            "INSERT INTO access_token_state (generation, bootstrapped) VALUES (0, 0)",
        ),
    ),
    Migration(
        10,
        "retention: indexes of the purge, incremental vacuum",
        (
            # The purge walks the oldest finished builds; live ones stay out of it.
            "CREATE INDEX builds_finished ON builds (finished_at, build_id)"
            " WHERE status IN ('SUCCEEDED', 'FAILED', 'CANCELED')",
            "CREATE INDEX submit_requests_by_build ON submit_requests (build_id)",
            "CREATE INDEX cancel_audit_by_finished ON cancel_audit (finished_at)",
            "CREATE INDEX webhook_outbox_by_created ON webhook_outbox (created_at)",
            # No vacuum step: PostgreSQL's autovacuum reclaims the deleted rows
            # (docs/operations.md names the settings that matter).
        ),
    ),
    Migration(
        11,
        "which env entries of a job are secret",
        # JSON list of names; '[]' for every job before v11.
        ("ALTER TABLE jobs ADD COLUMN secret_env_names TEXT NOT NULL DEFAULT '[]'",),
    ),
    Migration(
        12,
        "replicas: shard leases, live replicas, cross-replica commands",
        (
            # Who owns each shard of builds (replicas/leases.py). `epoch` grows at
            # every takeover; each write of a replica checks it in its transaction.
            "CREATE TABLE shard_leases (shard INTEGER PRIMARY KEY, owner TEXT,"
            " epoch BIGINT NOT NULL DEFAULT 0,"
            " expires_at TIMESTAMPTZ NOT NULL DEFAULT '-infinity')",
            # The replicas alive now (each renews its row with its leases): how many
            # shards each should hold, and the channel its commands are sent on.
            "CREATE TABLE replicas (instance_id TEXT PRIMARY KEY, name TEXT NOT NULL,"
            " expires_at TIMESTAMPTZ NOT NULL)",
            # Commands for a build whose owner is another replica (replicas/inbox.py):
            # written by the replica that took the call, applied and deleted by the owner.
            "CREATE TABLE build_inbox (id BIGSERIAL PRIMARY KEY, build_id TEXT NOT NULL,"
            " shard INTEGER NOT NULL, kind TEXT NOT NULL, body TEXT NOT NULL,"
            " created_at TIMESTAMPTZ NOT NULL DEFAULT now())",
            "CREATE INDEX build_inbox_by_shard ON build_inbox (shard, id)",
            # Which replica holds each agent's stream, and the stops left for it there
            # by the owners of the builds (replicas/agent_delivery.py).
            "CREATE TABLE agent_sessions (agent_id TEXT PRIMARY KEY, instance_id TEXT NOT NULL,"
            " updated_at TIMESTAMPTZ NOT NULL)",
            "CREATE TABLE agent_outbox (id BIGSERIAL PRIMARY KEY, agent_id TEXT NOT NULL,"
            " build_id TEXT NOT NULL, job_id TEXT NOT NULL, body TEXT NOT NULL,"
            " created_at TIMESTAMPTZ NOT NULL DEFAULT now())",
            "CREATE INDEX agent_outbox_by_agent ON agent_outbox (agent_id, job_id)",
        ),
    ),
    Migration(
        13,
        "job logs in the database (PostgreSQL; SQLite keeps them as files)",
        (
            # IF NOT EXISTS: a server before v13 made these tables itself when its log
            # store opened; their rows are kept. From v13 on, the version says they exist.
            # One row per job: its size and whether the log is complete; locked (FOR
            # UPDATE) by the append that extends it (logs/postgres.py).
            """CREATE TABLE IF NOT EXISTS job_logs (
                build_id TEXT COLLATE "C" NOT NULL,
                job_id TEXT COLLATE "C" NOT NULL,
                size BIGINT NOT NULL,
                complete BOOLEAN NOT NULL,
                written_at DOUBLE PRECISION NOT NULL,
                PRIMARY KEY (build_id, job_id)
            )""",
            # One row per uploaded chunk (at most 1 MiB), by its offset in the job's log.
            """CREATE TABLE IF NOT EXISTS job_log_chunks (
                build_id TEXT COLLATE "C" NOT NULL,
                job_id TEXT COLLATE "C" NOT NULL,
                start_offset BIGINT NOT NULL,
                data BYTEA NOT NULL,
                PRIMARY KEY (build_id, job_id, start_offset)
            )""",
        ),
    ),
    Migration(
        14,
        "replicas: jobs offered to the agents of other replicas",
        (
            # Ready jobs their owner found no agent of its own for (replicas/offers.py):
            # a replica holding a fitting agent with a free slot claims one by deleting
            # its row, in the transaction that leaves the owner an assignment in its
            # build inbox. labels: the job's JSON object.
            """CREATE TABLE job_offers (
                id BIGSERIAL PRIMARY KEY,
                job_id TEXT COLLATE "C" NOT NULL UNIQUE,
                build_id TEXT COLLATE "C" NOT NULL,
                shard INTEGER NOT NULL,
                labels TEXT NOT NULL,
                created_at TIMESTAMPTZ NOT NULL DEFAULT now()
            )""",
            # An agent outbox row is a StopJob or (from v14) an AssignJob: an AssignJob
            # row goes once the agent took the job, a stop's once it confirms the stop.
            "ALTER TABLE agent_outbox ADD COLUMN kind TEXT NOT NULL DEFAULT 'stop'",
        ),
    ),
    Migration(
        15,
        "the job-token key, one for every server of the database",
        # Before v15 each server kept its own key file, so a job token minted by one
        # replica was refused by another. One row (id 1): hex of the 32-byte key,
        # written by the first server that starts (security/server_security.py).
        ("CREATE TABLE job_token_key (id INTEGER PRIMARY KEY CHECK (id = 1), key TEXT NOT NULL)",),
    ),
)

# The first version with the log tables (the log store refuses an older database).
LOG_TABLES_VERSION = 13

POSTGRES_LATEST_VERSION = MIGRATIONS[-1].version


class NotOurDatabase(Exception):
    """The database has tables but no buildcontrol schema: left untouched."""


async def read_version(connection: Any) -> int:
    """The recorded version; 0 for a database without buildcontrol's tables."""
    exists = await connection.fetchval("SELECT to_regclass('schema_version') IS NOT NULL")
    if not exists:
        tables = await connection.fetchval(
            "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()"
        )
        if tables:
            raise NotOurDatabase(f"has {tables} tables but no buildcontrol schema; left untouched")
        return 0
    return int(await connection.fetchval("SELECT version FROM schema_version"))


async def migrate(connection: Any, target: int = POSTGRES_LATEST_VERSION) -> list[int]:
    """Apply every migration above the recorded version up to `target`, each in its own
    transaction. Returns the versions applied. Refuses a newer database untouched."""
    applied: list[int] = []
    while True:
        async with connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY)
            current = await read_version(connection)
            if current > POSTGRES_LATEST_VERSION:
                raise SchemaTooNew(current)
            pending = [m for m in MIGRATIONS if current < m.version <= target]
            if not pending:
                return applied
            migration = pending[0]
            for statement in migration.statements:
                await connection.execute(statement)
            await connection.execute("UPDATE schema_version SET version = $1", migration.version)
        applied.append(migration.version)
