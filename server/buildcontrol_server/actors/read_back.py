"""What a build read back from the store needs sent to its agents.

A commit can land although its caller saw it fail: on PostgreSQL the COMMIT reached
the server and its reply was lost with the connection. The build read back after the
failure (or by the actor's restart) then holds a change whose StopJobs no turn sent:
a build CANCELING in the store whose agents were never told, whose stop deadline
would end it FORCED while its processes ran on. So after every read-back (its
deadlines are armed by rearm.py) each STOPPING job's stop goes to its agent, and each
ASSIGNED job's AssignJob, unless the agent's current stream already had it; to an
agent another replica holds, both go through the agent outbox. Both are
at-least-once: an agent ignores a stop of a job it does not run or already stops
the same way, and an assignment of a job it already took."""

from __future__ import annotations

from buildcontrol_server import metrics
from buildcontrol_server.actors.agent_link import AgentLink
from buildcontrol_server.domain import cancellation
from buildcontrol_server.domain.agent_commands import StopCommand, assignment_of
from buildcontrol_server.domain.cancellation import StopTimes
from buildcontrol_server.domain.model import Build
from buildcontrol_server.domain.states import JobStatus


def send_unsent(
    build: Build,
    link: AgentLink,
    times: StopTimes,
    now: float,
    stop_sent: dict[str, str],
    assigned_on: dict[str, str],
) -> None:
    """`now`: the wall clock; `stop_sent`, `assigned_on`: job_id → the session its
    command went out on (updated with what is sent now)."""
    resend_stops(link, cancellation.pending_stops(build, None, times, now), stop_sent)
    for job in build.jobs():
        agent_id = job.agent_id
        if agent_id is None:
            continue
        if job.status is JobStatus.ASSIGNED:
            if _had_it(link, agent_id, assigned_on.get(job.job_id)):
                continue
            # To an agent held by another replica the link writes an outbox row: the
            # commit that landed unseen wrote none (its effects never ran). One that
            # did is sent once more, which the agent ignores for a job it runs. An
            # agent away gets it on its Hello (pending, as the link says).
            sent_on = link.assign(agent_id, assignment_of(job))
            if sent_on is not None:
                assigned_on[job.job_id] = sent_on


def resend_stops(link: AgentLink, stops: list[StopCommand], stop_sent: dict[str, str]) -> None:
    """Send each stop its agent's current stream has not had (`stop_sent`: job_id →
    the session it went out on, updated); a stop that went out counts as re-sent."""
    for stop in stops:
        if _had_it(link, stop.agent_id, stop_sent.get(stop.job_id)):
            continue
        sent_on = link.stop(stop)
        if sent_on is not None:
            stop_sent[stop.job_id] = sent_on
            metrics.STOPS_RESENT.inc()


def _had_it(link: AgentLink, agent_id: str, session_id: str | None) -> bool:
    return session_id is not None and link.is_latest(agent_id, session_id)
