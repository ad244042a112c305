"""What each event does to a build: pure functions over the entities of model.py.

Each function applies one event to a build, records every entity it changed in the
returned `Outcome.changes`, and lists what the caller (the build's actor) must do
outside the domain: stops to push to agents, jobs that became ready to schedule,
agent slots that were freed. The caller persists `changes` in one transaction and
only then acts on the rest; if the commit fails it reloads the build. Cancels are in
cancellation.py.
"""

from __future__ import annotations

from buildcontrol_server.domain.cancellation import (
    StopTimes,
    cleanup_runs,
    finish_cancel_if_done,
    finish_stopped_job,
    release_cleanup_jobs,
    stop_command,
)
from buildcontrol_server.domain.errors import FailedPrecondition, PermissionDenied, Reason
from buildcontrol_server.domain.events import (
    AgentReport,
    JobAcceptedReport,
    JobFinishedReport,
    JobStoppedReport,
    StepFinishedReport,
    StepStartedReport,
)
from buildcontrol_server.domain.model import Build, Job, Step
from buildcontrol_server.domain.moves import close_steps, move_build, move_job, move_step
from buildcontrol_server.domain.outcome import Outcome
from buildcontrol_server.domain.states import BuildStatus, JobOutcome, JobStatus, StepStatus

# ---- scheduling ---------------------------------------------------------------------


def ready_jobs(build: Build) -> list[Job]:
    """PENDING jobs that may go to an agent now: those of the first unfinished stage,
    or, while a cancel runs, the cleanup jobs once everything else stopped."""
    if build.status is BuildStatus.CANCELING:
        fx = Outcome()
        release_cleanup_jobs(build, fx)
        return fx.ready
    if build.status not in (BuildStatus.QUEUED, BuildStatus.RUNNING):
        return []
    for stage in build.stages:
        if all(job.terminal for job in stage.jobs):
            continue
        return [job for job in stage.jobs if job.status is JobStatus.PENDING]
    return []


def assign_job(build: Build, job_id: str, agent_id: str, now: float) -> Outcome:
    """The scheduler picked `agent_id` for `job_id`. Refused unless the job is ready."""
    fx = Outcome()
    job = _job_of(build, job_id)
    if job not in ready_jobs(build):
        raise FailedPrecondition(f"job {job_id} is {job.status.value}, not ready to assign")
    if build.status is BuildStatus.QUEUED:
        move_build(build, BuildStatus.RUNNING, fx, now)
    job.agent_id = agent_id
    move_job(job, JobStatus.ASSIGNED, fx, now)
    return fx


# ---- agent reports ------------------------------------------------------------------


def _reported_job(build: Build, job_id: str, agent_id: str) -> Job:
    job = _job_of(build, job_id)
    if job.agent_id != agent_id:
        raise PermissionDenied(
            f"job {job_id} is not assigned to agent {agent_id}", reason=Reason.NOT_YOUR_JOB
        )
    return job


def job_accepted(build: Build, job_id: str, agent_id: str, now: float) -> Outcome:
    fx = Outcome()
    job = _reported_job(build, job_id, agent_id)
    if job.status is JobStatus.ASSIGNED:
        move_job(job, JobStatus.RUNNING, fx, now)
    else:
        fx.duplicate = True  # already running, stopping or over: nothing to do
    return fx


def step_started(build: Build, job_id: str, agent_id: str, index: int, now: float) -> Outcome:
    fx = Outcome()
    job = _reported_job(build, job_id, agent_id)
    step = _step_of(job, index)
    if job.status is JobStatus.ASSIGNED:
        move_job(job, JobStatus.RUNNING, fx, now)  # JobAccepted was lost: implied
    stopping_cleanup = job.status is JobStatus.STOPPING and step.run_on_cancel
    if step.status is StepStatus.PENDING and (job.status is JobStatus.RUNNING or stopping_cleanup):
        move_step(step, StepStatus.RUNNING, fx)
    else:
        # Already known, or a stop raced the start: the stop decides.
        fx.duplicate = True
    return fx


def step_finished(
    build: Build, job_id: str, agent_id: str, index: int, exit_code: int, now: float
) -> Outcome:
    fx = Outcome()
    job = _reported_job(build, job_id, agent_id)
    step = _step_of(job, index)
    if step.status is StepStatus.RUNNING:
        step.exit_code = exit_code
        move_step(step, StepStatus.SUCCEEDED if exit_code == 0 else StepStatus.FAILED, fx)
    else:
        # Already recorded, or the stop was applied first (then the stop decides).
        fx.duplicate = True
    return fx


def job_finished(
    build: Build, job_id: str, agent_id: str, succeeded: bool, exit_code: int, now: float
) -> Outcome:
    """The agent says the job ended by itself."""
    fx = Outcome()
    job = _reported_job(build, job_id, agent_id)
    if job.status is JobStatus.STOPPING:
        # The cancel was applied first: the actor's order decides, so it is CANCELED.
        return job_stopped(build, job_id, agent_id, JobOutcome.GRACEFUL, exit_code, now)
    if job.status not in (JobStatus.RUNNING, JobStatus.ASSIGNED):
        fx.duplicate = True
        return fx
    if job.status is JobStatus.ASSIGNED:
        move_job(job, JobStatus.RUNNING, fx, now)
    job.exit_code = exit_code
    # A StepFinished lost with a dropped stream: the job's result settles the step.
    running_to = StepStatus.SUCCEEDED if succeeded else StepStatus.FAILED
    close_steps(job, running_to=running_to, pending_to=StepStatus.SKIPPED, fx=fx)
    move_job(job, JobStatus.SUCCEEDED if succeeded else JobStatus.FAILED, fx, now)
    _after_job_ended(build, fx, now)
    return fx


