"""The agent's side of StopJob and StopJobs: each job's stop begins at once.

Every job's stop begins (its first signal goes out, stop_signal.py) before any is
noted and logged: in a batch of 50 the last job's signal waits for 49 signals only,
not for 49 jobs' bookkeeping and log lines as well (~0.1 ms each). A stop for a job
not running here changes nothing; a repeated one may only make the stop stricter
(JobRun.request_stop).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from buildcontrol_proto.v1 import agent_pb2

from buildcontrol_client.job_runner import DEFAULT_CLEANUP_SECONDS, JobRun

log = logging.getLogger("buildcontrol.agent")


def take_stops(jobs: Mapping[str, JobRun], stops: Sequence[agent_pb2.StopJob]) -> None:
    begun = [(stop, *_begin(jobs, stop)) for stop in stops]
    for stop, job, first, grace in begun:
        _note(stop, job, first, grace)


def _begin(
    jobs: Mapping[str, JobRun], stop: agent_pb2.StopJob
) -> tuple[JobRun | None, bool, float]:
    """The job, whether this stop began its stopping (False: already under way), and
    the stop's grace in seconds."""
    grace = stop.grace_period.ToTimedelta().total_seconds()
    job = jobs.get(stop.job_id)
    if job is None:
        return None, False, grace
    # Unset means the server gave no budget of its own: the agent's default applies.
    # An explicit zero is taken at its word: no time for cleanup.
    cleanup = (
        stop.cleanup_timeout.ToTimedelta().total_seconds()
        if stop.HasField("cleanup_timeout")
        else DEFAULT_CLEANUP_SECONDS
    )
    first = job.request_stop(
        grace, by_server=True, skip_cleanup=stop.skip_cleanup, cleanup_seconds=cleanup
    )
    return job, first, grace


def _note(stop: agent_pb2.StopJob, job: JobRun | None, first: bool, grace: float) -> None:
    if job is None:
        log.info("stop of job %s: not running here, nothing to do", stop.job_id)
        return
    # Still before the job's task runs (it wakes after this turn): who and why, for the
    # log's stop line, and the stop's deadline for the log's tail.
    job.log.stop_received(stop)
    if first:
        forced = " (forced: no cleanup)" if stop.skip_cleanup else ""
        reason = f": {stop.reason}" if stop.reason else ""
        log.info("stopping job %s (grace %.1fs)%s%s", stop.job_id, grace, forced, reason)
    elif stop.skip_cleanup:
        log.info("stop of job %s: already stopping, escalated: killing now", stop.job_id)
    else:
        log.info("stop of job %s: already stopping", stop.job_id)
