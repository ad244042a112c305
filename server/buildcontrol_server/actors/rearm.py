"""Arming a build's timers from its stored state: when the server recovers it on start,
and when its actor restarts after its loop failed.

What counts from a stored (wall clock) time, so the time the server was down counts
too: a job's timeout from the job's `started_at`, a cleanup job's cleanup timeout
from its `started_at`, the queue timeout from the build's `created_at`. A stop deadline
that is not armed yet gets its full budget from now: after a server restart the stop
is sent again only when the agent reconnects, and the agent needs that budget to
confirm it (docs/cancel-semantics.md). Wall times are turned into delays once, here;
from then on the timers run on the monotonic clock."""

from __future__ import annotations

from buildcontrol_server.actors import commands as cmd
from buildcontrol_server.actors.timers import BuildTimers
from buildcontrol_server.config import Settings
from buildcontrol_server.domain import cancellation
from buildcontrol_server.domain.cancellation import StopTimes
from buildcontrol_server.domain.model import Build, Job
from buildcontrol_server.domain.states import BuildStatus, JobStatus


def job_timeout(job: Job, settings: Settings) -> float:
    return job.timeout or settings.job_timeout


def left_of(started_at: float | None, budget: float, now: float) -> float:
    """Seconds left of `budget` counted from `started_at` (from now when unknown)."""
    if started_at is None:
        return budget
    return max(0.0, started_at + budget - now)


def arm_from_store(timers: BuildTimers, build: Build, settings: Settings, now: float) -> None:
    """Arm every timer `build` needs in its stored state; `now` is the wall clock."""
    times = settings.stop_times
    if build.status is BuildStatus.QUEUED:
        timers.queue_timeout(max(0.0, build.created_at + settings.queue_timeout - now))
    arm_stop_deadlines(timers, build, times, now)
    for job in build.jobs():
        if job.status is JobStatus.STOPPING and job.agent_id is not None:
            continue  # armed above
        if job.on_agent and build.status is BuildStatus.RUNNING:
            left = left_of(job.started_at, job_timeout(job, settings), now)
            timers.job_timer(job.job_id, left, cmd.JobTimedOut(job_id=job.job_id))
        elif job.on_agent and build.status is BuildStatus.CANCELING and job.run_on_cancel:
            left = left_of(job.started_at, settings.cleanup_timeout, now)
            timers.job_timer(job.job_id, left, cmd.CleanupTimedOut(job_id=job.job_id))


def arm_stop_deadlines(timers: BuildTimers, build: Build, times: StopTimes, now: float) -> None:
    """Arm the stop deadline of every STOPPING job on an agent that has none (also
    after a failed commit that may have landed: read_back.py)."""
    armed = timers.stop_armed()
    for job in build.jobs():
        stopping = job.status is JobStatus.STOPPING and job.agent_id is not None
        if stopping and job.job_id not in armed:
            stop = cancellation.stop_command(build, job, times, now)
            timers.stop_deadline(job.job_id, stop.deadline - now)
