"""The hub of live agent sessions. Only rpc/ knows a session is a gRPC stream: here a
session is an outbox of commands and the slots it has free.

The hub also remembers, per agent id, which jobs are on that agent (`held`), across
reconnects and server restarts (rebuilt from the store on recovery), so it can tell
the builds when an agent comes back without a job or never comes back."""

from __future__ import annotations

import asyncio
import itertools
import logging
from dataclasses import dataclass, field

from buildcontrol_server import metrics
from buildcontrol_server.agents.events import SLOT_FREE, AgentEvents, AgentLost
from buildcontrol_server.agents.outbox import Outbox
from buildcontrol_server.domain.agent_commands import (
    AgentCommand,
    DrainCommand,
    ReportsCommittedCommand,
    StopCommand,
)
from buildcontrol_server.domain.errors import agent_already_connected

log = logging.getLogger(__name__)

Outgoing = AgentCommand

_session_numbers = itertools.count(1)


@dataclass(eq=False)
class AgentSession:
    agent_id: str
    labels: dict[str, str]
    capacity: int
    # The agent's software version, as its Hello says.
    version: str = ""
    # The agent process's own id, as its Hello says ("": an older agent).
    instance_id: str = ""
    # The agent takes several stops in one message (StopJobs), as its Hello says.
    stop_batches: bool = False
    session_id: str = field(default_factory=lambda: f"s{next(_session_numbers)}")
    outbox: Outbox[Outgoing | None] = field(default_factory=Outbox)
    closed: bool = False
    # The event that a newer session of the agent replaced this one (see `replaced`);
    # made on first use, so an idle session costs no future.
    _replaced: asyncio.Future[None] | None = field(default=None, repr=False)
    _was_replaced: bool = field(default=False, repr=False)
    # Report ids committed in this loop pass, sent as one ReportsCommitted at its end
    # (a batch of results committed together costs one message, not one each).
    _acknowledged: list[str] = field(default_factory=list)

    def send(self, command: Outgoing) -> None:
        """Queue a command for the stream's writer; never blocks the caller. On a
        closed session nothing is sent: a stop dropped so is counted and logged (the
        agent gets it again when it reconnects; its deadline covers an agent that
        never does)."""
        if not self.closed:
            self.outbox.put_nowait(command)
        elif isinstance(command, StopCommand):
            stop_dropped(command, "session_closed")
        else:
            log.debug("agent %s: %s not sent, session closed", self.agent_id, command)

    def acknowledge(self, report_id: str) -> None:
        """Tell the agent, soon, that the result `report_id` needs no re-sending. On a
        closed session this is dropped harmlessly: the agent sends the result again
        in its next Hello and the server acknowledges it there."""
        if self.closed:
            return
        if not self._acknowledged:
            asyncio.get_running_loop().call_soon(self._send_acknowledgements)
        self._acknowledged.append(report_id)

    def _send_acknowledgements(self) -> None:
        report_ids, self._acknowledged = tuple(self._acknowledged), []
        if report_ids:
            self.send(ReportsCommittedCommand(report_ids))
            metrics.REPORTS_ACKNOWLEDGED.inc(len(report_ids))

    def close(self) -> None:
        """End the writer: nothing more is sent on this session."""
        if not self.closed:
            self.closed = True
            self.outbox.put_nowait(None)

    def replaced(self) -> asyncio.Future[None]:
        """Done once a newer stream of the same agent replaced this session: the
        transport then ends this stream."""
        if self._replaced is None:
            self._replaced = asyncio.get_running_loop().create_future()
            if self._was_replaced:
                self._replaced.set_result(None)
        return self._replaced

    def replace(self) -> None:
        """A newer session of the agent took over: close, and tell the transport."""
        self.close()
        self._was_replaced = True
        if self._replaced is not None and not self._replaced.done():
            self._replaced.set_result(None)

    def same_process(self, other: AgentSession) -> bool:
        """Both sessions come from one agent process (or an agent that does not say)."""
        return (
            not self.instance_id or not other.instance_id or self.instance_id == other.instance_id
        )

    def offers(self, labels: dict[str, str]) -> bool:
        return all(self.labels.get(key) == value for key, value in labels.items())


def stop_dropped(stop: StopCommand, reason: str) -> None:
    metrics.STOPS_DROPPED.labels(reason=reason).inc()
    # An agent away is common (it gets the stop on reconnect); a closed session after
    # the stop was decided means a shutdown or a stream that just ended.
    level = logging.INFO if reason == "agent_not_connected" else logging.WARNING
    log.log(
        level,
        "stop of job %s (build %s) not sent to agent %s: %s",
        stop.job_id,
        stop.build_id,
        stop.agent_id,
        reason.replace("_", " "),
    )


