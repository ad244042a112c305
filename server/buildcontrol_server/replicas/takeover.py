"""What a replica does with the builds of a shard when its lease changes hands:
recover them with the server's own recovery code when it takes the shard, stop their
actors when it hands the shard back or loses it."""

from __future__ import annotations

import asyncio
import logging

from buildcontrol_server.actors import commands as cmd
from buildcontrol_server.actors.build_actor import BuildActor
from buildcontrol_server.actors.registry import Registry, SupersedeCheck
from buildcontrol_server.agents.hub import AgentHub
from buildcontrol_server.domain.agent_commands import DrainCommand
from buildcontrol_server.replicas.leases import ShardLeases
from buildcontrol_server.store.base import BuildStore

log = logging.getLogger(__name__)


class Takeover:
    """The LeaseListener of a replica (leases.py)."""

    def __init__(
        self,
        leases: ShardLeases,
        store: BuildStore,
        registry: Registry,
        hub: AgentHub,
        supersede_check: SupersedeCheck | None,
    ) -> None:
        self._hub = hub
        self._leases = leases
        self._store = store
        self._registry = registry
        self._supersede_check = supersede_check

    async def gained(self, shards: set[int]) -> None:
        """Every unfinished build of `shards` gets its actor here, as at a restart
        (actors/registry.py's recover: oldest first, agents' slots held)."""
        builds = [
            build
            for build in await self._store.load_unfinished()
            if self._leases.shard_of(build.build_id) in shards
            and not self._registry.accounted_for(build.build_id)
        ]
        self._registry.recover(builds, self._supersede_check)
        self._hello_again({build.build_id for build in builds})

    def _hello_again(self, build_ids: set[str]) -> None:
        """Agents connected here that run jobs of the builds just taken over said their
        Hello when another replica owned them (their claims were left alone then):
        they are drained, so they reconnect and say it again, now to the owner, which
        sends what they lack (a stop of a cancel that came before the takeover)."""
        for session in self._hub.sessions():
            if build_ids.isdisjoint(self._hub.held(session.agent_id).values()):
                continue
            log.info("agent %s: jobs of builds taken over; asked to reconnect", session.agent_id)
            session.send(DrainCommand("builds of your jobs moved to this server: Hello again"))
            session.close()

    async def releasing(self, shards: set[int]) -> None:
        await self._stop(shards)

    async def lost(self, shards: set[int]) -> None:
        await self._stop(shards)

    async def _stop(self, shards: set[int]) -> None:
        """Stop the actors of `shards` (what they have queued is written first, or
        refused by the fence) and free what they held here: agent slots, their place
        in a concurrency group (the group moves with its shard: router.py)."""
        actors = [
            actor
            for actor in self._registry.live()
            if self._leases.shard_of(actor.build_id) in shards
        ]
        for actor in actors:
            actor.tell(cmd.Shutdown())
        await asyncio.gather(*(actor.join() for actor in actors), return_exceptions=True)
        for actor in actors:
            self._forget(actor)
        if actors:
            log.info("stopped the actors of %d build(s) of shards handed on", len(actors))

    def _forget(self, actor: BuildActor) -> None:
        registry = self._registry
        registry.retired(actor)  # no-op if its loop already retired it
        registry.context.scheduler.drop_build(actor.build_id)  # no job of it is assigned here
        build = actor.build
        for job in build.jobs():
            if job.agent_id is not None:
                registry.context.link.release(job.agent_id, job.job_id)
        if build.concurrency_group is not None and not build.terminal:
            registry.groups.leave(build.concurrency_group, build.build_id)
