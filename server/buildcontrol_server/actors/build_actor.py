"""One actor per live build: the only writer of that build's state.

The actor drains its inbox one command at a time (agent reports that queue up behind
each other are applied together). For each it applies the domain function, commits
the resulting change set (group-committed with other actors' writes), and only after
the commit answers the caller, pushes stops and assignments to agents and tells
watchers. If a commit fails the build is reloaded from the store (the source of
truth), what the stored build says its agents must have is sent (the commit may
have landed although it failed for the caller: read_back.py), and the caller gets
the error.

The actor is supervised: if its loop raises (a bug, or a failed commit whose build
could not be read back), the error is logged with its traceback and counted, and the
actor restarts from the store after a backoff: it reloads the build, arms its timers
again as recovery does (stop deadlines already armed keep their time), holds its
jobs' agent slots again, sends what its agents must have, and goes on with its
inbox and its listeners."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from buildcontrol_server import metrics
from buildcontrol_server.actors import commands as cmd
from buildcontrol_server.actors.cancel_turn import CancelTurn
from buildcontrol_server.actors.context import ActorContext
from buildcontrol_server.actors.errors import ActorRetired, write_failure
from buildcontrol_server.actors.facts import ActorFacts
from buildcontrol_server.actors.notices import BuildListeners
from buildcontrol_server.actors.read_back import resend_stops, send_unsent
from buildcontrol_server.actors.rearm import arm_from_store, arm_stop_deadlines, job_timeout
from buildcontrol_server.actors.supervision import StateLost, SupervisedActor
from buildcontrol_server.actors.timers import BuildTimers
from buildcontrol_server.domain import cancellation, lifecycle, notifications
from buildcontrol_server.domain.agent_commands import assignment_of
from buildcontrol_server.domain.errors import DomainError, Unavailable, VersionConflict
from buildcontrol_server.domain.events import finished_event
from buildcontrol_server.domain.model import Build
from buildcontrol_server.domain.outcome import Outcome
from buildcontrol_server.domain.states import BuildStatus, IllegalTransition, JobStatus
from buildcontrol_server.observability import cancel_phases

if TYPE_CHECKING:
    from buildcontrol_server.actors.router import BuildRouter

log = logging.getLogger(__name__)

TimerCommand = cmd.JobTimedOut | cmd.CleanupTimedOut | cmd.QueueTimedOut


class BuildActor(CancelTurn, SupervisedActor):
    def __init__(self, build: Build, context: ActorContext, router: BuildRouter) -> None:
        """`router`: where the actor lives; told when it retires."""
        super().__init__(build.build_id)
        self.build = build
        self._ctx = context
        self._router = router
        self._listeners = BuildListeners(build.build_id)
        self._timers = BuildTimers(self.tell, context.monotonic)
        self._cancel_received_at: float | None = None
        self._admitted = False
        # The wall clock time the domain was given in this turn: stop deadlines it
        # computes are turned into delays against it.
        self._now = 0.0
        self._stop_sent: dict[str, str] = {}
        # job_id → the session its AssignJob went out on (see _agent_reconnected).
        self._assigned_on: dict[str, str] = {}

    def start(self, *, admitted: bool) -> None:
        """Run the actor; `admitted`: its jobs may be scheduled now (not waiting for
        its concurrency group)."""
        if self.build.status is BuildStatus.QUEUED:
            left = self.build.created_at + self._ctx.settings.queue_timeout - self._ctx.clock()
            self._timers.queue_timeout(left)
        self._admitted = admitted
        if admitted:
            self._ctx.scheduler.enqueue(lifecycle.ready_jobs(self.build), self)
        self._start_loop()

    # ---- supervision (supervision.py runs the loop) ----

    def _done(self) -> bool:
        return self.build.terminal

    def _retire(self) -> None:
        self._timers.close()
        self._listeners.close()
        self._router.retired(self)

    async def _restart(self) -> bool:
        """Reload the build and arm what it needs; False: nothing is left to run."""
        stored = await self._read_back(lambda: self._ctx.store.get_build(self.build_id))
        if stored is None:
            log.error("build %s: gone from the store; its actor stops", self.build_id)
            return False
        self.build = stored
        self._timers.restart()
        self._hold_slots()
        arm_from_store(self._timers, stored, self._ctx.settings, self._ctx.clock())
        if stored.terminal:
            self._finish()
            return False
        self._send_unsent()
        if self._admitted:
            self._ctx.scheduler.enqueue(lifecycle.ready_jobs(stored), self)
        log.warning("build %s: actor restarted from the store (%s)", self.build_id, stored.status)
        return True

    def _hold_slots(self) -> None:
        """The agent slots of the reloaded build: held for every job on an agent,
        free for every job that ended (a failed loop may not have released them)."""
        link = self._ctx.link
        for job in self.build.jobs():
            if job.agent_id is None:
                continue
            if job.on_agent:
                link.hold(job.agent_id, job.job_id, self.build_id)
            elif job.terminal:
                link.release(job.agent_id, job.job_id)

    def facts(self) -> ActorFacts:
        """What the invariant auditor checks: read in a turn, or while `idle`."""
        return ActorFacts(self.build, frozenset(self._timers.stop_armed()), dict(self._stop_sent))

    # ---- handlers of commands ----

    async def _handle_reports(self, batch: list[cmd.Report]) -> None:
        now = self._now = self._ctx.clock()
        times = self._ctx.settings.stop_times
        combined = Outcome()
        applied: list[cmd.Report] = []
        for command in batch:
            try:
                combined.merge(
                    lifecycle.apply_report(self.build, command.agent_id, command.report, now, times)
                )
            except (DomainError, IllegalTransition) as error:
                self._refused(command, error)
            else:
                applied.append(command)
        try:
            await self._persist(combined)
        except (asyncio.CancelledError, StateLost):
            raise
        except Exception as error:
            for command in applied:
                command.fail(error)
        else:
            for command in applied:
                command.answer(None)

    def _refused(self, command: cmd.Command, error: Exception) -> None:
        log.debug("build %s: %s refused: %s", self.build_id, type(command).__name__, error)
        if isinstance(error, IllegalTransition):
            metrics.TRANSITIONS_REJECTED.labels(entity=error.entity.split(" ")[0]).inc()
        command.fail(error)

    async def _handle(self, command: cmd.Command) -> None:
        try:
            result = await self._dispatch(command)
        except (DomainError, IllegalTransition, ActorRetired) as error:
            self._refused(command, error)
        except (asyncio.CancelledError, StateLost):
            raise
        except Exception as error:
            log.exception("build %s: %s failed", self.build_id, type(command).__name__)
            command.fail(error)
        else:
            command.answer(result)

    async def _dispatch(self, command: cmd.Command) -> Any:
        now = self._now = self._ctx.clock()
        times = self._ctx.settings.stop_times
        match command:
            case cmd.Render(render=render):
                return render(self.build)
            case cmd.Watch(render=render, listener=listener):
                self._listeners.watch(listener)
                return render(self.build)
            case cmd.Unsubscribe(listener=listener):
                self._listeners.forget(listener)
                return None
            case cmd.Assign(job_id=job_id, agent_id=agent_id):
                return await self._assign(job_id, agent_id, now)
            case cmd.Cancel():
                return await self._cancel(command, None, now)
            case cmd.CancelInBatch(seat=seat):
                return await self._cancel(command, seat, now)
            case cmd.Inspect(check=check):
                return check(self.facts())
            case cmd.StopDeadlinePassed():
                await self._stop_deadlines_passed(now)
            case cmd.JobTimedOut(job_id=job_id):
                job = self.build.job(job_id)
                if job is not None and job.on_agent:
                    limit = job_timeout(job, self._ctx.settings)
                    reason = f"timeout: job {job.name} ran longer than {limit:g} s"
                    await self._timer_effect(command, self._server_cancel(reason, now))
            case cmd.CleanupTimedOut(job_id=job_id):
                fx = cancellation.cleanup_overdue(self.build, job_id, times, now)
                await self._timer_effect(command, self._persist(fx))
            case cmd.QueueTimedOut():
                if self.build.status is BuildStatus.QUEUED:
                    waited = self._ctx.settings.queue_timeout
                    reason = f"queue timeout: no agent took the build within {waited:g} s"
                    await self._timer_effect(command, self._server_cancel(reason, now))
            case cmd.Admit():
                self._admitted = True
                self._ctx.scheduler.enqueue(lifecycle.ready_jobs(self.build), self)
            case cmd.AgentReconnected(agent_id=agent_id, running=running, session_id=session_id):
                await self._agent_reconnected(agent_id, running, session_id, now)
            case cmd.AgentLost(agent_id=agent_id):
                await self._persist(lifecycle.agent_lost(self.build, agent_id, frozenset(), now))
            case _:
                raise TypeError(f"unknown command {command!r}")
        return None

    # ---- timers: a timer's effect is retried until it is committed ----

    async def _timer_effect(self, command: TimerCommand, effect: Awaitable[None]) -> None:
        """Run a timer's effect; if its write fails, fire the timer again later."""
        try:
            await effect
        except (Unavailable, VersionConflict) as error:
            delay = self._timers.retry(replace(command, attempt=command.attempt + 1))
            log.warning(
                "build %s: %s failed to commit (%s); again in %.2f s",
                self.build_id,
                type(command).__name__,
                error,
                delay,
            )
            raise

    # ---- handlers ----

    async def _assign(self, job_id: str, agent_id: str, now: float) -> bool:
        try:
            fx = lifecycle.assign_job(self.build, job_id, agent_id, now)
            await self._persist(fx)
        except DomainError:
            job = self.build.job(job_id)
            if job is None or job.status is not JobStatus.ASSIGNED or job.agent_id != agent_id:
                self._ctx.link.release(agent_id, job_id)
                return False
            # The commit landed although it failed (the build read back says so): the
            # read-back sent the AssignJob; the slot stays taken, the timeout armed.
        else:
            job = self.build.job(job_id)
            assert job is not None
            # Pending (re-sent from the build's state) if the agent has no stream now.
            session_id = self._ctx.link.assign(agent_id, assignment_of(job))
            if session_id is not None:
                self._assigned_on[job_id] = session_id
        if self.build.status is BuildStatus.CANCELING:
            self._timers.job_timer(
                job_id, self._ctx.settings.cleanup_timeout, cmd.CleanupTimedOut(job_id=job_id)
            )
        else:
            timeout = job_timeout(job, self._ctx.settings)
            self._timers.job_timer(job_id, timeout, cmd.JobTimedOut(job_id=job_id))
        return True

    async def _agent_reconnected(
        self, agent_id: str, running: frozenset[str], session_id: str, now: float
    ) -> None:
        if not self._ctx.link.is_latest(agent_id, session_id):
            # A newer stream of the agent came since this Hello (assignments may have
            # gone out on it): the newer stream's own Hello, queued behind, judges.
            return
        assigned = {
            job.job_id
            for job in self.build.jobs()
            if job.agent_id == agent_id and job.status is JobStatus.ASSIGNED
        }
        # A job whose AssignJob went out on the stream of this very Hello was given
        # after the Hello was written (it may be STOPPING by now): its absence from
        # the Hello says nothing, the agent may be about to run it.
        after_hello = {j for j, s in self._assigned_on.items() if s == session_id}
        fx = lifecycle.agent_lost(self.build, agent_id, running | assigned | after_hello, now)
        await self._persist(fx)
        link = self._ctx.link
        if not link.connected(agent_id):
            return  # gone again: its next Hello sends this command anew
        # What went out on this very stream after its Hello arrives in order or not at
        # all: sent again, the agent would get it twice.
        for job in self.build.jobs():
            if job.job_id in assigned - running - after_hello and job.status is JobStatus.ASSIGNED:
                sent_on = link.assign(agent_id, assignment_of(job))  # the first may be lost
                if sent_on is not None:
                    self._assigned_on[job.job_id] = sent_on
        stops = cancellation.pending_stops(self.build, agent_id, self._ctx.settings.stop_times, now)
        resend_stops(link, stops, self._stop_sent)

    # ---- commit, then act ----

    async def _persist(self, fx: Outcome) -> None:
        await self._commit(fx)
        self._act(fx)

    async def _commit(self, fx: Outcome, seat: cmd.BatchSeat | None = None) -> None:
        """Commit `fx`'s changes, alone or in `seat`'s batch; on failure read the
        build back and raise what the caller should get."""
        # The webhook outbox rows of the events this causes, and the audit record of
        # a cancel it ends, commit with it.
        notifications.queue_notifications(self.build, fx, self._ctx.settings.webhook_subscriptions)
        cancellation.record_audit(self.build, fx.changes)
        if not fx.changes.empty:
            try:
                if seat is not None:
                    await seat.contribute(fx.changes)
                else:
                    await self._ctx.store.commit(fx.changes)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                await self._reload(error)
                failure = write_failure(error, f"build {self.build_id}")
                if failure is error:
                    raise
                raise failure from error

    async def _reload(self, cause: Exception) -> None:
        """Read the build back after a failed commit (the domain already changed the
        actor's copy). If even that fails, the copy is wrong: the loop must restart."""
        try:
            stored = await self._ctx.store.get_build(self.build_id)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            raise StateLost(f"build {self.build_id}: commit failed ({cause})") from error
        if stored is not None:
            self.build = stored
            self._send_unsent()

    def _send_unsent(self) -> None:
        """The failed commit may have landed: its stops go out now, their deadlines
        armed (read_back.py)."""
        times = self._ctx.settings.stop_times
        now = self._ctx.clock()
        arm_stop_deadlines(self._timers, self.build, times, now)
        send_unsent(self.build, self._ctx.link, times, now, self._stop_sent, self._assigned_on)

    def _act(self, fx: Outcome) -> None:
        """The committed change's effects: stops and slots to the agents (through the
        link), ready jobs to the scheduler, timers, listeners."""
        link = self._ctx.link
        for stop in fx.stops:
            session_id = link.stop(stop)
            if session_id is not None:
                self._stop_sent[stop.job_id] = session_id
                metrics.STOPS_SENT.inc()
            # The domain's deadline is on the wall clock of this turn: armed as a delay.
            self._timers.stop_deadline(stop.job_id, stop.deadline - self._now)
        if fx.ready:
            self._ctx.scheduler.enqueue(fx.ready, self)
        for agent_id, job_id in fx.released:
            link.release(agent_id, job_id)
        for agent_id, job_id in fx.unconfirmed:
            link.keep_unconfirmed(agent_id, job_id)
        for job in fx.finished_jobs:
            self._timers.job_ended(job.job_id)
            self._stop_sent.pop(job.job_id, None)
            self._assigned_on.pop(job.job_id, None)
            if job.outcome is not None:
                metrics.JOB_OUTCOMES.labels(outcome=job.outcome.value).inc()
                cancel_phases.job_ended(self.build, job, self._cancel_received_at)
        self._listeners.changed(fx)
        if fx.changes.outbox:  # queued behind the stops: webhooks never hold them up
            self._ctx.effects.notifications_committed([e.notification for e in fx.changes.outbox])
        if self.build.status is not BuildStatus.QUEUED:
            self._timers.queue_left()
        if self.build.terminal:
            self._finish()

    def _finish(self) -> None:
        self._timers.cancel_all()
        self._ctx.scheduler.drop_build(self.build_id)
        if self.build.status is BuildStatus.CANCELED:
            metrics.AUDIT_RECORDS_WRITTEN.inc()  # committed with the CANCELED write
            if self._cancel_received_at is not None:
                elapsed = time.perf_counter() - self._cancel_received_at
                metrics.CANCEL_TERMINAL_SECONDS.observe(elapsed)
            cancel_phases.cancel_finished(self.build)
        self._listeners.finished(finished_event(self.build))

    def recovered(self) -> None:
        """A build loaded at start: arm its timers from what the store says (see
        rearm.py: job timeouts count from the jobs' recorded starts)."""
        arm_from_store(self._timers, self.build, self._ctx.settings, self._ctx.clock())
