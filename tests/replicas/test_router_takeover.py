"""A replica's router while it takes a shard over: a build whose actor the takeover
starts while the router reads the build from the store goes to that actor. Before, the
router answered "finished" with the QUEUED copy it had read, and a cancel was refused
with "build ... already QUEUED" (seen in CI right after a SIGTERM handover).

The leases are the real ShardLeases; the registry and its store are stand-ins with a
gate in the read, the one way to hold the router inside that await."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, cast

from buildcontrol_server.actors.registry import Registry
from buildcontrol_server.actors.router import Finished, LocalActor, OwnedElsewhere
from buildcontrol_server.domain.model import Build
from buildcontrol_server.domain.states import BuildStatus
from buildcontrol_server.replicas.leases import ShardLeases
from buildcontrol_server.replicas.router import ReplicaRouter

from tests.replicas.lease_replicas import SHARDS, build_in

WAIT = 10.0


class GatedRegistry:
    """What the router asks of the registry: its live actors and the store's copy,
    whose read waits at `gate` once it has read."""

    def __init__(self, build: Build) -> None:
        self.actors: dict[str, Any] = {}
        self.reading = asyncio.Event()
        self.gate = asyncio.Event()
        self._build = build
        self.context = SimpleNamespace(store=SimpleNamespace(get_build=self._get_build))

    def local(self, build_id: str) -> Any:
        return self.actors.get(build_id)

    async def _get_build(self, build_id: str) -> Build | None:
        copy = self._build if build_id == self._build.build_id else None
        self.reading.set()
        await self.gate.wait()
        return copy


class HeldRecovery:
    """A LeaseListener whose recovery waits until the test lets it spawn the actor."""

    def __init__(self, registry: GatedRegistry, build: Build) -> None:
        self.started = asyncio.Event()
        self.finish = asyncio.Event()
        self._registry = registry
        self._build = build

    async def gained(self, shards: set[int]) -> None:
        self.started.set()
        await self.finish.wait()
        self._registry.actors[self._build.build_id] = SimpleNamespace(build_id=self._build.build_id)

    async def releasing(self, shards: set[int]) -> None:
        return None

    async def lost(self, shards: set[int]) -> None:
        return None


async def test_a_build_recovered_while_the_router_reads_it_goes_to_its_actor() -> None:
    build = build_in({0})  # QUEUED
    leases = ShardLeases(SHARDS, 4.0, "here")
    registry = GatedRegistry(build)
    recovery = HeldRecovery(registry, build)
    leases.subscribe(recovery)
    router = ReplicaRouter(cast(Registry, registry), leases)
    async with asyncio.timeout(WAIT):
        # Shard 0 taken: recovering, so not yet owned, and no actor yet.
        gaining = asyncio.create_task(leases._gain({0: 1}))
        await recovery.started.wait()
        assert not leases.owns(build.build_id)
        routing = asyncio.create_task(router.route(build.build_id))
        await registry.reading.wait()  # past the look for an actor, inside the read
        recovery.finish.set()
        await gaining  # recovered: the shard is served here and its actor is live
        assert leases.owns(build.build_id)
        registry.gate.set()
        route = await routing
    assert isinstance(route, LocalActor), route
    assert route.actor is registry.actors[build.build_id]


async def test_a_finished_build_is_answered_from_the_store() -> None:
    build = build_in({0})
    build.status = BuildStatus.SUCCEEDED
    leases = ShardLeases(SHARDS, 4.0, "here")
    registry = GatedRegistry(build)
    registry.gate.set()
    router = ReplicaRouter(cast(Registry, registry), leases)
    route = await asyncio.wait_for(router.route(build.build_id), WAIT)
    assert route == Finished(build)


class CountedRegistry(GatedRegistry):
    """A GatedRegistry whose store counts its reads."""

    def __init__(self, build: Build) -> None:
        super().__init__(build)
        self.reads = 0
        self.gate.set()
        self.context.store.get_build = self._counted

    async def _counted(self, build_id: str) -> Build | None:
        self.reads += 1
        return await self._get_build(build_id)


async def test_a_build_owned_elsewhere_costs_one_read_and_comes_with_its_copy() -> None:
    # The leases never started (no connections): a query of the shard's owner, as
    # the router made before, fails here; the copy saves the forwarder its own read.
    build = build_in({0})  # QUEUED, in a shard this replica does not hold
    registry = CountedRegistry(build)
    router = ReplicaRouter(cast(Registry, registry), ShardLeases(SHARDS, 4.0, "here"))
    route = await asyncio.wait_for(router.route(build.build_id), WAIT)
    assert isinstance(route, OwnedElsewhere), route
    assert route.build is build
    assert registry.reads == 1
