"""The registry of live build actors, and the server's recovery of them on start."""

from __future__ import annotations

import asyncio
import logging

from buildcontrol_server import metrics
from buildcontrol_server.actors import commands as cmd
from buildcontrol_server.actors.build_actor import ActorContext, BuildActor
from buildcontrol_server.domain import lifecycle
from buildcontrol_server.domain.model import Build
from buildcontrol_server.domain.states import BuildStatus

log = logging.getLogger(__name__)


class Registry:
    def __init__(self) -> None:
        self._actors: dict[str, BuildActor] = {}
        self.context: ActorContext | None = None

    def bind(self, context: ActorContext) -> None:
        self.context = context

    def spawn(self, build: Build) -> BuildActor:
        assert self.context is not None, "bind() the registry first"
        actor = BuildActor(build, self.context)
        self._actors[build.build_id] = actor
        actor.start()
        metrics.LIVE_ACTORS.set(len(self._actors))
        return actor

    def get(self, build_id: str) -> BuildActor | None:
        return self._actors.get(build_id)

    def retire(self, actor: BuildActor) -> None:
        if self._actors.get(actor.build_id) is actor:
            del self._actors[actor.build_id]
            metrics.LIVE_ACTORS.set(len(self._actors))

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
        """Give every unfinished build loaded from the store its actor again."""
        assert self.context is not None
        hub, scheduler = self.context.hub, self.context.scheduler
        for build in builds:
            actor = self.spawn(build)
            for job in build.jobs():
                if job.on_agent and job.agent_id is not None:
                    hub.hold(job.agent_id, job.job_id, build.build_id)
            if build.status is BuildStatus.CANCELING:
                actor.arm_recovered_cancel()
            else:
                scheduler.enqueue(lifecycle.ready_jobs(build))
        hub.start_lost_timers()
        log.info("recovered %d unfinished build(s)", len(builds))

    async def shutdown(self) -> None:
        """Let every actor finish the commands it has, then stop it."""
        actors = list(self._actors.values())
        for actor in actors:
            actor.tell(cmd.Shutdown())
        await asyncio.gather(*(actor.join() for actor in actors), return_exceptions=True)
