"""The operations the RPC layer calls: submit, read, watch and cancel builds, and what
agents say on their streams. Live builds are answered by their actors, finished ones
by the store; nothing here knows about gRPC."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from buildcontrol_server import metrics
from buildcontrol_server.actors import commands as cmd
from buildcontrol_server.actors.agent_views import AgentView, agent_views
from buildcontrol_server.actors.build_actor import BuildActor
from buildcontrol_server.actors.bulk_cancel import (
    CancelBuildsEvent,
    CancelBuildsSummary,
    CancelStreams,
    run_cancel_builds,
)
from buildcontrol_server.actors.cancel_requests import MayCancel
from buildcontrol_server.actors.errors import ActorRetired, write_failure
from buildcontrol_server.actors.in_flight import InFlight
from buildcontrol_server.actors.reconciliation import reconcile_hello
from buildcontrol_server.actors.registry import Registry, Superseded
from buildcontrol_server.actors.report_intake import ReportIntake
from buildcontrol_server.actors.router import (
    BuildRouter,
    LocalActor,
    OwnedElsewhere,
    owned_elsewhere,
)
from buildcontrol_server.actors.selection import BuildSelector, check_selector, select_builds
from buildcontrol_server.actors.submit_keys import RequestKey, SubmitKeys, Submitted
from buildcontrol_server.agents.hub import AgentHub, AgentSession
from buildcontrol_server.config import Settings
from buildcontrol_server.domain import submission
from buildcontrol_server.domain.errors import (
    FailedPrecondition,
    Unavailable,
    build_already_finished,
    build_not_found,
)
from buildcontrol_server.domain.events import (
    AgentHello,
    AgentReport,
    CancelEvent,
    WatchChange,
    finished_event,
)
from buildcontrol_server.domain.model import Build, CancelInfo, ChangeSet, SubmitRequest
from buildcontrol_server.domain.states import BuildStatus
from buildcontrol_server.security import fair_limits
from buildcontrol_server.store.base import BuildStore

log = logging.getLogger(__name__)
T = TypeVar("T")

# What a WatchBuild ended by the shutdown says (UNAVAILABLE): watch again elsewhere.
WATCH_SHUTDOWN_MESSAGE = "draining: the server is shutting down; watch again (a fresh snapshot)"


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
        self._router: BuildRouter = registry.router  # where each build lives
        self._hub = hub
        self._settings = settings
        self._clock = clock
        self.reports = ReportIntake(store, registry, hub)
        # Cancels under way (from the call to their actors' answers), and whether the
        # server drains: then new submits and cancels are refused (UNAVAILABLE).
        self.cancels_in_flight = InFlight()
        self.recovered = asyncio.Event()  # set once every unfinished build has its actor
        self.draining = False
        self._submit_keys = SubmitKeys(store)
        # Open cancel and watch streams, which a shutdown ends at once with UNAVAILABLE
        # (a watch would otherwise hold the shutdown for its whole grace).
        self.cancel_streams = CancelStreams()
        self.open_watches = CancelStreams(WATCH_SHUTDOWN_MESSAGE)

    # ---- builds ----

    async def submit(
        self,
        spec: submission.PipelineSpec,
        render: Callable[[Build], T],
        submitted_by: str | None = None,
        may_cancel: MayCancel = None,
        request: RequestKey | None = None,
    ) -> Submitted[T]:
        """Store and start a new build. With cancel_in_progress, the older builds of
        its group that `may_cancel` allows are cancelled (the submitter cancels them);
        the others are left alone and the new build waits for them. With a `request`
        key seen before (same submitter), nothing is made: the first build is returned."""
        self._refuse_if_draining()
        if request is None:
            return await self._create(spec, render, submitted_by, may_cancel, None)
        submitter = submitted_by or ""
        async with self._submit_keys.claimed(submitter, request) as earlier:
            if earlier is not None:
                return Submitted(await self.get(earlier, render), replayed=True)
            key = SubmitRequest(submitter, request.request_id, request.digest, "")
            return await self._create(spec, render, submitted_by, may_cancel, key)

    async def _create(
        self,
        spec: submission.PipelineSpec,
        render: Callable[[Build], T],
        submitted_by: str | None,
        may_cancel: MayCancel,
        request: SubmitRequest | None,
    ) -> Submitted[T]:
        ids = self._router.new_build_id  # a replica picks an id in a shard it owns
        build = submission.new_build(spec, self._clock(), self._settings.limits, submitted_by, ids)
        if request is not None:
            request = dataclasses.replace(request, build_id=build.build_id)
        holder = fair_limits.holder_of(submitted_by)
        # Counted before the commit, so concurrent submits cannot pass the bound together.
        self._registry.live_builds.acquire(holder)
        # Shielded: a queued write commits even if its caller left; its build needs an actor.
        starting = asyncio.ensure_future(self._store_and_start(build, request, holder, render))
        starting.add_done_callback(lambda done: done.cancelled() or done.exception())
        rendered = await asyncio.shield(starting)
        superseded = Superseded()
        if build.cancel_in_progress:
            superseded = self._registry.supersede(build, may_cancel)
        return Submitted(rendered, superseded)

    async def _store_and_start(
        self,
        build: Build,
        request: SubmitRequest | None,
        holder: str,
        render: Callable[[Build], T],
    ) -> T:
        # Marked as starting while it is written: the build is in the store before its
        # actor runs, and the invariant auditor must not take that for a lost actor.
        with self._registry.starting(build.build_id):
            try:
                await self._store.commit(ChangeSet(new_build=build, submit_request=request))
            except BaseException as error:
                self._registry.live_builds.release(holder)
                if isinstance(error, Exception):
                    failure = write_failure(error, f"submit of build {build.build_id}")
                    if failure is not error:
                        raise failure from error
                raise
            rendered = render(build)  # before the actor runs: the caller sees it QUEUED
            self._registry.spawn(build, reserved=True)
            return rendered

    async def get(self, build_id: str, render: Callable[[Build], T]) -> T:
        submission.check_build_id(build_id)
        found = await self._route(build_id)
        if isinstance(found, BuildActor):
            try:
                result: T = await found.ask(cmd.Render(render=render))
                return result
            except ActorRetired:
                found = await self._stored(build_id)
        return render(found)

    async def list_builds(
        self, limit: int, before: str | None, pipeline: str | None
    ) -> list[Build]:
        submission.check_name_filter(pipeline or "", "pipeline", self._settings.limits)
        return await self._store.list_builds(limit, before, pipeline)

    async def _route(self, build_id: str) -> BuildActor | Build:
        """The build's actor here, or the build as the store has it (finished). Raises
        NOT_FOUND for no such build, UNAVAILABLE for one another server runs."""
        route = await self._router.route(build_id)
        if isinstance(route, LocalActor):
            return route.actor
        if isinstance(route, OwnedElsewhere):
            raise owned_elsewhere(build_id, route)
        if route.build is None:
            raise build_not_found(build_id)
        return route.build

    async def _stored(self, build_id: str) -> Build:
        """The build after its actor retired: finished, read from the store."""
        build = await self._store.get_build(build_id)
        if build is None:
            raise build_not_found(build_id)
        return build

    async def watch(
        self, build_id: str, render: Callable[[Build], T]
    ) -> tuple[T, AsyncIterator[WatchChange]]:
        """The build now, then its changes until it is terminal."""
        submission.check_build_id(build_id)
        found = await self._route(build_id)
        if isinstance(found, BuildActor):
            listener: asyncio.Queue[WatchChange | None] = asyncio.Queue()
            try:
                snapshot: T = await found.ask(cmd.Watch(render=render, listener=listener))
                return snapshot, self._stream_of(self.open_watches, listener, found)
            except ActorRetired:
                found = await self._stored(build_id)
        return render(found), _nothing()

    def _cancel_info(
        self, reason: str, force: bool, grace_period: float | None, requested_by: str
    ) -> CancelInfo:
        submission.check_reason(reason, self._settings.limits)
        submission.check_requester(requested_by, self._settings.limits)
        grace = self._settings.default_grace_period if grace_period is None else grace_period
        return CancelInfo(reason, requested_by, force, grace, self._clock())

    def begin_drain(self) -> None:
        """The server shuts down: refuse new submits and cancels from now on (the
        cancels already under way go on; `cancels_in_flight` says when they settled)."""
        self.draining = True
        self.cancel_streams.stop_accepting()

    def _refuse_if_draining(self) -> None:
        if self.draining:
            raise Unavailable("the server is shutting down; try again (another server)")

    async def cancel(
        self,
        build_id: str,
        reason: str,
        force: bool,
        grace_period: float | None,
        requested_by: str,
        may_cancel: MayCancel = None,
    ) -> AsyncIterator[CancelEvent]:
        """`_cancel`, refused while draining, counted in `cancels_in_flight`."""
        self._refuse_if_draining()
        with self.cancels_in_flight.track():
            return await self._cancel(
                build_id, reason, force, grace_period, requested_by, may_cancel
            )

    async def _cancel(
        self,
        build_id: str,
        reason: str,
        force: bool,
        grace_period: float | None,
        requested_by: str,
        may_cancel: MayCancel,
    ) -> AsyncIterator[CancelEvent]:
        """Apply the cancel, then return its events: ACCEPTED (already persisted),
        one per job as it stops, and the terminal one last. Raises before returning
        for a bad request, so the caller can answer with an error status.
        `may_cancel` raises PermissionDenied for a build the caller may not cancel."""
        received_at = time.perf_counter()
        submission.check_build_id(build_id)
        info = self._cancel_info(reason, force, grace_period, requested_by)
        self.cancel_streams.refuse_if_closing()
        found = await self._route(build_id)
        if isinstance(found, BuildActor):
            if may_cancel is not None:
                # Pipeline and submitter never change after submission: reading them
                # here, outside the actor's turn, cannot race with the actor.
                may_cancel(found.build)
            # Every event of the stream, the first one too, comes through `listener`;
            # the reply only says whether the actor took the cancel.
            listener: asyncio.Queue[CancelEvent | None] = asyncio.Queue()
            try:
                await found.ask(cmd.Cancel(info=info, listener=listener, received_at=received_at))
            except ActorRetired:
                found = await self._stored(build_id)
            except FailedPrecondition:
                metrics.CANCELS.labels(result="refused").inc()
                raise
            else:
                return self._stream_of(self.cancel_streams, listener, found)
        build = found
        if may_cancel is not None:
            may_cancel(build)
        if build.status is BuildStatus.CANCELED:
            metrics.CANCELS.labels(result="already_canceled").inc()
            return _one(finished_event(build))
        metrics.CANCELS.labels(result="refused").inc()
        raise build_already_finished(build_id, build.status.value)

    async def cancel_builds(
        self,
        selector: BuildSelector,
        reason: str,
        force: bool,
        grace_period: float | None,
        requested_by: str,
        may_cancel: MayCancel = None,
    ) -> AsyncIterator[CancelBuildsEvent]:
        """`_cancel_builds`, refused while draining, counted in `cancels_in_flight`
        until every selected actor answered (the events come after)."""
        self._refuse_if_draining()
        check_selector(selector, self._settings.limits)
        with self.cancels_in_flight.track():
            return await self._cancel_builds(
                selector, reason, force, grace_period, requested_by, may_cancel
            )

    async def _cancel_builds(
        self,
        selector: BuildSelector,
        reason: str,
        force: bool,
        grace_period: float | None,
        requested_by: str,
        may_cancel: MayCancel,
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
        actors, finished = await select_builds(selector, self._router, self._registry, summary)
        if may_cancel is not None:
            for build in [actor.build for actor in actors] + finished:
                may_cancel(build)
        return run_cancel_builds(
            self._store,
            self.cancel_streams,
            self.cancels_in_flight,
            actors,
            finished,
            info,
            summary,
            received_at,
        )

    @staticmethod
    async def _stream_of(
        streams: CancelStreams, listener: asyncio.Queue[Any], actor: BuildActor
    ) -> AsyncIterator[Any]:
        """A watch's changes, or one Cancel's events until its terminal one; UNAVAILABLE
        if the server stops first (a cancel is committed and resumes after the restart)."""
        try:
            async for item in streams.follow(listener):
                yield item
        finally:
            actor.tell(cmd.Unsubscribe(listener=listener))

    # ---- agents ----

    def agents(self) -> list[AgentView]:
        return agent_views(self._hub)

    async def agent_connected(self, session: AgentSession, hello: AgentHello) -> None:
        """Apply results re-sent from an earlier stream, then reconcile what the agent
        runs with what the server expects of it, after recovery (no actor: no job)."""
        await self.recovered.wait()
        held = self._hub.held(session.agent_id)  # what the Hello answers for (reconciliation.py)
        self._hub.connect(session)
        await self.reports.apply_earlier(session, hello.earlier_reports)
        await reconcile_hello(
            session, hello.running, held, self._hub, self._registry, self._settings, self._clock()
        )

    def agent_report(
        self, session: AgentSession, report: AgentReport
    ) -> asyncio.Future[Any] | None:
        """Queue a report at its build's actor; the future says if it was applied.
        None: the build is not live (finished or unknown), so nothing of it may change;
        `reports.settle_not_live` then says whether the agent may forget it."""
        return self.reports.submit(session, report)

    def check_agent_instance(self, session: AgentSession) -> None:
        """Refuse (ALREADY_EXISTS) a stream of a second process under a live agent id."""
        self._hub.check_instance(session)

    def agent_disconnected(self, session: AgentSession) -> None:
        self._hub.disconnect(session)


async def _one(first: T) -> AsyncIterator[T]:
    yield first


async def _nothing() -> AsyncIterator[Any]:
    return
    yield
