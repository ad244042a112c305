"""Entities of a build (Build → Stage → Job → Step) and the set of changes one event
makes to them. Plain data: no I/O, no clocks (callers pass `now`, epoch seconds)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from buildcontrol_server.domain.deliveries import DeliveryLog, OutboxEntry
from buildcontrol_server.domain.states import (
    TERMINAL_BUILD,
    TERMINAL_JOB,
    TERMINAL_STEP,
    BuildStatus,
    JobOutcome,
    JobStatus,
    StepStatus,
)


@dataclass
class Step:
    job_id: str
    index: int
    name: str
    command: str
    status: StepStatus = StepStatus.PENDING
    exit_code: int | None = None
    version: int = 0
    # A cleanup step: runs after its job's other steps were stopped by a cancel.
    run_on_cancel: bool = False

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STEP


@dataclass
class Job:
    job_id: str
    build_id: str
    stage_index: int
    name: str
    labels: dict[str, str]
    env: dict[str, str]
    steps: list[Step]
    status: JobStatus = JobStatus.PENDING
    outcome: JobOutcome | None = None
    agent_id: str | None = None
    exit_code: int | None = None
    finished_at: float | None = None
    version: int = 0
    # A cleanup job ("finally"): when the build is cancelled it still runs, after the
    # other jobs were stopped.
    run_on_cancel: bool = False
    # Longest the job may run (seconds) before the server cancels the build; None
    # means the server's default.
    timeout: float | None = None
    # When the job was handed to an agent (epoch seconds): its timeout counts from
    # here, across server restarts. None until assigned (and for rows older than v5).
    started_at: float | None = None
    # Names of the `env` entries whose values are secret (masked in the job's log;
    # no read returns env).
    secret_env_names: tuple[str, ...] = ()

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_JOB

    @property
    def on_agent(self) -> bool:
        """Handed to an agent and not finished: someone must stop it on a cancel."""
        return self.status in (JobStatus.ASSIGNED, JobStatus.RUNNING, JobStatus.STOPPING)


@dataclass
class Stage:
    name: str
    jobs: list[Job]


@dataclass(frozen=True)
class CancelEscalation:
    """A later cancel that made a cancel under way stricter (today: `force`). Kept
    beside the first cancel, which stays as it was asked: the audit must charge the
    forced kill to whoever forced it, not to whoever asked for a graceful stop."""

    requested_by: str
    reason: str
    requested_at: float
    force: bool = True


@dataclass(frozen=True)
class CancelInfo:
    """The first cancel of a build as it was asked, and the escalations after it."""

    reason: str
    requested_by: str
    force: bool
    grace_period: float
    requested_at: float
    escalations: tuple[CancelEscalation, ...] = ()

    @property
    def forced(self) -> bool:
        """In force now: the first cancel or any escalation skipped the grace."""
        return self.force or any(escalation.force for escalation in self.escalations)

    def escalated(self, escalation: CancelEscalation) -> CancelInfo:
        return replace(self, escalations=(*self.escalations, escalation))


@dataclass
class Build:
    build_id: str
    pipeline: str
    stages: list[Stage]
    created_at: float
    status: BuildStatus = BuildStatus.QUEUED
    cancel: CancelInfo | None = None
    finished_at: float | None = None
    version: int = 0
    # Builds of one group run one at a time, in submission order.
    concurrency_group: str | None = None
    # Submitted with cancel_in_progress: it superseded older builds of its group.
    cancel_in_progress: bool = False
    # The principal whose token submitted the build; None when authentication
    # was off. RESTRICTED pipelines let only this principal (or an admin) cancel it.
    submitted_by: str | None = None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_BUILD

    def jobs(self) -> list[Job]:
        return [job for stage in self.stages for job in stage.jobs]

    def job(self, job_id: str) -> Job | None:
        for stage in self.stages:
            for job in stage.jobs:
                if job.job_id == job_id:
                    return job
        return None


Entity = Build | Job | Step


@dataclass(frozen=True)
class JobEnding:
    job_id: str
    name: str
    status: JobStatus
    outcome: JobOutcome | None
    agent_id: str | None


@dataclass(frozen=True)
class CancelRecord:
    """What the audit keeps of one cancel: who, why, when, and how each job ended."""

    build_id: str
    pipeline: str
    reason: str
    requested_by: str
    force: bool
    grace_period: float
    requested_at: float
    finished_at: float
    status: BuildStatus
    jobs: tuple[JobEnding, ...]
    # Later cancels that forced this one, in order (the fields above are the first's).
    escalations: tuple[CancelEscalation, ...] = ()

    @classmethod
    def of(cls, build: Build) -> CancelRecord:
        assert build.cancel is not None and build.finished_at is not None
        return cls(
            build_id=build.build_id,
            pipeline=build.pipeline,
            reason=build.cancel.reason,
            requested_by=build.cancel.requested_by,
            force=build.cancel.force,
            grace_period=build.cancel.grace_period,
            requested_at=build.cancel.requested_at,
            finished_at=build.finished_at,
            status=build.status,
            jobs=tuple(
                JobEnding(j.job_id, j.name, j.status, j.outcome, j.agent_id) for j in build.jobs()
            ),
            escalations=build.cancel.escalations,
        )


@dataclass(frozen=True)
class SubmitRequest:
    """The idempotency key of a submit (AIP-155 `request_id`), stored with its build so
    a retry finds the build the first attempt made."""

    # Whose key: the submitter's name ("" with authentication off).
    submitter: str
    request_id: str
    # SHA-256 of the request without its key, to tell a retry from a different request.
    digest: str
    build_id: str


@dataclass
class ChangeSet:
    """Entities one event changed, each with the version it had before (for CAS).

    `mark()` bumps an entity's version once per change set however often it changes,
    so the store's `WHERE version = expected` matches the last committed row."""

    builds: dict[str, tuple[Build, int]] = field(default_factory=dict)
    jobs: dict[str, tuple[Job, int]] = field(default_factory=dict)
    steps: dict[tuple[str, int], tuple[Step, int]] = field(default_factory=dict)
    new_build: Build | None = None
    # Audit records to insert: a cancel's, with the write that ends it
    # (cancellation.record_audit); the start-up sweep's (effects/audit.py).
    audit: list[CancelRecord] = field(default_factory=list)
    # With new_build: its idempotency key, written in the same transaction.
    submit_request: SubmitRequest | None = None
    # Webhook notifications of cancels that end in this change set (the outbox): in
    # the same transaction as the CANCELED write, so a crash cannot lose one.
    outbox: list[OutboxEntry] = field(default_factory=list)
    # Webhook delivery log rows to write (effects/webhooks.py).
    deliveries: list[DeliveryLog] = field(default_factory=list)

    def mark(self, entity: Entity) -> None:
        if isinstance(entity, Build):
            if entity.build_id not in self.builds:
                self.builds[entity.build_id] = (entity, entity.version)
                entity.version += 1
        elif isinstance(entity, Job):
            if entity.job_id not in self.jobs:
                self.jobs[entity.job_id] = (entity, entity.version)
                entity.version += 1
        else:
            key = (entity.job_id, entity.index)
            if key not in self.steps:
                self.steps[key] = (entity, entity.version)
                entity.version += 1

    def merge(self, other: ChangeSet) -> None:
        """Take `other`'s entries that this set lacks (used to batch several builds)."""
        for build_id, entry in other.builds.items():
            self.builds.setdefault(build_id, entry)
        for job_id, job_entry in other.jobs.items():
            self.jobs.setdefault(job_id, job_entry)
        for key, step_entry in other.steps.items():
            self.steps.setdefault(key, step_entry)
        self.audit += other.audit
        self.outbox += other.outbox

    @property
    def empty(self) -> bool:
        return not (
            self.builds
            or self.jobs
            or self.steps
            or self.new_build
            or self.audit
            or self.outbox
            or self.deliveries
        )

    def statement_rows(self) -> int:
        return len(self.builds) + len(self.jobs) + len(self.steps)
