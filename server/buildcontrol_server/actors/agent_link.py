"""The AgentLink port: how a build actor's commands reach an agent.

An actor never holds an agent's stream. It hands each command (an AssignJob, a
StopJob) to the link and goes on; the link delivers it to the agent's live stream or,
when the agent has none now, keeps it pending. Pending is the build's committed
state, not a queue in memory: when the agent reconnects, its Hello makes every build
that has a job there hand the link again what the agent still lacks (reconciliation.py
and the actor's AgentReconnected), which also holds across a restart of the server.
So a command is never lost silently: one the link could not hand to a stream is
counted (metrics.STOPS_DROPPED, metrics.ASSIGNS_PENDING) and logged, and a stop's
deadline covers an agent that never comes back.

The link also keeps the agents' job slots (hold, release) and what the actors learn
about agents (a job forced without the agent's word, an agent that let a deadline
pass), because the same hub answers both. A second server replica would implement
this port by forwarding to the replica that holds the agent's stream
(docs/architecture.md)."""

from __future__ import annotations

import logging
from typing import Protocol

from buildcontrol_server import metrics
from buildcontrol_server.agents.hub import AgentHub, stop_dropped
from buildcontrol_server.domain.agent_commands import AssignCommand, StopCommand

log = logging.getLogger(__name__)


class AgentLink(Protocol):
    def connected(self, agent_id: str) -> bool:
        """The agent has a live stream now."""
        ...

    def is_latest(self, agent_id: str, session_id: str) -> bool:
        """`session_id` is the newest stream the agent opened (live or not): a Hello
        of an older one speaks for an agent that has since said more."""
        ...

    def assign(self, agent_id: str, command: AssignCommand) -> str | None:
        """Hand an AssignJob to the agent: the id of the session it was queued on, or
        None when it stays pending until the agent reconnects (counted, logged)."""
        ...

    def stop(self, stop: StopCommand) -> str | None:
        """Hand a StopJob to `stop.agent_id`: the session it was queued on, or None
        when it stays pending until the agent reconnects (counted, logged)."""
        ...

    def hold(self, agent_id: str, job_id: str, build_id: str) -> None:
        """Count `job_id` against the agent's capacity until `release`."""
        ...

    def release(self, agent_id: str, job_id: str) -> None: ...

    def keep_unconfirmed(self, agent_id: str, job_id: str) -> None:
        """`job_id` ended FORCED without the agent's word: its slot stays held."""
        ...

    def mark_suspect(self, agent_id: str) -> None:
        """The agent let a stop deadline pass: no new jobs until it answers."""
        ...

    def recovered(self) -> None:
        """Every live build is loaded: agents that hold jobs and have no stream get
        their reconnect window from now."""
        ...


class LocalAgentLink:
    """The agents connected to this process, through its AgentHub."""

    def __init__(self, hub: AgentHub) -> None:
        self._hub = hub

    def connected(self, agent_id: str) -> bool:
        return self._hub.session(agent_id) is not None

    def is_latest(self, agent_id: str, session_id: str) -> bool:
        return self._hub.is_latest(agent_id, session_id)

    def assign(self, agent_id: str, command: AssignCommand) -> str | None:
        session = self._hub.session(agent_id)
        if session is None or session.closed:
            metrics.ASSIGNS_PENDING.inc()
            log.info(
                "assignment of job %s (build %s) pending: agent %s has no live stream",
                command.job_id,
                command.build_id,
                agent_id,
            )
            return None
        session.send(command)
        return session.session_id

    def stop(self, stop: StopCommand) -> str | None:
        session = self._hub.session(stop.agent_id)
        if session is None:
            stop_dropped(stop, "agent_not_connected")
            return None
        if session.closed:
            stop_dropped(stop, "session_closed")
            return None
        session.send(stop)
        return session.session_id

    def hold(self, agent_id: str, job_id: str, build_id: str) -> None:
        self._hub.hold(agent_id, job_id, build_id)

    def release(self, agent_id: str, job_id: str) -> None:
        self._hub.release(agent_id, job_id)

    def keep_unconfirmed(self, agent_id: str, job_id: str) -> None:
        self._hub.keep_unconfirmed(agent_id, job_id)

    def mark_suspect(self, agent_id: str) -> None:
        self._hub.mark_suspect(agent_id)

    def recovered(self) -> None:
        self._hub.start_lost_timers()
