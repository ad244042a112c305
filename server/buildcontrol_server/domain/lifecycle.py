"""What each event does to a build: pure functions over the entities of model.py.

Each function applies one event to a build, records every entity it changed in the
returned `Effects.changes`, and lists what the caller (the build's actor) must do
outside the domain: stops to push to agents, jobs that became ready to schedule,
agent slots that were freed. The caller persists `changes` in one transaction and
only then acts on the rest; if the commit fails it reloads the build.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from buildcontrol_server.domain.errors import FailedPrecondition, PermissionDenied
from buildcontrol_server.domain.model import Build, CancelInfo, ChangeSet, Job, Step
from buildcontrol_server.domain.states import (
    BuildStatus,
    JobOutcome,
    JobStatus,
    StepStatus,
    transition,
)


@dataclass(frozen=True)
class StopCommand:
    """Tell `agent_id` to stop `job_id`: SIGTERM, `grace_period` s, then SIGKILL."""

    build_id: str
    job_id: str
    agent_id: str
    reason: str
    grace_period: float
    deadline: float


@dataclass
class Effects:
    changes: ChangeSet = field(default_factory=ChangeSet)
    stops: list[StopCommand] = field(default_factory=list)
    ready: list[Job] = field(default_factory=list)
    released: list[tuple[str, str]] = field(default_factory=list)  # (agent_id, job_id)
    # Jobs that became terminal in this event (for cancel streams and watchers).
    finished_jobs: list[Job] = field(default_factory=list)
    # The event was a repeat of one already applied (a duplicate report, a second
    # cancel): nothing changed, and that is not an error.
    duplicate: bool = False

    def merge(self, later: Effects) -> None:
        """Add the effects of an event applied after this one (one commit for both)."""
        self.changes.merge(later.changes)
        self.stops += later.stops
        self.ready += later.ready
        self.released += later.released
        self.finished_jobs += later.finished_jobs


# ---- entity moves (each checks the table and marks the entity changed) -------------


def _move_build(build: Build, target: BuildStatus, fx: Effects, now: float) -> None:
    build.status = transition(f"build {build.build_id}", build.status, target)
    if build.terminal:
        build.finished_at = now
    fx.changes.mark(build)


def _move_job(job: Job, target: JobStatus, fx: Effects, now: float) -> None:
    job.status = transition(f"job {job.job_id}", job.status, target)
    if job.terminal:
        job.finished_at = now
        fx.finished_jobs.append(job)
        if job.agent_id is not None:
            fx.released.append((job.agent_id, job.job_id))
    fx.changes.mark(job)


def _move_step(step: Step, target: StepStatus, fx: Effects) -> None:
    step.status = transition(f"step {step.job_id}#{step.index}", step.status, target)
    fx.changes.mark(step)


def _close_steps(job: Job, running_to: StepStatus, pending_to: StepStatus, fx: Effects) -> None:
    """End every unfinished step of a job that is ending."""
    for step in job.steps:
        if step.status is StepStatus.RUNNING and running_to is StepStatus.CANCELED:
            _move_step(step, StepStatus.STOPPING, fx)
        if step.status in (StepStatus.RUNNING, StepStatus.STOPPING):
            _move_step(step, running_to, fx)
        elif step.status is StepStatus.PENDING:
            _move_step(step, pending_to, fx)


# ---- scheduling ---------------------------------------------------------------------


def ready_jobs(build: Build) -> list[Job]:
    """PENDING jobs of the first stage that is not finished, if the build may run."""
    if build.status not in (BuildStatus.QUEUED, BuildStatus.RUNNING):
        return []
    for stage in build.stages:
        if all(job.terminal for job in stage.jobs):
            continue
        return [job for job in stage.jobs if job.status is JobStatus.PENDING]
    return []


def assign_job(build: Build, job_id: str, agent_id: str, now: float) -> Effects:
    """The scheduler picked `agent_id` for `job_id`. Refused unless the job is ready."""
    fx = Effects()
    job = _job_of(build, job_id)
    if job not in ready_jobs(build):
        raise FailedPrecondition(f"job {job_id} is {job.status.value}, not ready to assign")
    if build.status is BuildStatus.QUEUED:
        _move_build(build, BuildStatus.RUNNING, fx, now)
    job.agent_id = agent_id
    _move_job(job, JobStatus.ASSIGNED, fx, now)
    return fx


# ---- agent reports ------------------------------------------------------------------


def _reported_job(build: Build, job_id: str, agent_id: str) -> Job:
    job = _job_of(build, job_id)
    if job.agent_id != agent_id:
        raise PermissionDenied(f"job {job_id} is not assigned to agent {agent_id}")
    return job


def job_accepted(build: Build, job_id: str, agent_id: str, now: float) -> Effects:
    fx = Effects()
    job = _reported_job(build, job_id, agent_id)
    if job.status is JobStatus.ASSIGNED:
        _move_job(job, JobStatus.RUNNING, fx, now)
    else:
        fx.duplicate = True  # already running, stopping or over: nothing to do
    return fx


def step_started(build: Build, job_id: str, agent_id: str, index: int, now: float) -> Effects:
    fx = Effects()
    job = _reported_job(build, job_id, agent_id)
    step = _step_of(job, index)
    if job.status is JobStatus.ASSIGNED:
        _move_job(job, JobStatus.RUNNING, fx, now)  # JobAccepted was lost: implied
    if job.status is JobStatus.RUNNING and step.status is StepStatus.PENDING:
        _move_step(step, StepStatus.RUNNING, fx)
    elif job.status is JobStatus.STOPPING and step.status is StepStatus.CANCELED:
        fx.duplicate = True  # a stop raced the start; the stop wins, the step stays canceled
    else:
        fx.duplicate = True
    return fx


def step_finished(
    build: Build, job_id: str, agent_id: str, index: int, exit_code: int, now: float
) -> Effects:
    fx = Effects()
    job = _reported_job(build, job_id, agent_id)
    step = _step_of(job, index)
    if step.status is StepStatus.RUNNING:
        step.exit_code = exit_code
        _move_step(step, StepStatus.SUCCEEDED if exit_code == 0 else StepStatus.FAILED, fx)
    else:
        # Already recorded, or the stop was applied first (then the stop decides).
        fx.duplicate = True
    return fx


def job_finished(
    build: Build, job_id: str, agent_id: str, succeeded: bool, exit_code: int, now: float
) -> Effects:
    """The agent says the job ended by itself."""
    fx = Effects()
    job = _reported_job(build, job_id, agent_id)
    if job.status is JobStatus.STOPPING:
        # The cancel was applied first: the actor's order decides, so it is CANCELED.
        return job_stopped(build, job_id, agent_id, JobOutcome.GRACEFUL, exit_code, now)
    if job.status not in (JobStatus.RUNNING, JobStatus.ASSIGNED):
        fx.duplicate = True
        return fx
    if job.status is JobStatus.ASSIGNED:
        _move_job(job, JobStatus.RUNNING, fx, now)
    job.exit_code = exit_code
    # A StepFinished lost with a dropped stream: the job's result settles the step.
    running_to = StepStatus.SUCCEEDED if succeeded else StepStatus.FAILED
    _close_steps(job, running_to=running_to, pending_to=StepStatus.SKIPPED, fx=fx)
    _move_job(job, JobStatus.SUCCEEDED if succeeded else JobStatus.FAILED, fx, now)
    _advance(build, fx, now)
    return fx


def job_stopped(
    build: Build,
    job_id: str,
    agent_id: str,
    outcome: JobOutcome,
    exit_code: int | None,
    now: float,
) -> Effects:
    """The agent confirms a stop. A report for a job already over is a repeat."""
    fx = Effects()
    job = _reported_job(build, job_id, agent_id)
    if job.status in (JobStatus.ASSIGNED, JobStatus.RUNNING):
        # Stopped by the agent itself (its own shutdown), not by a cancel: the job did
        # not finish its work, so it failed.
        job.exit_code = exit_code
        _close_steps(job, StepStatus.FAILED, StepStatus.SKIPPED, fx)
        _move_job(job, JobStatus.FAILED, fx, now)
        _advance(build, fx, now)
        return fx
    if job.status is not JobStatus.STOPPING:
        fx.duplicate = True
        return fx
    _finish_stopped_job(job, outcome, exit_code, fx, now)
    _finish_cancel_if_done(build, fx, now)
    return fx


def _finish_stopped_job(
    job: Job, outcome: JobOutcome, exit_code: int | None, fx: Effects, now: float
) -> None:
    job.outcome = outcome
    job.exit_code = exit_code
    _close_steps(job, running_to=StepStatus.CANCELED, pending_to=StepStatus.CANCELED, fx=fx)
    _move_job(job, JobStatus.CANCELED, fx, now)


# ---- cancel -------------------------------------------------------------------------


def cancel(build: Build, info: CancelInfo, ack_timeout: float, now: float) -> Effects:
    """Apply a cancel. Idempotent: a second cancel of a CANCELING or CANCELED build
    changes nothing and returns `duplicate`; a finished build refuses."""
    fx = Effects()
    if build.status in (BuildStatus.CANCELING, BuildStatus.CANCELED):
        fx.duplicate = True
        return fx
    if build.status in (BuildStatus.SUCCEEDED, BuildStatus.FAILED):
        raise FailedPrecondition(
            f"build {build.build_id} already {build.status.value}; only a running or "
            "queued build can be cancelled"
        )
    build.cancel = info
    grace = 0.0 if info.force else info.grace_period
    deadline = now + grace + ack_timeout
    on_agent = [job for job in build.jobs() if job.on_agent]
    # With nothing on an agent there is nobody to wait for: straight to CANCELED.
    _move_build(build, BuildStatus.CANCELING if on_agent else BuildStatus.CANCELED, fx, now)
    for job in build.jobs():
        if job.status is JobStatus.PENDING:
            job.outcome = JobOutcome.NEVER_STARTED
            _close_steps(job, StepStatus.CANCELED, StepStatus.CANCELED, fx)
            _move_job(job, JobStatus.CANCELED, fx, now)
        elif job.status in (JobStatus.ASSIGNED, JobStatus.RUNNING):
            for step in job.steps:
                if step.status is StepStatus.RUNNING:
                    _move_step(step, StepStatus.STOPPING, fx)
                elif step.status is StepStatus.PENDING:
                    _move_step(step, StepStatus.CANCELED, fx)
            _move_job(job, JobStatus.STOPPING, fx, now)
            assert job.agent_id is not None
            fx.stops.append(
                StopCommand(build.build_id, job.job_id, job.agent_id, info.reason, grace, deadline)
            )
    return fx


def stop_deadline_passed(build: Build, now: float) -> Effects:
    """Agents that did not confirm their stop by the deadline: finalize as FORCED."""
    fx = Effects()
    if build.status is not BuildStatus.CANCELING:
        fx.duplicate = True
        return fx
    for job in build.jobs():
        if job.status is JobStatus.STOPPING:
            _finish_stopped_job(job, JobOutcome.FORCED, None, fx, now)
    _finish_cancel_if_done(build, fx, now)
    return fx


def pending_stops(build: Build, agent_id: str, ack_timeout: float, now: float) -> list[StopCommand]:
    """Stops to send (again) to `agent_id`: at-least-once delivery on reconnect."""
    if build.cancel is None:
        return []
    return [
        StopCommand(
            build.build_id,
            job.job_id,
            agent_id,
            build.cancel.reason,
            0.0 if build.cancel.force else build.cancel.grace_period,
            now + ack_timeout,
        )
        for job in build.jobs()
        if job.status is JobStatus.STOPPING and job.agent_id == agent_id
    ]


def agent_lost(build: Build, agent_id: str, running: frozenset[str], now: float) -> Effects:
    """`agent_id` is gone, or came back running only `running`: every job of this
    build it held but no longer runs ends now (FORCED if stopping, else FAILED)."""
    fx = Effects()
    for job in build.jobs():
        if job.agent_id != agent_id or not job.on_agent or job.job_id in running:
            continue
        if job.status is JobStatus.STOPPING:
            _finish_stopped_job(job, JobOutcome.FORCED, None, fx, now)
        else:
            job.outcome = JobOutcome.LOST
            _close_steps(job, StepStatus.FAILED, StepStatus.SKIPPED, fx)
            _move_job(job, JobStatus.FAILED, fx, now)
    if build.status is BuildStatus.CANCELING:
        _finish_cancel_if_done(build, fx, now)
    elif not fx.changes.empty:
        _advance(build, fx, now)
    return fx


# ---- build progress -----------------------------------------------------------------


def _advance(build: Build, fx: Effects, now: float) -> None:
    """After a job ended on its own: open the next stage, or end the build."""
    if build.status is not BuildStatus.RUNNING:
        return
    for position, stage in enumerate(build.stages):
        if not all(job.terminal for job in stage.jobs):
            return  # this stage still runs
        if any(job.status is not JobStatus.SUCCEEDED for job in stage.jobs):
            for later in build.stages[position + 1 :]:
                for job in later.jobs:
                    _close_steps(job, StepStatus.SKIPPED, StepStatus.SKIPPED, fx)
                    _move_job(job, JobStatus.SKIPPED, fx, now)
            _move_build(build, BuildStatus.FAILED, fx, now)
            return
        if position + 1 < len(build.stages):
            following = build.stages[position + 1]
            if all(job.status is JobStatus.PENDING for job in following.jobs):
                fx.ready.extend(following.jobs)
                return
    _move_build(build, BuildStatus.SUCCEEDED, fx, now)


def _finish_cancel_if_done(build: Build, fx: Effects, now: float) -> None:
    if build.status is BuildStatus.CANCELING and all(job.terminal for job in build.jobs()):
        _move_build(build, BuildStatus.CANCELED, fx, now)


# ---- lookups ------------------------------------------------------------------------


def _job_of(build: Build, job_id: str) -> Job:
    job = build.job(job_id)
    if job is None:
        raise PermissionDenied(f"job {job_id} is not part of build {build.build_id}")
    return job


def _step_of(job: Job, index: int) -> Step:
    if not 0 <= index < len(job.steps):
        raise PermissionDenied(f"job {job.job_id} has no step {index}")
    return job.steps[index]
