"""The BuildRouter of a replica: a build is live here (its actor), finished (the
store's copy), or live in the replica that holds its shard's lease (OwnedElsewhere).

It also picks the ids of new builds: a build submitted here gets an id whose shard
this replica owns, so a Submit never has to travel (the owner of a new build is the
replica that took the call). A build of a concurrency group gets an id in the
group's own shard, so every build of a group has one owner, which keeps the group's
order in memory as with one server."""

from __future__ import annotations

from buildcontrol_server.actors.build_actor import BuildActor
from buildcontrol_server.actors.registry import Registry
from buildcontrol_server.actors.router import Finished, LocalActor, OwnedElsewhere, Route
from buildcontrol_server.domain import submission
from buildcontrol_server.domain.errors import Unavailable
from buildcontrol_server.replicas.leases import ShardLeases, shard_of

# Random ids drawn before giving up on finding one in a shard held here (each draw
# lands in a held shard with probability held / N).
ID_DRAWS = 10_000


class ReplicaRouter:
    def __init__(self, registry: Registry, leases: ShardLeases) -> None:
        self._registry = registry
        self._leases = leases

    def local(self, build_id: str) -> BuildActor | None:
        return self._registry.local(build_id)

    def retired(self, actor: BuildActor) -> None:
        self._registry.retired(actor)

    async def route(self, build_id: str) -> Route:
        actor = self._registry.local(build_id)
        if actor is not None:
            return LocalActor(actor)
        build = await self._registry.context.store.get_build(build_id)
        if build is None or build.terminal:
            return Finished(build)
        # The read let other work run: a takeover may have recovered the build here
        # meanwhile, so "no actor" from before the read says nothing now.
        actor = self._registry.local(build_id)
        if actor is not None:
            return LocalActor(actor)
        # No read of the shard's owner: its name only words the error of a caller that
        # does not forward (a replica's control forwards every call it gets here), and
        # reading it cost a round trip on every forwarded Cancel, Get and Watch.
        shard = self._leases.shard_of(build_id)
        return OwnedElsewhere(f"(the replica holding shard {shard})", build)

    def new_build_id(self, now: float, concurrency_group: str) -> str:
        """An id in a shard owned here (the group's shard for a group's build)."""
        leases = self._leases
        if not leases.held():
            raise Unavailable("this replica owns no shard of builds yet; try again or elsewhere")
        wanted = -1
        if concurrency_group:
            wanted = shard_of(concurrency_group, leases.shards)
            if wanted not in leases.held():
                raise Unavailable(
                    f"concurrency group {concurrency_group!r} belongs to another replica"
                    f" (shard {wanted}); submit it there"
                )
        for _ in range(ID_DRAWS):
            build_id = submission.new_build_id(now)
            shard = leases.shard_of(build_id)
            if (shard == wanted) if concurrency_group else leases.owns(build_id):
                return build_id
        raise Unavailable("this replica owns no shard of builds yet; try again or elsewhere")
