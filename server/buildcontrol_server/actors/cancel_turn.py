"""The cancel turn of a build's actor, top to bottom: apply the cancel, commit
CANCELING (alone, or in its CancelBuilds batch), accept it (metrics, the stops'
request time, the log line, the listener), then act on it (stops to the agents,
timers, listeners); and, when an agent does not confirm a stop in time, its end:
the job FORCED. docs/architecture.md draws the whole sequence."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace

from buildcontrol_server import metrics
from buildcontrol_server.actors import commands as cmd
from buildcontrol_server.actors.cancel_requests import server_cancel
from buildcontrol_server.actors.context import ActorContext
from buildcontrol_server.actors.notices import BuildListeners
from buildcontrol_server.actors.timers import BuildTimers
from buildcontrol_server.domain import cancellation
from buildcontrol_server.domain.errors import Unavailable, VersionConflict
from buildcontrol_server.domain.events import CancelAcceptedEvent, CancelEvent, finished_event
from buildcontrol_server.domain.model import Build
from buildcontrol_server.domain.outcome import Outcome
from buildcontrol_server.domain.states import BuildStatus, JobStatus
from buildcontrol_server.observability import cancel_phases

log = logging.getLogger(__name__)


class CancelTurn:
    """Mixed into BuildActor (build_actor.py), which provides what is declared here."""

    build: Build
    _ctx: ActorContext
    _listeners: BuildListeners
    _timers: BuildTimers
    # perf_counter() of the request that started the cancel under way (None: none, or
    # it came before a restart).
    _cancel_received_at: float | None

    @property
    def build_id(self) -> str:
        return self.build.build_id

    async def _commit(self, fx: Outcome, seat: cmd.BatchSeat | None = None) -> None:
        raise NotImplementedError

    async def _persist(self, fx: Outcome) -> None:
        raise NotImplementedError

    def _act(self, fx: Outcome) -> None:
        raise NotImplementedError

    async def _cancel(
        self, command: cmd.Cancel | cmd.CancelInBatch, seat: cmd.BatchSeat | None, now: float
    ) -> CancelEvent:
        """The cancel turn: apply it, commit CANCELING (alone, or in `seat`'s batch),
        accept it, then act on it. A CancelInBatch's seat is settled when its reply
        is (commands.py): a cancel that writes nothing never holds up its batch."""
        build = self.build
        if build.status is BuildStatus.CANCELED:
            metrics.CANCELS.labels(result="already_canceled").inc()
            return self._first_event(command, finished_event(build), last=True)
        fx = cancellation.cancel(build, command.info, self._ctx.settings.stop_times, now)
        if fx.duplicate:
            metrics.CANCELS.labels(result="joined").inc()
            first = self._first_event(command, self._accepted_event(joined=True))
            self._listeners.cancel_joined(command.listener)
            return first
        if not fx.escalated:
            self._cancel_received_at = command.received_at
        await self._commit(fx, seat)
        first = self._accept_cancel(command, fx)
        self._act(fx)
        return first

    def _accept_cancel(self, command: cmd.Cancel | cmd.CancelInBatch, fx: Outcome) -> CancelEvent:
        """CANCELING is committed: from here the cancel survives a crash. Count it,
        stamp the stops it causes with the request's arrival (so the stream writer
        can measure their delivery), log it, and listen for the rest of its events
        before the effects run (jobs that never started end in this same turn)."""
        result = "escalated" if fx.escalated else "accepted"
        metrics.CANCELS.labels(result=result).inc()
        metrics.CANCEL_ACCEPTED_SECONDS.observe(time.perf_counter() - command.received_at)
        fx.stops[:] = [replace(stop, requested_at=command.received_at) for stop in fx.stops]
        cancel_phases.cancel_accepted(self.build, fx, command.received_at)
        first = self._first_event(command, self._accepted_event(joined=False))
        self._listeners.cancel_joined(command.listener)
        self._timers.queue_left()
        return first

    def _accepted_event(self, *, joined: bool) -> CancelAcceptedEvent:
        build = self.build
        assert build.cancel is not None
        stopping = sum(1 for job in build.jobs() if job.status is JobStatus.STOPPING)
        return CancelAcceptedEvent(build.build_id, build.status, build.cancel, stopping, joined)

    @staticmethod
    def _first_event(
        command: cmd.Cancel | cmd.CancelInBatch, first: CancelEvent, *, last: bool = False
    ) -> CancelEvent:
        """A Cancel's stream reads every event from its listener, this first one
        too; a CancelInBatch's listener is shared by its whole batch, which counts the
        replies instead. `last`: nothing follows (the build is already over)."""
        if isinstance(command, cmd.Cancel):
            command.listener.put_nowait(first)
        if last:
            command.listener.put_nowait(None)
        return first

    async def _server_cancel(self, reason: str, now: float) -> None:
        """A cancel the server makes itself: the same path, metrics and logs as a
        user's, with nobody listening to its stream."""
        info = server_cancel(reason, self._ctx.settings, now)
        command = cmd.Cancel(info=info, listener=asyncio.Queue(), received_at=time.perf_counter())
        await self._cancel(command, None, now)

    # ---- stop deadlines: a stop not confirmed in time ends FORCED ----

    async def _stop_deadlines_passed(self, now: float) -> None:
        due = self._timers.overdue()
        fx = cancellation.stop_overdue(self.build, due, now)
        try:
            await self._persist(fx)
        except (Unavailable, VersionConflict) as error:
            delay = self._timers.stop_failed()
            log.warning(
                "build %s: FORCED write of overdue stops failed (%s); again in %.2f s",
                self.build_id,
                error,
                delay,
            )
            raise
        self._timers.stop_settled(due)
        metrics.STOP_DEADLINES_EXPIRED.inc(len(fx.finished_jobs))
        cancel_phases.deadlines_expired(self.build, fx.finished_jobs, now)
        if fx.finished_jobs:
            self._suspect_agents(fx)

    def _suspect_agents(self, fx: Outcome) -> None:
        for job in fx.finished_jobs:
            if job.agent_id is not None:
                self._ctx.link.mark_suspect(job.agent_id)
