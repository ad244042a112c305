"""The BuildRouter port: how a command reaches the actor that owns a build.

A build is live in exactly one actor, or finished (then only the store knows it). With
one server process the local registry is the whole answer; with several replicas a
build may live in another process, and the router says so instead of letting "no
actor here" pass for "finished" (docs/architecture.md: where a replica plugs in).

The local implementation (actors/registry.py) never answers OwnedElsewhere; a
replica's (replicas/router.py) does for builds of shards another replica leases."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from buildcontrol_server.domain.errors import Unavailable
from buildcontrol_server.domain.model import Build

if TYPE_CHECKING:
    from buildcontrol_server.actors.build_actor import BuildActor


@dataclass(frozen=True)
class LocalActor:
    """The build is live here: ask its actor."""

    actor: BuildActor


@dataclass(frozen=True)
class Finished:
    """No actor runs the build: `build` is what the store has (None: no such build)."""

    build: Build | None


@dataclass(frozen=True)
class OwnedElsewhere:
    """The build is live in another server process, `owner`; `build` is the store's
    copy the router read to know it is unfinished (a forwarding caller starts from it
    instead of reading the build again)."""

    owner: str
    build: Build


Route = LocalActor | Finished | OwnedElsewhere


class BuildRouter(Protocol):
    async def route(self, build_id: str) -> Route:
        """Where `build_id` lives now (reads the store when no actor here has it)."""
        ...

    def local(self, build_id: str) -> BuildActor | None:
        """The actor of `build_id` in this process, if any (no store read: for paths
        that must not wait, such as an agent's report)."""
        ...

    def retired(self, actor: BuildActor) -> None:
        """The event an actor sends when its loop has ended for good."""
        ...

    def new_build_id(self, now: float, concurrency_group: str) -> str:
        """The id of a build submitted now: one this process will own (a replica
        picks one in a shard it holds, replicas/router.py)."""
        ...


class LiveElsewhere(Unavailable):
    """A build another replica owns (a replica's control forwards the call instead)."""

    def __init__(self, build_id: str, owner: str, build: Build) -> None:
        super().__init__(f"build {build_id} is live on server {owner}; ask that server")
        self.build_id = build_id
        self.build = build


def owned_elsewhere(build_id: str, route: OwnedElsewhere) -> Unavailable:
    """What a caller gets for a build another replica owns: retry there."""
    return LiveElsewhere(build_id, route.owner, route.build)
