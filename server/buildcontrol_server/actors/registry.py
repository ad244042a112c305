"""The registry of live build actors, their concurrency groups, and the server's
recovery of them on start."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

from buildcontrol_server import metrics
from buildcontrol_server.actors import commands as cmd
from buildcontrol_server.actors.build_actor import BuildActor
from buildcontrol_server.actors.concurrency import ConcurrencyGroups
from buildcontrol_server.actors.context import ActorContext, server_cancel
from buildcontrol_server.domain.model import Build

log = logging.getLogger(__name__)


class Registry:
    def __init__(self) -> None:
        self._actors: dict[str, BuildActor] = {}
        # Builds being written by their submission, whose actor does not run yet.
        self._starting: set[str] = set()
        self.groups = ConcurrencyGroups()
        self.context: ActorContext | None = None

    def bind(self, context: ActorContext) -> None:
        self.context = context

    def spawn(self, build: Build) -> BuildActor:
        """Start the actor of a build that is not terminal; a build of a concurrency
        group is scheduled only when its turn comes."""
        assert self.context is not None, "bind() the registry first"
        actor = BuildActor(build, self.context)
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

    def live(self) -> list[BuildActor]:
        return list(self._actors.values())

    def retire(self, actor: BuildActor) -> None:
        if self._actors.get(actor.build_id) is not actor:
            return
        del self._actors[actor.build_id]
        metrics.LIVE_ACTORS.set(len(self._actors))
        group = actor.build.concurrency_group
        if group is not None and actor.build.terminal:
            following = self.groups.leave(group, actor.build_id)
            if following is not None and following in self._actors:
                self._actors[following].tell(cmd.Admit())

    def supersede(self, build: Build) -> None:
        """`build` was submitted with cancel_in_progress: cancel the older builds of
        its group, with reason "superseded by <id>"."""
        assert self.context is not None and build.concurrency_group is not None
        info = server_cancel(
            f"superseded by {build.build_id}", self.context.settings, self.context.clock()
        )
        for older in self.groups.older_than(build.concurrency_group, build.build_id):
            actor = self._actors.get(older)
            if actor is not None:
                actor.tell(
                    cmd.Cancel(info=info, listener=asyncio.Queue(), received_at=time.perf_counter())
                )

    def __len__(self) -> int:
        return len(self._actors)

    def max_inbox_depth(self) -> int:
        return max((actor.depth() for actor in self._actors.values()), default=0)

    def agent_lost(self, agent_id: str, jobs: dict[str, str]) -> None:
        """The hub gave up on `agent_id`: each build that had a job there is told."""
        for build_id in set(jobs.values()):
            actor = self._actors.get(build_id)
            if actor is not None:
                actor.tell(cmd.AgentLost(agent_id=agent_id))

    def recover(self, builds: list[Build]) -> None:
        """Give every unfinished build loaded from the store its actor again, oldest
        first (so concurrency groups keep their order)."""
        assert self.context is not None
        hub = self.context.hub
        for build in sorted(builds, key=lambda b: b.build_id):
            for job in build.jobs():
                if job.on_agent and job.agent_id is not None:
                    hub.hold(job.agent_id, job.job_id, build.build_id)
            self.spawn(build).recovered()
        # A superseding build whose cancels did not reach the disk before a crash.
        for build in builds:
            if build.cancel_in_progress and build.concurrency_group is not None:
                self.supersede(build)
        hub.start_lost_timers()
        log.info("recovered %d unfinished build(s)", len(builds))

    async def shutdown(self) -> None:
        """Let every actor finish the commands it has, then stop it."""
        actors = list(self._actors.values())
        for actor in actors:
            actor.tell(cmd.Shutdown())
        await asyncio.gather(*(actor.join() for actor in actors), return_exceptions=True)
