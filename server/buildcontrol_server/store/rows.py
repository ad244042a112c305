"""Entities ↔ table rows: the SQL text of every statement and the tuples it takes.

A change set is turned into rows when it is queued (`PreparedWrite.of`), not when the
writer gets to it: the actor may change its entities again right after, and the
write must be what the event produced. Rows of one shape go to one `executemany`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from buildcontrol_server.domain.model import (
    Build,
    CancelEscalation,
    CancelInfo,
    ChangeSet,
    Job,
    Stage,
    Step,
)
from buildcontrol_server.domain.states import BuildStatus, JobOutcome, JobStatus, StepStatus
from buildcontrol_server.store.audit_records import (
    INSERT_AUDIT,
    audit_row,
    escalation_from_dict,
    escalation_to_dict,
)
from buildcontrol_server.store.webhook_rows import (
    INSERT_OUTBOX,
    INSERT_PENDING_DELIVERY,
    UPSERT_DELIVERY,
    delivery_row,
    outbox_row,
    pending_delivery_rows,
)

Row = tuple[Any, ...]
# ("build", build_id) | ("job", job_id) | ("step", job_id, index)
EntityKey = tuple[Any, ...]

# The v3 columns (run_on_cancel, timeout, concurrency_group, cancel_in_progress) come
# last in each statement and each SELECT list, so the v1 positions stay as they were;
# the v4 column (submitted_by) comes after them, and the v7 one (cancel_escalations)
# last.
INSERT_BUILD = (
    "INSERT INTO builds (build_id, pipeline, stage_names, created_at, status, finished_at,"
    " cancel_reason, cancel_requested_by, cancel_force, cancel_grace_period,"
    " cancel_requested_at, version, concurrency_group, cancel_in_progress, submitted_by,"
    " cancel_escalations) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
INSERT_JOB = (
    "INSERT INTO jobs (job_id, build_id, stage_index, position, name, labels, env, status,"
    " outcome, agent_id, exit_code, finished_at, version, run_on_cancel, timeout, started_at,"
    " secret_env_names) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
INSERT_STEP = (
    "INSERT INTO steps (job_id, step_index, name, command, status, exit_code, version,"
    " run_on_cancel) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
# Compare-and-set: every mutable column, the new version, matched on the old version.
# The v3 columns are fixed at submission, so updates leave them alone.
UPDATE_BUILD = (
    "UPDATE builds SET status = ?, finished_at = ?, cancel_reason = ?,"
    " cancel_requested_by = ?, cancel_force = ?, cancel_grace_period = ?,"
    " cancel_requested_at = ?, version = ?, cancel_escalations = ?"
    " WHERE build_id = ? AND version = ?"
)
UPDATE_JOB = (
    "UPDATE jobs SET status = ?, outcome = ?, agent_id = ?, exit_code = ?, finished_at = ?,"
    " version = ?, started_at = ? WHERE job_id = ? AND version = ?"
)
UPDATE_STEP = (
    "UPDATE steps SET status = ?, exit_code = ?, version = ?"
    " WHERE job_id = ? AND step_index = ? AND version = ?"
)

BUILD_COLUMNS = (
    "builds.build_id, builds.pipeline, builds.stage_names, builds.created_at, builds.status,"
    " builds.finished_at, builds.cancel_reason, builds.cancel_requested_by,"
    " builds.cancel_force, builds.cancel_grace_period, builds.cancel_requested_at,"
    " builds.version, builds.concurrency_group, builds.cancel_in_progress,"
    " builds.submitted_by, builds.cancel_escalations"
)
JOB_COLUMNS = (
    "jobs.job_id, jobs.build_id, jobs.stage_index, jobs.name, jobs.labels, jobs.env,"
    " jobs.status, jobs.outcome, jobs.agent_id, jobs.exit_code, jobs.finished_at, jobs.version,"
    " jobs.run_on_cancel, jobs.timeout, jobs.started_at, jobs.secret_env_names"
)
INSERT_SUBMIT_REQUEST = (
    "INSERT INTO submit_requests (submitter, request_id, digest, build_id) VALUES (?, ?, ?, ?)"
)
SELECT_SUBMIT_REQUEST = (
    "SELECT digest, build_id FROM submit_requests WHERE submitter = ? AND request_id = ?"
)
STEP_COLUMNS = (
    "steps.job_id, steps.step_index, steps.name, steps.command, steps.status,"
    " steps.exit_code, steps.version, steps.run_on_cancel"
)


@dataclass
class PreparedWrite:
    """The rows of one or more change sets, grouped by statement."""

    insert_builds: list[Row] = field(default_factory=list)
    insert_jobs: list[Row] = field(default_factory=list)
    insert_steps: list[Row] = field(default_factory=list)
    update_builds: list[Row] = field(default_factory=list)
    update_jobs: list[Row] = field(default_factory=list)
    update_steps: list[Row] = field(default_factory=list)
    insert_audit: list[Row] = field(default_factory=list)
    insert_requests: list[Row] = field(default_factory=list)
    insert_outbox: list[Row] = field(default_factory=list)
    insert_pending_deliveries: list[Row] = field(default_factory=list)
    upsert_deliveries: list[Row] = field(default_factory=list)
    inserted: set[EntityKey] = field(default_factory=set)
    updated: set[EntityKey] = field(default_factory=set)

    @classmethod
    def of(cls, changes: ChangeSet) -> PreparedWrite:
        write = cls()
        if changes.new_build is not None:
            write._add_new_build(changes.new_build)
        if (key := changes.submit_request) is not None:
            write.insert_requests.append((key.submitter, key.request_id, key.digest, key.build_id))
        for build, expected in changes.builds.values():
            write.update_builds.append(
                (
                    *_build_state(build),
                    escalations_to_json(build.cancel),
                    build.build_id,
                    expected,
                )
            )
            write.updated.add(("build", build.build_id))
        for job, expected in changes.jobs.values():
            write.update_jobs.append((*_job_state(job), job.started_at, job.job_id, expected))
            write.updated.add(("job", job.job_id))
        for step, expected in changes.steps.values():
            write.update_steps.append(
                (step.status.value, step.exit_code, step.version, step.job_id, step.index, expected)
            )
            write.updated.add(("step", step.job_id, step.index))
        # Audit rows are never updated, and INSERT OR IGNORE cannot conflict, so they
        # need no entity key for the merge-order check.
        write.insert_audit = [audit_row(record) for record in changes.audit]
        # Like audit rows: keyed by their own ids, never compare-and-set.
        write.insert_outbox = [outbox_row(entry) for entry in changes.outbox]
        write.insert_pending_deliveries = [
            row for entry in changes.outbox for row in pending_delivery_rows(entry)
        ]
        write.upsert_deliveries = [delivery_row(log) for log in changes.deliveries]
        return write

    def _add_new_build(self, build: Build) -> None:
        self.insert_builds.append(
            (
                build.build_id,
                build.pipeline,
                json.dumps([stage.name for stage in build.stages]),
                build.created_at,
                *_build_state(build),
                build.concurrency_group,
                1 if build.cancel_in_progress else 0,
                build.submitted_by,
                escalations_to_json(build.cancel),
            )
        )
        self.inserted.add(("build", build.build_id))
        for position, job in enumerate(build.jobs()):
            self.insert_jobs.append(
                (
                    job.job_id,
                    job.build_id,
                    job.stage_index,
                    position,
                    job.name,
                    json.dumps(job.labels),
                    json.dumps(job.env),
                    *_job_state(job),
                    1 if job.run_on_cancel else 0,
                    job.timeout,
                    job.started_at,
                    json.dumps(job.secret_env_names),
                )
            )
            self.inserted.add(("job", job.job_id))
            for step in job.steps:
                self.insert_steps.append(
                    (
                        step.job_id,
                        step.index,
                        step.name,
                        step.command,
                        step.status.value,
                        step.exit_code,
                        step.version,
                        1 if step.run_on_cancel else 0,
                    )
                )
                self.inserted.add(("step", step.job_id, step.index))

    def extend(self, other: PreparedWrite) -> None:
        self.insert_builds += other.insert_builds
        self.insert_jobs += other.insert_jobs
        self.insert_steps += other.insert_steps
        self.update_builds += other.update_builds
        self.update_jobs += other.update_jobs
        self.update_steps += other.update_steps
        self.insert_audit += other.insert_audit
        self.insert_requests += other.insert_requests
        self.insert_outbox += other.insert_outbox
        self.insert_pending_deliveries += other.insert_pending_deliveries
        self.upsert_deliveries += other.upsert_deliveries
        self.inserted |= other.inserted
        self.updated |= other.updated

    def inserts(self) -> list[tuple[str, list[Row]]]:
        """Parents before children, so foreign keys hold at every statement."""
        return [
            (INSERT_BUILD, self.insert_builds),
            (INSERT_JOB, self.insert_jobs),
            (INSERT_STEP, self.insert_steps),
            (INSERT_AUDIT, self.insert_audit),
            (INSERT_SUBMIT_REQUEST, self.insert_requests),
            (INSERT_OUTBOX, self.insert_outbox),
            (INSERT_PENDING_DELIVERY, self.insert_pending_deliveries),
            (UPSERT_DELIVERY, self.upsert_deliveries),
        ]

    def updates(self) -> list[tuple[str, str, list[Row]]]:
        """(table, statement, rows) of each compare-and-set update."""
        return [
            ("builds", UPDATE_BUILD, self.update_builds),
            ("jobs", UPDATE_JOB, self.update_jobs),
            ("steps", UPDATE_STEP, self.update_steps),
        ]

    @property
    def row_count(self) -> int:
        return sum(len(rows) for _, rows in self.inserts()) + sum(
            len(rows) for _, _, rows in self.updates()
        )


def _build_state(build: Build) -> Row:
    cancel = build.cancel
    return (
        build.status.value,
        build.finished_at,
        cancel.reason if cancel else None,
        cancel.requested_by if cancel else None,
        (1 if cancel.force else 0) if cancel else None,
        cancel.grace_period if cancel else None,
        cancel.requested_at if cancel else None,
        build.version,
    )


def escalations_to_json(cancel: CancelInfo | None) -> str | None:
    """The cancel_escalations column: NULL when there are none."""
    if cancel is None or not cancel.escalations:
        return None
    return json.dumps([escalation_to_dict(e) for e in cancel.escalations], separators=(",", ":"))


def escalations_from_json(text: str | None) -> tuple[CancelEscalation, ...]:
    if not text:
        return ()
    return tuple(escalation_from_dict(item) for item in json.loads(text))


def _job_state(job: Job) -> Row:
    return (
        job.status.value,
        job.outcome.value if job.outcome else None,
        job.agent_id,
        job.exit_code,
        job.finished_at,
        job.version,
    )


# ---- rows → entities ----------------------------------------------------------------


def build_from_row(row: Sequence[Any]) -> Build:
    """A build without its stages; `attach_jobs` fills them in."""
    cancel = None
    if row[6] is not None:
        cancel = CancelInfo(
            reason=row[6],
            requested_by=row[7],
            force=bool(row[8]),
            grace_period=row[9],
            requested_at=row[10],
            escalations=escalations_from_json(row[15]),
        )
    return Build(
        build_id=row[0],
        pipeline=row[1],
        stages=[],
        created_at=row[3],
        status=BuildStatus(row[4]),
        cancel=cancel,
        finished_at=row[5],
        version=row[11],
        concurrency_group=row[12],
        cancel_in_progress=bool(row[13]),
        submitted_by=row[14],
    )


def stage_names_of(row: Sequence[Any]) -> list[str]:
    names: list[str] = json.loads(row[2])
    return names


def job_from_row(row: Sequence[Any]) -> Job:
    return Job(
        job_id=row[0],
        build_id=row[1],
        stage_index=row[2],
        name=row[3],
        labels=json.loads(row[4]),
        env=json.loads(row[5]),
        steps=[],
        status=JobStatus(row[6]),
        outcome=JobOutcome(row[7]) if row[7] is not None else None,
        agent_id=row[8],
        exit_code=row[9],
        finished_at=row[10],
        version=row[11],
        run_on_cancel=bool(row[12]),
        timeout=row[13],
        started_at=row[14],
        secret_env_names=tuple(json.loads(row[15])),
    )


def step_from_row(row: Sequence[Any]) -> Step:
    return Step(
        job_id=row[0],
        index=row[1],
        name=row[2],
        command=row[3],
        status=StepStatus(row[4]),
        exit_code=row[5],
        version=row[6],
        run_on_cancel=bool(row[7]),
    )


def assemble(
    build_rows: Iterable[Sequence[Any]],
    job_rows: Iterable[Sequence[Any]],
    step_rows: Iterable[Sequence[Any]],
) -> list[Build]:
    """Complete builds from their rows. Jobs must come ordered by position, steps by
    (job_id, step_index); the builds keep the order of `build_rows`."""
    builds: dict[str, Build] = {}
    for row in build_rows:
        build = build_from_row(row)
        build.stages = [Stage(name=name, jobs=[]) for name in stage_names_of(row)]
        builds[build.build_id] = build
    jobs: dict[str, Job] = {}
    for row in job_rows:
        job = job_from_row(row)
        builds[job.build_id].stages[job.stage_index].jobs.append(job)
        jobs[job.job_id] = job
    for row in step_rows:
        step = step_from_row(row)
        jobs[step.job_id].steps.append(step)
    return list(builds.values())