def job_stopped(
    build: Build,
    job_id: str,
    agent_id: str,
    outcome: JobOutcome,
    exit_code: int | None,
    now: float,
) -> Outcome:
    """The agent confirms a stop. A report for a job already over is a repeat."""
    fx = Outcome()
    job = _reported_job(build, job_id, agent_id)
    if job.status in (JobStatus.ASSIGNED, JobStatus.RUNNING):
        # Stopped by the agent itself (e.g. an agent restarted where it had died killed
        # what the job left), not by a cancel: the job did not finish its work, so it
        # failed, and its outcome says how it ended (not LOST: nothing runs on).
        job.exit_code = exit_code
        job.outcome = outcome
        close_steps(job, StepStatus.FAILED, StepStatus.SKIPPED, fx)
        move_job(job, JobStatus.FAILED, fx, now)
        _after_job_ended(build, fx, now)
        return fx
    if job.status is not JobStatus.STOPPING:
        fx.duplicate = True
        return fx
    finish_stopped_job(job, outcome, exit_code, fx, now)
    _after_job_ended(build, fx, now)
    return fx


def agent_lost(build: Build, agent_id: str, running: frozenset[str], now: float) -> Outcome:
    """`agent_id` is gone, or came back running only `running`: every job of this
    build it held but no longer runs ends now (FORCED if stopping, else FAILED/LOST)."""
    fx = Outcome()
    for job in build.jobs():
        if job.agent_id != agent_id or not job.on_agent or job.job_id in running:
            continue
        if job.status is JobStatus.STOPPING:
            finish_stopped_job(job, JobOutcome.FORCED, None, fx, now)
        else:
            job.outcome = JobOutcome.LOST
            close_steps(job, StepStatus.FAILED, StepStatus.SKIPPED, fx)
            move_job(job, JobStatus.FAILED, fx, now)
    if not fx.changes.empty:
        _after_job_ended(build, fx, now)
    return fx


def apply_report(
    build: Build, agent_id: str, report: AgentReport, now: float, times: StopTimes
) -> Outcome:
    """Apply one report of an agent (the dispatch of the functions above). A report
    that a STOPPING job is alive gets a fresh stop (`stop_again_if_alive`)."""
    fx = _dispatch_report(build, agent_id, report, now)
    stop_again_if_alive(build, report, fx, times, now)
    return fx


def _dispatch_report(build: Build, agent_id: str, report: AgentReport, now: float) -> Outcome:
    match report:
        case JobAcceptedReport(job_id=job_id):
            return job_accepted(build, job_id, agent_id, now)
        case StepStartedReport(job_id=job_id, step_index=index):
            return step_started(build, job_id, agent_id, index, now)
        case StepFinishedReport(job_id=job_id, step_index=index, exit_code=code):
            return step_finished(build, job_id, agent_id, index, code, now)
        case JobFinishedReport(job_id=job_id, succeeded=ok, exit_code=code):
            return job_finished(build, job_id, agent_id, ok, code, now)
        case JobStoppedReport(job_id=job_id, outcome=outcome, exit_code=code):
            return job_stopped(build, job_id, agent_id, outcome, code, now)


def stop_again_if_alive(
    build: Build, report: AgentReport, fx: Outcome, times: StopTimes, now: float
) -> None:
    """An agent may ignore a StopJob for a job it does not run yet (the protocol lets
    it), then accept the job late and start it. A JobAccepted, or a StepStarted of a
    step that is not a cleanup step allowed to run, for a STOPPING job means exactly
    that: the job runs although it must not, so its stop goes out again at once, with
    a budget counted from now (the agent could not act on it before)."""
    job = build.job(report.job_id)
    if job is None or job.status is not JobStatus.STOPPING or job.agent_id is None:
        return
    if isinstance(report, StepStartedReport):
        step = job.steps[report.step_index]
        if step.run_on_cancel and cleanup_runs(build):
            return  # a cleanup step starting is what a stop asks for
    elif not isinstance(report, JobAcceptedReport):
        return
    fx.stops.append(stop_command(build, job, times, now))


# ---- build progress -----------------------------------------------------------------


def _after_job_ended(build: Build, fx: Outcome, now: float) -> None:
    if build.status is BuildStatus.CANCELING:
        release_cleanup_jobs(build, fx)
        finish_cancel_if_done(build, fx, now)
    else:
        _advance(build, fx, now)


def _advance(build: Build, fx: Outcome, now: float) -> None:
    """After a job ended on its own: open the next stage, or end the build."""
    if build.status is not BuildStatus.RUNNING:
        return
    for position, stage in enumerate(build.stages):
        if not all(job.terminal for job in stage.jobs):
            return  # this stage still runs
        if any(job.status is not JobStatus.SUCCEEDED for job in stage.jobs):
            for later in build.stages[position + 1 :]:
                for job in later.jobs:
                    close_steps(job, StepStatus.SKIPPED, StepStatus.SKIPPED, fx)
                    move_job(job, JobStatus.SKIPPED, fx, now)
            move_build(build, BuildStatus.FAILED, fx, now)
            return
        if position + 1 < len(build.stages):
            following = build.stages[position + 1]
            if all(job.status is JobStatus.PENDING for job in following.jobs):
                fx.ready.extend(following.jobs)
                return
    move_build(build, BuildStatus.SUCCEEDED, fx, now)


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