class AgentHub:
    def __init__(self, reconnect_window: float, events: AgentEvents | None = None) -> None:
        self.reconnect_window = reconnect_window
        self._sessions: dict[str, AgentSession] = {}
        self._held: dict[str, dict[str, str]] = {}  # agent_id → {job_id: build_id}
        self._lost_timers: dict[str, asyncio.TimerHandle] = {}
        # Agents that let a stop deadline pass (hung, or ignoring stops): they get no
        # new job until they answer (any job report, or a reconnect); an operator
        # sees them in ListAgents.
        self._suspects: set[str] = set()
        # Held jobs finalized FORCED without the agent's word (agent_id → job ids): the
        # process may still run, so the slot stays held until the agent reports the
        # job gone or reconnects without it.
        self._unconfirmed: dict[str, set[str]] = {}
        self._known: dict[str, AgentSession] = {}  # last session of every agent seen
        # AgentLost and SlotFree go to whoever subscribed (the registry, the scheduler).
        self.events = events if events is not None else AgentEvents()

    # ---- sessions ----

    def check_instance(self, session: AgentSession) -> None:
        """Refuse (ALREADY_EXISTS) a session of another agent process under an id
        whose live session is not replaced by it: two processes must not take turns."""
        previous = self._sessions.get(session.agent_id)
        if previous is not None and not previous.closed and not previous.same_process(session):
            raise agent_already_connected(session.agent_id)

    def connect(self, session: AgentSession) -> AgentSession | None:
        """Make `session` the agent's one live session; return the one it replaces.
        Raises ALREADY_EXISTS for another process's session (`check_instance`)."""
        self.check_instance(session)
        previous = self._sessions.get(session.agent_id)
        if previous is not None:
            previous.replace()
        self._sessions[session.agent_id] = session
        if session.agent_id in self._known:
            metrics.AGENT_RECONNECTS.inc()
        self._known[session.agent_id] = session
        self._clear_suspect(session.agent_id)  # it answered: it reconnected
        timer = self._lost_timers.pop(session.agent_id, None)
        if timer is not None:
            timer.cancel()
        metrics.AGENT_CONNECTS.inc()
        metrics.AGENTS_CONNECTED.set(len(self._sessions))
        self.events.publish(SLOT_FREE)
        return previous

    def disconnect(self, session: AgentSession) -> None:
        """The session's stream ended. Jobs stay held for the reconnect window."""
        session.close()
        if self._sessions.get(session.agent_id) is not session:
            return  # already replaced by a newer session
        del self._sessions[session.agent_id]
        metrics.AGENTS_CONNECTED.set(len(self._sessions))
        if self._held.get(session.agent_id):
            loop = asyncio.get_running_loop()
            self._lost_timers[session.agent_id] = loop.call_later(
                self.reconnect_window, self._agent_lost, session.agent_id
            )

    def _agent_lost(self, agent_id: str) -> None:
        self._lost_timers.pop(agent_id, None)
        if agent_id in self._sessions:
            return
        jobs = self._held.pop(agent_id, {})
        self._unconfirmed.pop(agent_id, None)
        if jobs:
            # Counted and logged by whoever tells the builds (actors/registry.py): on a
            # replica the agent may live on at another one (replicas/away_agents.py).
            self.events.publish(AgentLost(agent_id, jobs))

    def send_stop(self, stop: StopCommand) -> bool:
        """Queue `stop` on its agent's live session; False (counted, logged) if none."""
        session = self._sessions.get(stop.agent_id)
        if session is None:
            stop_dropped(stop, "agent_not_connected")
            return False
        if session.closed:
            stop_dropped(stop, "session_closed")
            return False
        session.send(stop)
        return True

    def session(self, agent_id: str) -> AgentSession | None:
        return self._sessions.get(agent_id)

    def is_latest(self, agent_id: str, session_id: str) -> bool:
        """Whether `session_id` is the newest session the agent opened (live or not)."""
        last = self._known.get(agent_id)
        return last is not None and last.session_id == session_id

    def sessions(self) -> list[AgentSession]:
        return list(self._sessions.values())

    # ---- job slots ----

    def held(self, agent_id: str) -> dict[str, str]:
        return dict(self._held.get(agent_id, {}))

    def holdings(self) -> dict[str, dict[str, str]]:
        """Every agent's held jobs (agent_id → {job_id: build_id}); a copy."""
        return {agent_id: dict(jobs) for agent_id, jobs in self._held.items()}

    def free_slots(self, session: AgentSession) -> int:
        return session.capacity - len(self._held.get(session.agent_id, {}))

    def hold(self, agent_id: str, job_id: str, build_id: str) -> None:
        """Count `job_id` against the agent's capacity (until `release`)."""
        self._held.setdefault(agent_id, {})[job_id] = build_id

    def release(self, agent_id: str, job_id: str) -> None:
        unconfirmed = self._unconfirmed.get(agent_id)
        if unconfirmed is not None:
            unconfirmed.discard(job_id)
            if not unconfirmed:
                del self._unconfirmed[agent_id]
        jobs = self._held.get(agent_id)
        if jobs is not None and jobs.pop(job_id, None) is not None:
            if not jobs:
                del self._held[agent_id]
                timer = self._lost_timers.pop(agent_id, None)
                if timer is not None:
                    timer.cancel()
            self.events.publish(SLOT_FREE)

    def keep_unconfirmed(self, agent_id: str, job_id: str) -> None:
        """`job_id` ended FORCED without the agent's word: keep its slot held."""
        if job_id in self._held.get(agent_id, {}):
            self._unconfirmed.setdefault(agent_id, set()).add(job_id)
            log.warning(
                "agent %s: job %s forced without confirmation; its slot stays held",
                agent_id,
                job_id,
            )

    def unconfirmed(self, agent_id: str) -> frozenset[str]:
        return frozenset(self._unconfirmed.get(agent_id, ()))

    def answered(self, agent_id: str, job_id: str, gone: bool) -> None:
        """The agent reported on `job_id` (`gone`: a result, the job no longer runs)."""
        self._clear_suspect(agent_id)
        if gone and job_id in self._unconfirmed.get(agent_id, ()):
            self.release(agent_id, job_id)

    def reconnected_running(self, agent_id: str, running: set[str]) -> None:
        """The agent came back running `running`: unconfirmed jobs not in it are gone
        (and a reconnect is an answer, also to a verdict made while it came back)."""
        self._clear_suspect(agent_id)
        for job_id in self.unconfirmed(agent_id) - running:
            self.release(agent_id, job_id)

    def pick(self, labels: dict[str, str]) -> AgentSession | None:
        """The connected, unsuspected agent offering `labels` with the most free slots."""
        best: AgentSession | None = None
        best_free = 0
        for session in self._sessions.values():
            free = self.free_slots(session)
            if (
                free > best_free
                and session.offers(labels)
                and not self.is_suspect(session.agent_id)
            ):
                best, best_free = session, free
        return best

    def mark_suspect(self, agent_id: str) -> None:
        if agent_id not in self._suspects:
            log.warning(
                "agent %s is suspect: it did not confirm a stop in time; no new jobs "
                "until it answers",
                agent_id,
            )
            self._suspects.add(agent_id)
            metrics.AGENTS_SUSPECT.set(len(self._suspects))

    def _clear_suspect(self, agent_id: str) -> None:
        if agent_id in self._suspects:
            log.info("agent %s answered: no longer suspect", agent_id)
            self._suspects.discard(agent_id)
            metrics.AGENTS_SUSPECT.set(len(self._suspects))
            self.events.publish(SLOT_FREE)

    def is_suspect(self, agent_id: str) -> bool:
        return agent_id in self._suspects

    def agents(self) -> list[tuple[AgentSession, bool, list[str]]]:
        """Every agent connected or holding jobs: (last session, connected, job ids)."""
        ids = sorted(set(self._sessions) | set(self._held))
        return [
            (
                self._known[agent_id],
                agent_id in self._sessions,
                sorted(self._held.get(agent_id, {})),
            )
            for agent_id in ids
            if agent_id in self._known
        ]

    def any_free_slot(self) -> bool:
        return any(
            self.free_slots(session) > 0 and not self.is_suspect(session.agent_id)
            for session in self._sessions.values()
        )

    def start_lost_timers(self) -> None:
        """After recovery: agents holding jobs but not connected get the window."""
        loop = asyncio.get_running_loop()
        for agent_id in list(self._held):
            if agent_id not in self._sessions and agent_id not in self._lost_timers:
                self._lost_timers[agent_id] = loop.call_later(
                    self.reconnect_window, self._agent_lost, agent_id
                )

    def drain(self, reason: str) -> None:
        for session in self._sessions.values():
            session.send(DrainCommand(reason))
            session.close()

    def stop_timers(self) -> None:
        for timer in self._lost_timers.values():
            timer.cancel()
        self._lost_timers.clear()
