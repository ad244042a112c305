"""The operations the RPC layer calls: submit, read, watch and cancel builds, and what
agents say on their streams. Live builds are answered by their actors, finished ones
by the store; nothing here knows about gRPC."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from buildcontrol_server import metrics
from buildcontrol_server.actors import commands as cmd
from buildcontrol_server.actors.build_actor import BuildActor
from buildcontrol_server.actors.bulk_cancel import (
    CancelBuildsEvent,
    CancelBuildsSummary,
    CancelStreams,
    run_cancel_builds,
)
from buildcontrol_server.actors.context import ActorRetired, finished_event
from buildcontrol_server.actors.registry import Registry
from buildcontrol_server.agents.hub import AgentHub, AgentSession
from buildcontrol_server.config import Settings
from buildcontrol_server.domain import submission
from buildcontrol_server.domain.effects import StopCommand
from buildcontrol_server.domain.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from buildcontrol_server.domain.events import (
    AgentHello,
    AgentReport,
    CancelEvent,
    WatchChange,
)
from buildcontrol_server.domain.model import Build, CancelInfo, ChangeSet
from buildcontrol_server.domain.states import BuildStatus
from buildcontrol_server.store.base import BuildStore

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_BUILD_IDS = 10_000


# Raises PermissionDenied for a build the caller may not cancel (security/caller.py);
# None: no check (authentication off).
MayCancel = Callable[[Build], None] | None


@dataclass(frozen=True)
class BuildSelector:
    """Which builds CancelBuilds cancels: exactly one of these is set."""

    build_ids: list[str] | None = None
    pipeline: str = ""
    concurrency_group: str = ""


@dataclass(frozen=True)
class AgentView:
    agent_id: str
    labels: dict[str, str]
    capacity: int
    job_ids: list[str]
    connected: bool
    suspect: bool


class BuildControl:
    def __init__(
        self,
        store: BuildStore,
        registry: Registry,
        hub: AgentHub,
        settings: Settings,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._registry = registry
        self._hub = hub
        self._settings = settings
        self._clock = clock
        # Open cancel streams, and the refusal of new cancels during a shutdown.
        self.cancel_streams = CancelStreams()

    # ---- builds ----

    async def submit(
        self,
        spec: submission.PipelineSpec,
        render: Callable[[Build], T],
        submitted_by: str | None = None,
    ) -> T:
        build = submission.new_build(spec, self._clock(), self._settings.limits, submitted_by)
        changes = ChangeSet(new_build=build)
        await self._store.commit(changes)
        rendered = render(build)  # before the actor runs: the caller sees it QUEUED
        self._registry.spawn(build)
        if build.cancel_in_progress:
            self._registry.supersede(build)
        return rendered

    async def get(self, build_id: str, render: Callable[[Build], T]) -> T:
        submission.check_build_id(build_id)
        actor = self._registry.get(build_id)
        if actor is not None:
            try:
                result: T = await actor.ask(cmd.Render(render=render))
                return result
            except ActorRetired:
                pass
        return render(await self._stored(build_id))

    async def list_builds(
        self, limit: int, before: str | None, pipeline: str | None
    ) -> list[Build]:
        return await self._store.list_builds(limit, before, pipeline)

    async def _stored(self, build_id: str) -> Build:
        build = await self._store.get_build(build_id)
        if build is None:
            raise NotFound(f"build {build_id} does not exist")
        return build

    async def watch(
        self, build_id: str, render: Callable[[Build], T]
    ) -> tuple[T, AsyncIterator[WatchChange]]:
        """The build now, then its changes until it is terminal."""
        submission.check_build_id(build_id)
        actor = self._registry.get(build_id)
        if actor is not None:
            listener: asyncio.Queue[WatchChange | None] = asyncio.Queue()
            try:
                snapshot: T = await actor.ask(cmd.Watch(render=render, listener=listener))
                return snapshot, _drain(listener, actor)
            except ActorRetired:
                pass
        return render(await self._stored(build_id)), _nothing()

    def _cancel_info(
        self, reason: str, force: bool, grace_period: float | None, requested_by: str
    ) -> CancelInfo:
        submission.check_reason(reason, self._settings.limits)
        grace = self._settings.default_grace_period if grace_period is None else grace_period
        return CancelInfo(reason, requested_by, force, grace, self._clock())

    async def cancel(
        self,
        build_id: str,
        reason: str,
        force: bool,
        grace_period: float | None,
        requested_by: str,
        may_cancel: MayCancel = None,
    ) -> AsyncIterator[CancelEvent]:
        """Apply the cancel, then return its events: ACCEPTED (already persisted),
        one per job as it stops, and the terminal one last. Raises before returning
        for a bad request, so the caller can answer with an error status.
        `may_cancel` raises PermissionDenied for a build the caller may not cancel."""
        received_at = time.perf_counter()
        submission.check_build_id(build_id)
        info = self._cancel_info(reason, force, grace_period, requested_by)
        self.cancel_streams.refuse_if_closing()
        actor = self._registry.get(build_id)
        if actor is not None and may_cancel is not None:
            # Pipeline and submitter never change after submission: reading them here,
            # outside the actor's turn, cannot race with the actor.
            may_cancel(actor.build)
        if actor is not None:
            listener: asyncio.Queue[CancelEvent | None] = asyncio.Queue()
            try:
                first: CancelEvent = await actor.ask(
                    cmd.Cancel(info=info, listener=listener, received_at=received_at)
                )
            except ActorRetired:
                pass
            except FailedPrecondition:
                metrics.CANCELS.labels(result="refused").inc()
                raise
            else:
                return _prepend(first, self._cancel_stream(listener, actor))
        build = await self._stored(build_id)
        if may_cancel is not None:
            may_cancel(build)
        if build.status is BuildStatus.CANCELED:
            metrics.CANCELS.labels(result="already_canceled").inc()
            return _prepend(finished_event(build), _nothing())
        metrics.CANCELS.labels(result="refused").inc()
        raise FailedPrecondition(
            f"build {build_id} already {build.status.value}; only a running or queued build "
            "can be cancelled"
        )

    async def cancel_builds(
        self,
        selector: BuildSelector,
        reason: str,
        force: bool,
        grace_period: float | None,
        requested_by: str,
        may_cancel: MayCancel = None,
    ) -> AsyncIterator[CancelBuildsEvent]:
        """Cancel every build the selector names; the CANCELING writes of up to
        BATCH_SIZE (bulk_cancel.py) builds share one transaction. Yields the accepted
        counts once they are committed, each build's terminal event as it comes,
        then the summary. If `may_cancel` refuses any selected build, the whole call
        is refused before anything is cancelled."""
        received_at = time.perf_counter()
        info = self._cancel_info(reason, force, grace_period, requested_by)
        self.cancel_streams.refuse_if_closing()
        summary = CancelBuildsSummary()
        actors, finished = await self._select(selector, summary)
        if may_cancel is not None:
            for build in [actor.build for actor in actors] + finished:
                may_cancel(build)
        return run_cancel_builds(
            self._store, self.cancel_streams, actors, finished, info, summary, received_at
        )

    async def _select(
        self, selector: BuildSelector, summary: CancelBuildsSummary
    ) -> tuple[list[BuildActor], list[Build]]:
        """Live actors to cancel, and finished builds named by id (answered from disk)."""
        if selector.build_ids is not None:
            if len(selector.build_ids) > MAX_BUILD_IDS:
                raise InvalidArgument("ids.build_ids", f"more than {MAX_BUILD_IDS}")
            actors, finished = [], []
            for position, build_id in enumerate(dict.fromkeys(selector.build_ids)):
                submission.check_build_id(build_id, f"ids.build_ids[{position}]")
                actor = self._registry.get(build_id)
                if actor is not None:
                    actors.append(actor)
                elif (stored := await self._store.get_build(build_id)) is not None:
                    finished.append(stored)
                else:
                    summary.not_found += 1
            summary.matched = len(actors) + len(finished)
            return actors, finished
        if selector.pipeline:
            actors = [a for a in self._registry.live() if a.build.pipeline == selector.pipeline]
        elif selector.concurrency_group:
            group = selector.concurrency_group
            actors = [a for a in self._registry.live() if a.build.concurrency_group == group]
        else:
            raise InvalidArgument("selector", "give ids, a pipeline or a concurrency_group")
        summary.matched = len(actors)
        return actors, []

    async def _cancel_stream(
        self, listener: asyncio.Queue[Any], actor: BuildActor
    ) -> AsyncIterator[CancelEvent]:
        """One Cancel's events until its terminal one; UNAVAILABLE if the server stops
        first (the cancel itself is committed and resumes after the restart)."""
        try:
            async for item in self.cancel_streams.follow(listener):
                yield item
        finally:
            actor.tell(cmd.Unsubscribe(listener=listener))

    def agents(self) -> list[AgentView]:
        return [
            AgentView(
                s.agent_id,
                dict(s.labels),
                s.capacity,
                jobs,
                connected,
                self._hub.is_suspect(s.agent_id),
            )
            for s, connected, jobs in self._hub.agents()
        ]

    # ---- agents ----

    async def agent_connected(self, session: AgentSession, hello: AgentHello) -> None:
        """Apply results re-sent from an earlier stream, then reconcile what the agent
        runs with what the server expects of it."""
        self._hub.connect(session)
        for report in hello.earlier_reports:
            applied = self.agent_report(session.agent_id, report)
            if applied is None:
                continue
            try:
                await applied
            except (ActorRetired, PermissionDenied, NotFound) as error:
                log.info("agent %s: re-sent report ignored: %s", session.agent_id, error)
        expected = self._hub.held(session.agent_id)  # job_id → build_id
        claimed = {claim.job_id: claim.build_id for claim in hello.running}
        for job_id, build_id in claimed.items():
            if expected.get(job_id) != build_id:
                # Unknown, finished, cancelled or someone else's: it must not run.
                session.send(self._stop_unexpected(build_id, job_id, session.agent_id))
        replies = []
        for build_id in set(expected.values()):
            actor = self._registry.get(build_id)
            if actor is None:
                continue
            running = frozenset(j for j, b in claimed.items() if b == build_id)
            command = cmd.AgentReconnected(agent_id=session.agent_id, running=running)
            actor.tell(command)
            replies.append(command.reply)
        await asyncio.gather(*replies, return_exceptions=True)

    def _stop_unexpected(self, build_id: str, job_id: str, agent_id: str) -> StopCommand:
        metrics.STOPS_SENT.inc()
        return StopCommand(
            build_id,
            job_id,
            agent_id,
            "the server does not expect this agent to run this job",
            grace_period=self._settings.default_grace_period,
            deadline=self._clock()
            + self._settings.default_grace_period
            + self._settings.stop_ack_timeout,
        )

    def agent_report(self, agent_id: str, report: AgentReport) -> asyncio.Future[Any] | None:
        """Queue a report at its build's actor; the future says if it was applied.
        None: the build is not live (finished or unknown), so nothing of it may change."""
        actor = self._registry.get(report.build_id)
        if actor is None:
            log.debug("agent %s reported on a build that is not live: %s", agent_id, report)
            return None
        command = cmd.Report(agent_id=agent_id, report=report)
        actor.tell(command)
        return command.reply

    def agent_disconnected(self, session: AgentSession) -> None:
        self._hub.disconnect(session)


async def _drain(queue: asyncio.Queue[Any], actor: BuildActor) -> AsyncIterator[Any]:
    try:
        while (item := await queue.get()) is not None:
            yield item
    finally:
        actor.tell(cmd.Unsubscribe(listener=queue))


async def _prepend(first: T, rest: AsyncIterator[T]) -> AsyncIterator[T]:
    yield first
    async for item in rest:
        yield item


async def _nothing() -> AsyncIterator[Any]:
    return
    yield
