"""The registry of live build actors, their concurrency groups, and the server's
recovery of them on start. It is the local BuildRouter (router.py): a build without
an actor here is finished, and the store says how."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from buildcontrol_server import metrics
from buildcontrol_server.actors import commands as cmd
from buildcontrol_server.actors.build_actor import BuildActor
from buildcontrol_server.actors.cancel_requests import MayCancel, server_cancel
from buildcontrol_server.actors.concurrency import ConcurrencyGroups
from buildcontrol_server.actors.context import ActorContext
from buildcontrol_server.actors.router import BuildRouter, Finished, LocalActor, Route
from buildcontrol_server.agents.events import AgentEvent, AgentLost
from buildcontrol_server.domain import submission
from buildcontrol_server.domain.errors import PermissionDenied
from buildcontrol_server.domain.model import Build
from buildcontrol_server.security import fair_limits
from buildcontrol_server.security.fair_limits import HeldCounts

log = logging.getLogger(__name__)

# The cancel-policy check of a superseding build's submitter, made again on recovery
# (security/caller.py builds it from the build alone); None: authentication off.
SupersedeCheck = Callable[[Build], MayCancel]


@dataclass(frozen=True)
class Superseded:
    """What a cancel_in_progress submit did to the older builds of its group."""

    # Told to cancel (reason "superseded by <id>").
    cancelled: tuple[str, ...] = ()
    # Left alone: the submitter may not cancel them; the new build waits for them.
    kept: tuple[str, ...] = ()


class Registry:
    def __init__(self, context: ActorContext) -> None:
        self.context = context
        self._actors: dict[str, BuildActor] = {}
        # Where builds live for the control: this registry, or a replica's router
        # around it (replicas/router.py), set before the control is made.
        self.router: BuildRouter = self
        # Whether this process owns a build (a replica owns those of its shards).
        self.owns: Callable[[str], bool] = lambda build_id: True
        # Builds being written by their submission, whose actor does not run yet.
        self._starting: set[str] = set()
        self.groups = ConcurrencyGroups()
        # Live builds per submitter (--max-live-builds-per-principal).
        maximum = context.settings.max_live_builds_per_principal
        self.live_builds = HeldCounts(fair_limits.limit(fair_limits.LIVE_BUILDS, maximum))

    def spawn(self, build: Build, reserved: bool = False) -> BuildActor:
        """Start the actor of a build that is not terminal; a build of a concurrency
        group is scheduled only when its turn comes. `reserved`: the submit already
        counted it under its submitter's live builds."""
        if not reserved:
            self.live_builds.add(fair_limits.holder_of(build.submitted_by))
        actor = BuildActor(build, self.context, router=self)
        self._actors[build.build_id] = actor
        group = build.concurrency_group
        admitted = True if group is None else self.groups.join(group, build.build_id)
        actor.start(admitted=admitted)
        metrics.LIVE_ACTORS.set(len(self._actors))
        return actor

    @contextmanager
    def starting(self, build_id: str) -> Iterator[None]:
        """While the block runs, `build_id` counts as having its actor (it is being
        written and spawned)."""
        self._starting.add(build_id)
        try:
            yield
        finally:
            self._starting.discard(build_id)

    def accounted_for(self, build_id: str) -> bool:
        """The build has a live actor, or is about to (see `starting`)."""
        return build_id in self._actors or build_id in self._starting

    def get(self, build_id: str) -> BuildActor | None:
        return self._actors.get(build_id)

    # ---- the BuildRouter port ----

    def local(self, build_id: str) -> BuildActor | None:
        return self._actors.get(build_id)

    async def route(self, build_id: str) -> Route:
        actor = self._actors.get(build_id)
        if actor is not None:
            return LocalActor(actor)
        return Finished(await self.context.store.get_build(build_id))

    def new_build_id(self, now: float, concurrency_group: str) -> str:
        return submission.new_build_id(now)

    def live(self) -> list[BuildActor]:
        return list(self._actors.values())

    def retired(self, actor: BuildActor) -> None:
        if self._actors.get(actor.build_id) is not actor:
            return
        del self._actors[actor.build_id]
        self.live_builds.release(fair_limits.holder_of(actor.build.submitted_by))
        metrics.LIVE_ACTORS.set(len(self._actors))
        group = actor.build.concurrency_group
        if group is not None and actor.build.terminal:
            following = self.groups.leave(group, actor.build_id)
            if following is not None and following in self._actors:
                self._actors[following].tell(cmd.Admit())

    def supersede(self, build: Build, may_cancel: MayCancel) -> Superseded:
        """`build` was submitted with cancel_in_progress: its submitter cancels the
        older builds of its group, with reason "superseded by <id>", as far as the
        cancel policy lets them (`may_cancel`). A build they may not cancel is left
        alone: the new build waits for it like any other member of the group."""
        assert build.concurrency_group is not None
        info = server_cancel(
            f"superseded by {build.build_id}",
            self.context.settings,
            self.context.clock(),
            requested_by=build.submitted_by or "server",  # None: authentication off
        )
        cancelled: list[str] = []
        kept: list[str] = []
        for older in self.groups.older_than(build.concurrency_group, build.build_id):
            actor = self._actors.get(older)
            if actor is None:
                continue
            try:
                if may_cancel is not None:
                    # Pipeline and submitter never change: safe outside the actor's turn.
                    may_cancel(actor.build)
            except PermissionDenied as refused:
                log.info("build %s does not supersede %s: %s", build.build_id, older, refused)
                metrics.SUPERSEDES_REFUSED.inc()
                kept.append(older)
                continue
            actor.tell(
                cmd.Cancel(info=info, listener=asyncio.Queue(), received_at=time.perf_counter())
            )
            cancelled.append(older)
        return Superseded(tuple(cancelled), tuple(kept))

    def __len__(self) -> int:
        return len(self._actors)

    def max_inbox_depth(self) -> int:
        return max((actor.depth() for actor in self._actors.values()), default=0)

    def agent_event(self, event: AgentEvent) -> None:
        """An agent is lost (AgentLost: from the hub on one server, from
        replicas/away_agents.py once no replica holds it): counted, and each build
        that had a job there is told."""
        if not isinstance(event, AgentLost):
            return
        metrics.AGENTS_LOST.inc()
        log.warning("agent %s lost with %d job(s) held", event.agent_id, len(event.jobs))
        for build_id in set(event.jobs.values()):
            actor = self._actors.get(build_id)
            if actor is not None:
                actor.tell(cmd.AgentLost(agent_id=event.agent_id))

    def recover(self, builds: list[Build], supersede_check: SupersedeCheck | None = None) -> None:
        """Give every unfinished build loaded from the store its actor again, oldest
        first (so concurrency groups keep their order). A superseding build's cancels
        obey the same cancel policy as at submit (`supersede_check`)."""
        link = self.context.link
        for build in sorted(builds, key=lambda b: b.build_id):
            for job in build.jobs():
                if job.on_agent and job.agent_id is not None:
                    link.hold(job.agent_id, job.job_id, build.build_id)
            self.spawn(build).recovered()
        # A superseding build whose cancels did not reach the disk before a crash.
        for build in builds:
            if build.cancel_in_progress and build.concurrency_group is not None:
                self.supersede(build, supersede_check(build) if supersede_check else None)
        link.recovered()
        log.info("recovered %d unfinished build(s)", len(builds))

    async def shutdown(self) -> None:
        """Let every actor finish the commands it has, then stop it."""
        actors = list(self._actors.values())
        for actor in actors:
            actor.tell(cmd.Shutdown())
        await asyncio.gather(*(actor.join() for actor in actors), return_exceptions=True)
