"""What a cancel does to a build: the CANCELING write, stops for every job on an
agent, cleanup (run_on_cancel) steps and jobs, escalation by a forced cancel,
deadlines, and the end of the cancel. Pure functions, like lifecycle.py."""

from __future__ import annotations

from dataclasses import dataclass

from buildcontrol_server.domain import notifications
from buildcontrol_server.domain.agent_commands import StopCommand
from buildcontrol_server.domain.deliveries import Endpoint, OutboxEntry
from buildcontrol_server.domain.errors import build_already_finished
from buildcontrol_server.domain.model import (
    Build,
    CancelEscalation,
    CancelInfo,
    CancelRecord,
    ChangeSet,
    Job,
)
from buildcontrol_server.domain.moves import close_steps, move_build, move_job, move_step
from buildcontrol_server.domain.outcome import Outcome
from buildcontrol_server.domain.states import BuildStatus, JobOutcome, JobStatus, StepStatus


@dataclass(frozen=True)
class StopTimes:
    """The time budget of a stop (seconds): see docs/cancel-semantics.md."""

    ack_timeout: float  # after the grace (and cleanup), to confirm the stop
    cleanup_timeout: float  # for the cleanup steps, and for each cleanup job


def cleanup_runs(build: Build) -> bool:
    """Cleanup steps and jobs run after a stop unless the cancel is forced."""
    return build.cancel is not None and not build.cancel.forced


def cancel(build: Build, info: CancelInfo, times: StopTimes, now: float) -> Outcome:
    """Apply a cancel. A second cancel joins the first (`duplicate`, no change) unless
    it is forced and the first was not: then it escalates. A finished build refuses."""
    if build.status is BuildStatus.CANCELING:
        assert build.cancel is not None
        if info.force and not build.cancel.forced:
            return escalate(build, info, times, now)
        return Outcome(duplicate=True)
    if build.status is BuildStatus.CANCELED:
        return Outcome(duplicate=True)
    if build.status in (BuildStatus.SUCCEEDED, BuildStatus.FAILED):
        raise build_already_finished(build.build_id, build.status.value)
    fx = Outcome(cancel_accepted=True)
    started = build.status is BuildStatus.RUNNING
    build.cancel = info
    # Cleanup needs something to clean up after: a build that never started has none.
    keep_cleanup = started and not info.force
    to_stop = [j for j in build.jobs() if j.on_agent and not (keep_cleanup and j.run_on_cancel)]
    waiting_cleanup = [
        j for j in build.jobs() if keep_cleanup and j.run_on_cancel and not j.terminal
    ]
    # With nothing on an agent and no cleanup to run: straight to CANCELED.
    busy = bool(to_stop or waiting_cleanup)
    if busy or started:
        # A started build has no direct move to CANCELED (its next stage may wait for
        # an agent with nothing running): through CANCELING, in the same commit.
        move_build(build, BuildStatus.CANCELING, fx, now)
    if not busy:
        move_build(build, BuildStatus.CANCELED, fx, now)
    for job in build.jobs():
        if job.status is JobStatus.PENDING and not (keep_cleanup and job.run_on_cancel):
            _never_started(job, fx, now)
    for job in to_stop:
        _stop(build, job, fx, times, now)
    release_cleanup_jobs(build, fx)
    return fx


def escalate(build: Build, info: CancelInfo, times: StopTimes, now: float) -> Outcome:
    """A forced cancel on a CANCELING build: SIGKILL at once, skip every cleanup.
    The first cancel stays as it was; `info` is added as an escalation of it."""
    assert build.cancel is not None
    fx = Outcome(escalated=True)
    escalation = CancelEscalation(info.requested_by, info.reason, info.requested_at, force=True)
    build.cancel = build.cancel.escalated(escalation)
    fx.changes.mark(build)
    for job in build.jobs():
        if job.status is JobStatus.PENDING:
            _never_started(job, fx, now)
        elif job.on_agent:
            _stop(build, job, fx, times, now)
    finish_cancel_if_done(build, fx, now)
    return fx


def _never_started(job: Job, fx: Outcome, now: float) -> None:
    job.outcome = JobOutcome.NEVER_STARTED
    close_steps(job, StepStatus.CANCELED, StepStatus.CANCELED, fx)
    move_job(job, JobStatus.CANCELED, fx, now)


def _stop(build: Build, job: Job, fx: Outcome, times: StopTimes, now: float) -> None:
    """Move a job on an agent to STOPPING (again, when escalating) and queue its stop."""
    assert build.cancel is not None and job.agent_id is not None
    cleanup = cleanup_runs(build)
    for step in job.steps:
        if step.status is StepStatus.RUNNING:
            move_step(step, StepStatus.STOPPING, fx)
        elif step.status is StepStatus.PENDING and not (cleanup and step.run_on_cancel):
            move_step(step, StepStatus.CANCELED, fx)
    if job.status is not JobStatus.STOPPING:
        move_job(job, JobStatus.STOPPING, fx, now)
    fx.stops.append(stop_command(build, job, times, now))


