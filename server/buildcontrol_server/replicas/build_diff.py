"""What changed between two committed copies of a build, as the events a WatchBuild
or a Cancel stream carries: how a replica that does not own a build follows it
(control.py)."""

from __future__ import annotations

from collections.abc import Iterator

from buildcontrol_server.domain.events import (
    BuildChangedEvent,
    JobChangedEvent,
    JobResult,
    StepChangedEvent,
    WatchChange,
    job_result,
)
from buildcontrol_server.domain.model import Build
from buildcontrol_server.domain.states import JobOutcome


def changes_between(before: Build, after: Build) -> Iterator[WatchChange]:
    """Steps first, then jobs, then the build: a terminal build comes last, as from
    the owner's actor. Intermediate moves between the two reads are not seen."""
    jobs_before = {job.job_id: job for job in before.jobs()}
    for job in after.jobs():
        old = jobs_before.get(job.job_id)
        for step in job.steps:
            old_step = old.steps[step.index] if old is not None else None
            if old_step is None or (old_step.status, old_step.exit_code) != (
                step.status,
                step.exit_code,
            ):
                yield StepChangedEvent(
                    after.build_id, job.job_id, step.index, step.status, step.exit_code
                )
    for job in after.jobs():
        old = jobs_before.get(job.job_id)
        if old is None or (old.status, old.outcome, old.agent_id) != (
            job.status,
            job.outcome,
            job.agent_id,
        ):
            yield JobChangedEvent(after.build_id, job.job_id, job.status, job.outcome, job.agent_id)
    if (before.status, before.cancel) != (after.status, after.cancel):
        yield BuildChangedEvent(after.build_id, after.status, after.cancel)


# How a job a cancel stopped ended (NEVER_STARTED ones are cancelled with the build's
# CANCELING write, before a stream's first event).
STOPPED_BY_CANCEL = frozenset({JobOutcome.GRACEFUL, JobOutcome.KILLED, JobOutcome.FORCED})


def ended_before_accepted(build: Build) -> set[str]:
    """The jobs of a build just accepted for cancelling that a Cancel stream does not
    report: terminal already, and not stopped by the cancel."""
    return {
        job.job_id for job in build.jobs() if job.terminal and job.outcome not in STOPPED_BY_CANCEL
    }


def newly_ended(ended: set[str], build: Build) -> Iterator[JobResult]:
    """The jobs terminal in `build` and not in `ended` (which they join): the per-job
    events of a Cancel stream (the owner's actor sends one as each job ends)."""
    for job in build.jobs():
        if job.terminal and job.job_id not in ended:
            ended.add(job.job_id)
            yield job_result(job)
