"""One actor per live build: the only writer of that build's state.

The actor drains its inbox one command at a time (agent reports that queue up behind
each other are applied together). For each it applies the domain function, commits
the resulting change set (group-committed with other actors' writes), and only after
the commit answers the caller, pushes stops and assignments to agents and tells
watchers. If a commit fails the build is reloaded from the store (the source of
truth) and the caller gets the error."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from buildcontrol_server import metrics
from buildcontrol_server.actors import commands as cmd
from buildcontrol_server.actors.context import (
    ActorContext,
    ActorRetired,
    finished_event,
    server_cancel,
)
from buildcontrol_server.actors.notices import BuildListeners
from buildcontrol_server.actors.timers import BuildTimers
from buildcontrol_server.domain import cancellation, lifecycle
from buildcontrol_server.domain.effects import Effects
from buildcontrol_server.domain.errors import DomainError, Unavailable
from buildcontrol_server.domain.events import (
    AssignCommand,
    AssignedStep,
    CancelAcceptedEvent,
    CancelEvent,
)
from buildcontrol_server.domain.model import Build, CancelRecord, Job
from buildcontrol_server.domain.states import BuildStatus, IllegalTransition, JobStatus
from buildcontrol_server.observability import cancel_phases

log = logging.getLogger(__name__)

# Most agent reports one actor applies in one commit.
REPORT_BATCH = 256


def assignment_of(job: Job) -> AssignCommand:
    return AssignCommand(
        build_id=job.build_id,
        job_id=job.job_id,
        name=job.name,
        steps=tuple(AssignedStep(s.index, s.name, s.command, s.run_on_cancel) for s in job.steps),
        env=dict(job.env),
    )


class BuildActor:
    def __init__(self, build: Build, context: ActorContext) -> None:
        self.build = build
        self._ctx = context
        self._inbox: deque[cmd.Command] = deque()
        self._mail = asyncio.Event()
        self._closed = False
        self._listeners = BuildListeners(build.build_id)
        self._timers = BuildTimers(self.tell, context.clock)
        self._cancel_received_at: float | None = None
        self._task: asyncio.Task[None] | None = None
        # True while self.build may hold a change whose commit failed and could not be
        # undone by a reload (the store was unreachable for the reload too).
        self._stale = False

    @property
    def build_id(self) -> str:
        return self.build.build_id

    @property
    def closed(self) -> bool:
        return self._closed

    def start(self, *, admitted: bool) -> None:
        """Run the actor; `admitted`: its jobs may be scheduled now (not waiting for
        its concurrency group)."""
        if self.build.status is BuildStatus.QUEUED:
            self._timers.queue_timeout(self.build.created_at + self._ctx.settings.queue_timeout)
        if admitted:
            self._ctx.scheduler.enqueue(lifecycle.ready_jobs(self.build))
        self._task = asyncio.create_task(self._run(), name=f"build-actor-{self.build_id}")

    def tell(self, command: cmd.Command) -> None:
        if self._closed:
            if isinstance(command, cmd.CancelInBatch):
                command.batch.abstain()
            command.reply.set_exception(ActorRetired(self.build_id))
            return
        self._inbox.append(command)
        self._mail.set()

    async def ask(self, command: cmd.Command) -> Any:
        self.tell(command)
        return await command.reply

    def depth(self) -> int:
        return len(self._inbox)

    async def join(self) -> None:
        if self._task is not None:
            await self._task

    # ---- the loop ----

    async def _run(self) -> None:
        try:
            while True:
                if not self._inbox:
                    self._mail.clear()
                    await self._mail.wait()
                    continue
                command = self._inbox.popleft()
                if isinstance(command, cmd.Shutdown):
                    command.reply.set_result(None)
                    return
                if self._stale and not await self._refresh(command):
                    continue
                if isinstance(command, cmd.Report):
                    await self._handle_reports(self._take_reports(command))
                else:
                    await self._handle(command)
                if self.build.terminal and not self._inbox and not self._stale:
                    return
        finally:
            self._closed = True
            self._timers.close()
            while self._inbox:  # only after a crash of the loop itself
                left = self._inbox.popleft()
                if isinstance(left, cmd.CancelInBatch):
                    left.batch.abstain()
                if not left.reply.done():
                    left.reply.set_exception(ActorRetired(self.build_id))
            self._listeners.close()
            self._ctx.on_retire(self)

    def _take_reports(self, first: cmd.Report) -> list[cmd.Report]:
        """`first` and the reports queued right behind it: one commit for all of them
        (many agents confirming stops at once cost one transaction, not one each)."""
        batch = [first]
        while self._inbox and isinstance(self._inbox[0], cmd.Report) and len(batch) < REPORT_BATCH:
            report = self._inbox.popleft()
            assert isinstance(report, cmd.Report)
            batch.append(report)
        return batch

    async def _handle_reports(self, batch: list[cmd.Report]) -> None:
        now = self._ctx.clock()
        combined = Effects()
        applied: list[cmd.Report] = []
        for command in batch:
            try:
                combined.merge(
                    lifecycle.apply_report(self.build, command.agent_id, command.report, now)
                )
            except (DomainError, IllegalTransition) as error:
                self._refused(command, error)
            else:
                applied.append(command)
        try:
            await self._persist(combined)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            for command in applied:
                command.reply.set_exception(error)
        else:
            for command in applied:
                command.reply.set_result(None)

    def _refused(self, command: cmd.Command, error: Exception) -> None:
        log.debug("build %s: %s refused: %s", self.build_id, type(command).__name__, error)
        if isinstance(error, IllegalTransition):
            metrics.TRANSITIONS_REJECTED.labels(entity=error.entity.split(" ")[0]).inc()
        if not command.reply.done():
            command.reply.set_exception(error)

    async def _handle(self, command: cmd.Command) -> None:
        try:
            result = await self._dispatch(command)
        except (DomainError, IllegalTransition, ActorRetired) as error:
            self._refused(command, error)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            log.exception("build %s: %s failed", self.build_id, type(command).__name__)
            if not command.reply.done():
                command.reply.set_exception(error)
        else:
            if not command.reply.done():
                command.reply.set_result(result)

    async def _dispatch(self, command: cmd.Command) -> Any:
        now = self._ctx.clock()
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
            case cmd.CancelInBatch():
                return await self._cancel(command, command.batch, now)
            case cmd.StopDeadlinePassed():
                fx = cancellation.stop_overdue(self.build, self._timers.overdue(), now)
                metrics.STOP_DEADLINES_EXPIRED.inc(len(fx.finished_jobs))
                cancel_phases.deadlines_expired(self.build, fx.finished_jobs, now)
                if fx.finished_jobs:
                    self._suspect_agents(fx)
                await self._persist(fx)
            case cmd.JobTimedOut(job_id=job_id):
                job = self.build.job(job_id)
                if job is not None and job.on_agent:
                    limit = self._job_timeout(job)
                    await self._server_cancel(
                        f"timeout: job {job.name} ran longer than {limit:g} s", now
                    )
            case cmd.CleanupTimedOut(job_id=job_id):
                await self._persist(cancellation.cleanup_overdue(self.build, job_id, times, now))
            case cmd.QueueTimedOut():
                if self.build.status is BuildStatus.QUEUED:
                    waited = self._ctx.settings.queue_timeout
                    await self._server_cancel(
                        f"queue timeout: no agent took the build within {waited:g} s", now
                    )
            case cmd.Admit():
                self._ctx.scheduler.enqueue(lifecycle.ready_jobs(self.build))
            case cmd.AgentReconnected(agent_id=agent_id, running=running):
                await self._agent_reconnected(agent_id, running, now)
            case cmd.AgentLost(agent_id=agent_id):
                await self._persist(lifecycle.agent_lost(self.build, agent_id, frozenset(), now))
            case _:
                raise TypeError(f"unknown command {command!r}")
        return None

    # ---- handlers ----

    async def _assign(self, job_id: str, agent_id: str, now: float) -> bool:
        try:
            fx = lifecycle.assign_job(self.build, job_id, agent_id, now)
            await self._persist(fx)
        except DomainError:
            self._ctx.hub.release(agent_id, job_id)
            return False
        job = self.build.job(job_id)
        assert job is not None
        session = self._ctx.hub.session(agent_id)
        if session is not None:
            session.send(assignment_of(job))
        if self.build.status is BuildStatus.CANCELING:
            self._timers.job_timer(
                job_id, self._ctx.settings.cleanup_timeout, cmd.CleanupTimedOut(job_id=job_id)
            )
        else:
            self._timers.job_timer(job_id, self._job_timeout(job), cmd.JobTimedOut(job_id=job_id))
        return True

    def _job_timeout(self, job: Job) -> float:
        return job.timeout or self._ctx.settings.job_timeout

    async def _cancel(
        self, command: cmd.Cancel | cmd.CancelInBatch, batch: Any, now: float
    ) -> CancelEvent:
        build = self.build
        if build.status is BuildStatus.CANCELED:
            if batch is not None:
                batch.abstain()
            metrics.CANCELS.labels(result="already_canceled").inc()
            command.listener.put_nowait(None)
            return finished_event(build)
        try:
            fx = cancellation.cancel(build, command.info, self._ctx.settings.stop_times, now)
        except Exception:
            # Refused (or a bug): the batch must not wait for this build's write.
            if batch is not None:
                batch.abstain()
            raise
        if fx.duplicate:
            if batch is not None:
                batch.abstain()
            metrics.CANCELS.labels(result="joined").inc()
            self._listeners.cancel_joined(command.listener)
        else:
            if not fx.escalated:
                self._cancel_received_at = command.received_at
            await self._persist(fx, batch=batch, accepted=lambda: self._accepted(command, fx))
        assert build.cancel is not None
        stopping = sum(1 for job in build.jobs() if job.status is JobStatus.STOPPING)
        return CancelAcceptedEvent(build.build_id, build.status, build.cancel, stopping)

    async def _server_cancel(self, reason: str, now: float) -> None:
        """A cancel the server makes itself: the same path, metrics and logs as a
        user's, with nobody listening to its stream."""
        info = server_cancel(reason, self._ctx.settings, now)
        command = cmd.Cancel(info=info, listener=asyncio.Queue(), received_at=time.perf_counter())
        await self._cancel(command, None, now)

    def _accepted(self, command: cmd.Cancel | cmd.CancelInBatch, fx: Effects) -> None:
        """CANCELING is committed: from here the cancel survives a crash."""
        result = "escalated" if fx.escalated else "accepted"
        metrics.CANCELS.labels(result=result).inc()
        metrics.CANCEL_ACCEPTED_SECONDS.observe(time.perf_counter() - command.received_at)
        cancel_phases.cancel_accepted(self.build, fx, command.received_at)  # stamps fx.stops
        # Listen before the effects run: jobs that never started end in this same turn.
        self._listeners.cancel_joined(command.listener)
        self._timers.queue_left()

    def _suspect_agents(self, fx: Effects) -> None:
        for job in fx.finished_jobs:
            if job.agent_id is not None:
                self._ctx.hub.mark_suspect(job.agent_id)

    async def _agent_reconnected(self, agent_id: str, running: frozenset[str], now: float) -> None:
        assigned = {
            job.job_id
            for job in self.build.jobs()
            if job.agent_id == agent_id and job.status is JobStatus.ASSIGNED
        }
        fx = lifecycle.agent_lost(self.build, agent_id, running | assigned, now)
        await self._persist(fx)
        session = self._ctx.hub.session(agent_id)
        if session is None:
            return
        for job in self.build.jobs():
            if job.job_id in assigned - running and job.status is JobStatus.ASSIGNED:
                session.send(assignment_of(job))  # the first AssignJob may have been lost
        times = self._ctx.settings.stop_times
        for stop in cancellation.pending_stops(self.build, agent_id, times, now):
            session.send(stop)
            metrics.STOPS_RESENT.inc()

    # ---- commit, then act ----

    async def _persist(
        self,
        fx: Effects,
        *,
        batch: Any = None,
        accepted: Callable[[], None] | None = None,
    ) -> None:
        if not fx.changes.empty:
            try:
                if batch is not None:
                    await batch.contribute(fx.changes)
                else:
                    await self._ctx.store.commit(fx.changes)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                await self._reload()
                if isinstance(error, DomainError):
                    raise
                log.exception("build %s: commit failed", self.build_id)
                raise Unavailable("the store could not save the change; try again") from error
        elif batch is not None:
            batch.abstain()
        if accepted is not None:
            accepted()
        self._act(fx)

    async def _reload(self) -> None:
        try:
            stored = await self._ctx.store.get_build(self.build_id)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The store is unreachable for the reload too: the build in memory holds
            # the change that failed. Nothing may act on it (nor retire the actor for
            # a terminal status never written): reload before the next command.
            log.warning("build %s: reload after a failed commit failed", self.build_id)
            self._stale = True
            return
        self._stale = False
        if stored is not None:
            self.build = stored

    async def _refresh(self, command: cmd.Command) -> bool:
        """Reload a stale build before `command`; False (command refused) if the
        store is still unreachable."""
        await self._reload()
        if not self._stale:
            return True
        if isinstance(command, cmd.CancelInBatch):
            command.batch.abstain()
        if not command.reply.done():
            command.reply.set_exception(Unavailable("the store is unreachable; try again"))
        return False

    def _act(self, fx: Effects) -> None:
        hub = self._ctx.hub
        for stop in fx.stops:
            session = hub.session(stop.agent_id)
            if session is not None:
                session.send(stop)
                metrics.STOPS_SENT.inc()
            self._timers.stop_deadline(stop.job_id, stop.deadline)
        if fx.ready:
            self._ctx.scheduler.enqueue(fx.ready)
        for agent_id, job_id in fx.released:
            hub.release(agent_id, job_id)
        for job in fx.finished_jobs:
            self._timers.job_ended(job.job_id)
            if job.outcome is not None:
                metrics.JOB_OUTCOMES.labels(outcome=job.outcome.value).inc()
                cancel_phases.job_ended(self.build, job, self._cancel_received_at)
        self._listeners.changed(fx)
        if self.build.status is not BuildStatus.QUEUED:
            self._timers.queue_left()
        if self.build.terminal:
            self._finish()

    def _finish(self) -> None:
        self._timers.cancel_all()
        self._ctx.scheduler.drop_build(self.build_id)
        if self.build.status is BuildStatus.CANCELED:
            # Behind the committed transition: audit and webhooks never hold it up.
            self._ctx.effects.cancel_finished(CancelRecord.of(self.build))
            if self._cancel_received_at is not None:
                elapsed = time.perf_counter() - self._cancel_received_at
                metrics.CANCEL_TERMINAL_SECONDS.observe(elapsed)
            cancel_phases.cancel_finished(self.build)
        self._listeners.finished(finished_event(self.build))

    def recovered(self) -> None:
        """A build loaded at start: its stops and jobs get fresh deadlines (the time
        spent down is not counted against them)."""
        now = self._ctx.clock()
        times = self._ctx.settings.stop_times
        for job in self.build.jobs():
            if job.status is JobStatus.STOPPING and job.agent_id is not None:
                stop = cancellation.stop_command(self.build, job, times, now)
                self._timers.stop_deadline(job.job_id, stop.deadline)
            elif job.on_agent and self.build.status is BuildStatus.RUNNING:
                timeout = self._job_timeout(job)
                self._timers.job_timer(job.job_id, timeout, cmd.JobTimedOut(job_id=job.job_id))
