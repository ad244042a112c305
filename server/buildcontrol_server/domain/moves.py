"""Moves of single entities: each checks its state table, marks the entity changed
in the event's change set, and notes what the move implies (a finished job frees its
agent's slot)."""

from __future__ import annotations

from buildcontrol_server.domain.model import Build, Job, Step
from buildcontrol_server.domain.outcome import Outcome
from buildcontrol_server.domain.states import BuildStatus, JobStatus, StepStatus, transition


def move_build(build: Build, target: BuildStatus, fx: Outcome, now: float) -> None:
    build.status = transition(f"build {build.build_id}", build.status, target)
    if build.terminal:
        build.finished_at = now
    fx.changes.mark(build)


def move_job(job: Job, target: JobStatus, fx: Outcome, now: float) -> None:
    job.status = transition(f"job {job.job_id}", job.status, target)
    if target is JobStatus.ASSIGNED:
        job.started_at = now
    if job.terminal:
        job.finished_at = now
        fx.finished_jobs.append(job)
        if job.agent_id is not None:
            fx.released.append((job.agent_id, job.job_id))
    fx.changes.mark(job)


def move_step(step: Step, target: StepStatus, fx: Outcome) -> None:
    step.status = transition(f"step {step.job_id}#{step.index}", step.status, target)
    fx.changes.mark(step)


def close_steps(job: Job, running_to: StepStatus, pending_to: StepStatus, fx: Outcome) -> None:
    """End every unfinished step of a job that is ending."""
    for step in job.steps:
        if step.status is StepStatus.RUNNING and running_to is StepStatus.CANCELED:
            move_step(step, StepStatus.STOPPING, fx)
        if step.status in (StepStatus.RUNNING, StepStatus.STOPPING):
            move_step(step, running_to, fx)
        elif step.status is StepStatus.PENDING:
            move_step(step, pending_to, fx)
