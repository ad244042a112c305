"""The phases of a cancel, measured and logged where each one happens:

    accepted    request → CANCELING committed            (actor)
    stop sent   request → StopJob written to the stream  (rpc/agent_service.py's writer)
    stopped     request → agent's confirmation applied   (actor: the job is CANCELED)
    terminal    request → CANCELED committed             (actor)

plus the stop deadlines that expire in between. Histograms use perf_counter() from the
request's arrival (monotonic, in-process). Log durations use the wall clock from the
cancel's `requested_at` instead, so they stay right for a cancel resumed after a
restart. Each event is one structured line (logs.py) naming the build, who and why;
nothing of a job's environment is ever written. Below INFO (--log-level warning) a
line's fields are not even put together: these run for every cancel and every stop."""

from __future__ import annotations

import collections
import logging
import time
from typing import Any

from buildcontrol_server import metrics
from buildcontrol_server.domain.agent_commands import StopCommand
from buildcontrol_server.domain.model import Build, CancelInfo, Job
from buildcontrol_server.domain.outcome import Outcome
from buildcontrol_server.domain.states import BuildStatus, JobOutcome
from buildcontrol_server.observability.logs import event

log = logging.getLogger("buildcontrol.cancel")

# Outcomes the agent itself reported: only these measure "request → agent confirmed".
CONFIRMED = frozenset({JobOutcome.GRACEFUL, JobOutcome.KILLED})


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)


def _who_why(cancel: CancelInfo) -> dict[str, Any]:
    who_why: dict[str, Any] = {
        "requested_by": cancel.requested_by,
        "reason": cancel.reason,
        "force": cancel.force,
    }
    if cancel.escalations:
        last = cancel.escalations[-1]
        who_why["escalated_by"] = last.requested_by
        who_why["escalation_reason"] = last.reason
    return who_why


def cancel_accepted(build: Build, fx: Outcome, received_at: float) -> None:
    """CANCELING (or CANCELED, with nothing on an agent) is committed for a Cancel that
    arrived at `received_at` (perf_counter): log the event. Only observes (the actor
    stamps the stops with `received_at` itself, for `stop_written` to measure)."""
    assert build.cancel is not None
    if not log.isEnabledFor(logging.INFO):
        return
    event(
        log,
        logging.INFO,
        "cancel accepted",
        event="cancel_accepted",
        build_id=build.build_id,
        pipeline=build.pipeline,
        status=build.status.value,
        escalated=fx.escalated,
        **_who_why(build.cancel),
        grace_period_s=build.cancel.grace_period,
        stops=len(fx.stops),
        accepted_ms=_ms(time.perf_counter() - received_at),
    )


def stop_written(command: object) -> None:
    """`command` was just written to an agent's stream: if it is a stop, measure its
    delivery (when the actor stamped it) and log it."""
    if not isinstance(command, StopCommand):
        return
    elapsed = None if command.requested_at is None else time.perf_counter() - command.requested_at
    if elapsed is not None:
        metrics.CANCEL_STOP_DELIVERED_SECONDS.observe(elapsed)
    if not log.isEnabledFor(logging.INFO):
        return
    fields: dict[str, Any] = {
        "event": "stop_sent",
        "build_id": command.build_id,
        "job_id": command.job_id,
        "agent_id": command.agent_id,
        "reason": command.reason,
        "grace_period_s": command.grace_period,
        "skip_cleanup": command.skip_cleanup,
    }
    if elapsed is not None:
        fields["since_request_ms"] = _ms(elapsed)
    event(log, logging.INFO, "stop sent", **fields)


def job_ended(build: Build, job: Job, received_at: float | None) -> None:
    """`job` became terminal with an outcome while its build was being cancelled:
    measure the agent's confirmation (GRACEFUL, KILLED) from the request at
    `received_at` (None: the request came before a restart, not measurable) and log."""
    cancel = build.cancel
    if cancel is None or job.outcome is None:
        return
    if job.outcome in CONFIRMED and received_at is not None:
        metrics.CANCEL_JOB_STOPPED_SECONDS.observe(time.perf_counter() - received_at)
    if not log.isEnabledFor(logging.INFO):
        return
    since = None if job.finished_at is None else _ms(job.finished_at - cancel.requested_at)
    event(
        log,
        logging.INFO,
        "job stopped",
        event="job_stopped",
        build_id=build.build_id,
        job_id=job.job_id,
        job=job.name,
        agent_id=job.agent_id,
        outcome=job.outcome.value,
        exit_code=job.exit_code,
        **_who_why(cancel),
        since_request_ms=since,
    )


def deadlines_expired(build: Build, jobs: list[Job], now: float) -> None:
    """Agents did not confirm these stops in time: the jobs are about to be FORCED."""
    cancel = build.cancel
    for job in jobs:
        event(
            log,
            logging.WARNING,
            "stop deadline expired",
            event="stop_deadline_expired",
            build_id=build.build_id,
            job_id=job.job_id,
            job=job.name,
            agent_id=job.agent_id,
            **(_who_why(cancel) if cancel is not None else {}),
            since_request_ms=None if cancel is None else _ms(now - cancel.requested_at),
        )


def cancel_finished(build: Build) -> None:
    """CANCELED is committed: the cancel's last line, with how every job ended."""
    cancel = build.cancel
    if build.status is not BuildStatus.CANCELED or cancel is None:
        return
    if not log.isEnabledFor(logging.INFO):
        return
    outcomes = collections.Counter(j.outcome.value for j in build.jobs() if j.outcome)
    duration = None if build.finished_at is None else _ms(build.finished_at - cancel.requested_at)
    event(
        log,
        logging.INFO,
        "cancel finished",
        event="cancel_finished",
        build_id=build.build_id,
        pipeline=build.pipeline,
        status=build.status.value,
        **_who_why(cancel),
        duration_ms=duration,
        outcomes=dict(outcomes),
    )