def stop_command(build: Build, job: Job, times: StopTimes, now: float) -> StopCommand:
    assert build.cancel is not None and job.agent_id is not None
    cleanup = cleanup_runs(build)
    grace = build.cancel.grace_period if cleanup else 0.0
    has_cleanup = cleanup and any(
        s.run_on_cancel and s.status is StepStatus.PENDING for s in job.steps
    )
    budget = grace + (times.cleanup_timeout if has_cleanup else 0.0) + times.ack_timeout
    return StopCommand(
        build_id=build.build_id,
        job_id=job.job_id,
        agent_id=job.agent_id,
        reason=build.cancel.reason,
        grace_period=grace,
        deadline=now + budget,
        skip_cleanup=not cleanup,
        cleanup_timeout=times.cleanup_timeout if cleanup else 0.0,
        requested_by=build.cancel.requested_by,
    )


def release_cleanup_jobs(build: Build, fx: Outcome) -> None:
    """Once every other job has stopped, the cleanup jobs may run."""
    if build.status is not BuildStatus.CANCELING or not cleanup_runs(build):
        return
    if any(not job.terminal for job in build.jobs() if not job.run_on_cancel):
        return
    fx.ready += [j for j in build.jobs() if j.run_on_cancel and j.status is JobStatus.PENDING]


def stop_overdue(build: Build, job_ids: set[str], now: float) -> Outcome:
    """Agents that did not confirm these stops by their deadline: finalize as FORCED.
    Their slots are not freed (`fx.unconfirmed`): the agent may still run the job."""
    fx = Outcome()
    for job in build.jobs():
        if job.job_id in job_ids and job.status is JobStatus.STOPPING:
            finish_stopped_job(job, JobOutcome.FORCED, None, fx, now)
            if job.agent_id is not None:
                slot = (job.agent_id, job.job_id)
                fx.released.remove(slot)
                fx.unconfirmed.append(slot)
    if fx.changes.empty:
        fx.duplicate = True
        return fx
    release_cleanup_jobs(build, fx)
    finish_cancel_if_done(build, fx, now)
    return fx


def cleanup_overdue(build: Build, job_id: str, times: StopTimes, now: float) -> Outcome:
    """A cleanup job ran past the cleanup timeout: stop it like a forced one."""
    fx = Outcome()
    job = build.job(job_id)
    if build.status is not BuildStatus.CANCELING or job is None or not job.on_agent:
        fx.duplicate = True
        return fx
    assert build.cancel is not None
    for step in job.steps:
        if step.status is StepStatus.RUNNING:
            move_step(step, StepStatus.STOPPING, fx)
        elif step.status is StepStatus.PENDING:
            move_step(step, StepStatus.CANCELED, fx)
    if job.status is not JobStatus.STOPPING:
        move_job(job, JobStatus.STOPPING, fx, now)
    assert job.agent_id is not None
    fx.stops.append(
        StopCommand(
            build.build_id,
            job.job_id,
            job.agent_id,
            "cleanup timed out",
            0.0,
            now + times.ack_timeout,
            skip_cleanup=True,
        )
    )
    return fx


def pending_stops(
    build: Build, agent_id: str | None, times: StopTimes, now: float
) -> list[StopCommand]:
    """Stops to send (again) to `agent_id` (None: to every agent): at-least-once
    delivery on a reconnect or after a read-back."""
    if build.cancel is None:
        return []
    return [
        stop_command(build, job, times, now)
        for job in build.jobs()
        if job.status is JobStatus.STOPPING
        and job.agent_id is not None
        and agent_id in (None, job.agent_id)
    ]


def finish_stopped_job(
    job: Job, outcome: JobOutcome, exit_code: int | None, fx: Outcome, now: float
) -> None:
    job.outcome = outcome
    job.exit_code = exit_code
    close_steps(job, running_to=StepStatus.CANCELED, pending_to=StepStatus.CANCELED, fx=fx)
    move_job(job, JobStatus.CANCELED, fx, now)


def finish_cancel_if_done(build: Build, fx: Outcome, now: float) -> None:
    if build.status is BuildStatus.CANCELING and all(job.terminal for job in build.jobs()):
        move_build(build, BuildStatus.CANCELED, fx, now)


def record_audit(build: Build, changes: ChangeSet) -> None:
    """If `changes` ends the build's cancel, add its audit record to them: the record
    commits with the CANCELED write or not at all, in the same transaction (no write
    of its own, and no window in which a crash leaves a CANCELED build without one).
    CANCELED is terminal: a change set that touches a CANCELED build is the one that
    made it so."""
    if build.status is not BuildStatus.CANCELED or build.build_id not in changes.builds:
        return
    if any(known.build_id == build.build_id for known in changes.audit):
        return
    changes.audit.append(CancelRecord.of(build))


def queue_notification(build: Build, changes: ChangeSet, endpoints: tuple[Endpoint, ...]) -> None:
    """If `changes` ends the build's cancel, add its build.canceled notification for
    `endpoints` to them, so the outbox rows commit with the CANCELED write or not at
    all. CANCELED is terminal: a change set that touches a CANCELED build is the one
    that made it so. No endpoints, no outbox row: nobody is waiting for it. (The
    actors use notifications.queue_notifications, which covers every event.)"""
    if not endpoints:
        return
    if build.status is not BuildStatus.CANCELED or build.build_id not in changes.builds:
        return
    entry = OutboxEntry(notifications.canceled(CancelRecord.of(build)), endpoints)
    notifications.add_entry(changes, entry)
