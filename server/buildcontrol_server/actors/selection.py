"""Which builds a CancelBuilds call names: by ids (live ones from their actors,
finished ones from the store), by pipeline or by concurrency group (live ones)."""

from __future__ import annotations

from dataclasses import dataclass

from buildcontrol_server.actors.build_actor import BuildActor
from buildcontrol_server.actors.bulk_cancel import CancelBuildsSummary
from buildcontrol_server.actors.registry import Registry
from buildcontrol_server.actors.router import (
    BuildRouter,
    LocalActor,
    OwnedElsewhere,
    owned_elsewhere,
)
from buildcontrol_server.domain import submission
from buildcontrol_server.domain.errors import InvalidArgument
from buildcontrol_server.domain.model import Build

MAX_BUILD_IDS = 10_000


@dataclass(frozen=True)
class BuildSelector:
    """Which builds CancelBuilds cancels: exactly one of these is set."""

    build_ids: list[str] | None = None
    pipeline: str = ""
    concurrency_group: str = ""


def check_selector(selector: BuildSelector, limits: submission.Limits) -> None:
    """Its pipeline or concurrency group as a name, before anything is read with it
    (a replica reads the other replicas' builds of it first)."""
    submission.check_name_filter(selector.pipeline, "pipeline", limits)
    submission.check_name_filter(selector.concurrency_group, "concurrency_group", limits)


async def select_builds(
    selector: BuildSelector, router: BuildRouter, registry: Registry, summary: CancelBuildsSummary
) -> tuple[list[BuildActor], list[Build]]:
    """Live actors to cancel, and finished builds named by id (answered from disk)."""
    if selector.build_ids is not None:
        if len(selector.build_ids) > MAX_BUILD_IDS:
            raise InvalidArgument("ids.build_ids", f"more than {MAX_BUILD_IDS}")
        actors, finished = [], []
        for position, build_id in enumerate(dict.fromkeys(selector.build_ids)):
            submission.check_build_id(build_id, f"ids.build_ids[{position}]")
            route = await router.route(build_id)
            if isinstance(route, LocalActor):
                actors.append(route.actor)
            elif isinstance(route, OwnedElsewhere):
                raise owned_elsewhere(build_id, route)
            elif route.build is not None:
                finished.append(route.build)
            else:
                summary.not_found += 1
        summary.matched = len(actors) + len(finished)
        return actors, finished
    if selector.pipeline:
        actors = [a for a in registry.live() if a.build.pipeline == selector.pipeline]
    elif selector.concurrency_group:
        group = selector.concurrency_group
        actors = [a for a in registry.live() if a.build.concurrency_group == group]
    else:
        raise InvalidArgument("selector", "give ids, a pipeline or a concurrency_group")
    summary.matched = len(actors)
    return actors, []
