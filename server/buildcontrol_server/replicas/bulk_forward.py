"""CancelBuilds on a replica, when builds it names are owned by other replicas.

The builds owned here are cancelled by the one-server code (their CANCELING writes
batched, actors/bulk_cancel.py); each build owned elsewhere gets its cancel as an
inbox row for its owner (inbox.py) and is followed through the change feed, as a
forwarded Cancel is (control.py). The caller sees one stream, as from one server:
accepted once every build's cancel is committed here or taken by its owner, each
build's end as it comes, then the summary of them all.

By pipeline or concurrency group, the builds elsewhere are the unfinished ones of the
store that this replica does not own (read once, complete: a call of its own, not the
hot path of one Cancel).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from buildcontrol_server import metrics
from buildcontrol_server.actors.bulk_cancel import (
    CancelBuildsAccepted,
    CancelBuildsEvent,
    CancelBuildsSummary,
)
from buildcontrol_server.actors.router import BuildRouter, OwnedElsewhere
from buildcontrol_server.actors.selection import BuildSelector
from buildcontrol_server.domain.errors import Unavailable
from buildcontrol_server.domain.events import CancelFinishedEvent, finished_event
from buildcontrol_server.domain.model import Build, CancelInfo
from buildcontrol_server.domain.states import BuildStatus
from buildcontrol_server.replicas.inbox import BuildInbox
from buildcontrol_server.store.base import BuildStore

# The build once a condition holds for its committed state, waiting at most so long
# (None: no bound): ReplicaControl._until.
Until = Callable[[str, Callable[[Build], bool], float | None], Awaitable[Build]]


async def builds_elsewhere(
    selector: BuildSelector, router: BuildRouter, store: BuildStore, owns: Callable[[str], bool]
) -> list[Build]:
    """The unfinished builds the selector names that another replica owns."""
    if selector.build_ids is not None:
        found = []
        for build_id in dict.fromkeys(selector.build_ids):
            if isinstance(await router.route(build_id), OwnedElsewhere):
                build = await store.get_build(build_id)
                if build is not None:
                    found.append(build)
        return found
    if not (selector.pipeline or selector.concurrency_group):
        return []
    return [
        build
        for build in await store.load_unfinished()
        if _named(selector, build) and not owns(build.build_id)
    ]


def _named(selector: BuildSelector, build: Build) -> bool:
    """`build` is of the selector's pipeline (or concurrency group)."""
    if selector.pipeline:
        return build.pipeline == selector.pipeline
    return build.concurrency_group == selector.concurrency_group


@dataclass
class _Taken:
    """The builds elsewhere once their owners took the cancel."""

    open: list[str]  # not finished yet: their end is streamed when it comes
    ended: list[CancelFinishedEvent]  # finished already (a queued build is at once)
    committed: int = 0
    joined: int = 0
    not_cancelable: int = 0


def _sorted_out(builds: list[Build], info: CancelInfo) -> _Taken:
    taken = _Taken([], [])
    for build in builds:
        if build.cancel is None:  # it had ended before the cancel came
            taken.not_cancelable += 1
            continue
        if (build.cancel.requested_at, build.cancel.requested_by) == (
            info.requested_at,
            info.requested_by,
        ):
            taken.committed += 1
        else:
            taken.joined += 1
        if build.terminal:
            taken.ended.append(finished_event(build))
        else:
            taken.open.append(build.build_id)
    return taken


@dataclass(frozen=True)
class Forwarding:
    """The builds of a CancelBuilds owned elsewhere, and how their cancels travel."""

    elsewhere: list[Build]
    info: CancelInfo
    inbox: BuildInbox
    until: Until
    accept_timeout: float


async def cancel_builds_across(
    local: AsyncIterator[CancelBuildsEvent], forwarding: Forwarding
) -> AsyncIterator[CancelBuildsEvent]:
    """One CancelBuilds stream of the builds of `local` (this replica's part, not
    started yet) and of those elsewhere."""
    try:
        async for event in _across(local, forwarding):
            yield event
    finally:
        if isinstance(local, AsyncGenerator):  # its stream's bookkeeping, if left half-read
            await local.aclose()


async def _across(
    local: AsyncIterator[CancelBuildsEvent], forwarding: Forwarding
) -> AsyncIterator[CancelBuildsEvent]:
    elsewhere, info, until = forwarding.elsewhere, forwarding.info, forwarding.until
    for build in elsewhere:
        await forwarding.inbox.forward_cancel(build.build_id, info)
        metrics.CANCELS_FORWARDED.inc()
    here = await anext(local)
    assert isinstance(here, CancelBuildsAccepted)
    try:
        copies = await asyncio.gather(
            *(
                until(
                    b.build_id,
                    lambda c: c.cancel is not None or c.terminal,
                    forwarding.accept_timeout,
                )
                for b in elsewhere
            )
        )
    except TimeoutError:
        raise Unavailable(
            "the owners of some builds have not taken their cancels yet; they stay queued"
            " for them (asking again is safe)"
        ) from None
    taken = _sorted_out(list(copies), info)
    yield CancelBuildsAccepted(
        here.matched + len(elsewhere),
        here.committed + taken.committed,
        here.already_canceling + taken.joined,
        here.not_cancelable + taken.not_cancelable,
        here.not_found,
    )
    summary = CancelBuildsSummary(
        matched=len(elsewhere), already_canceling=taken.joined, not_cancelable=taken.not_cancelable
    )
    remote = {build.build_id for build in elsewhere}
    async for event in _ends(local, taken, until):
        if isinstance(event, CancelBuildsSummary):
            yield _added(event, summary)
            return
        if isinstance(event, CancelFinishedEvent) and event.build_id in remote:
            if event.status is BuildStatus.CANCELED:
                summary.canceled += 1
            else:
                summary.not_cancelable += 1
        yield event


async def _ends(
    local: AsyncIterator[CancelBuildsEvent], taken: _Taken, until: Until
) -> AsyncIterator[CancelBuildsEvent]:
    """The builds' ends as they come, from here and from elsewhere; the local
    stream's summary last."""
    queue: asyncio.Queue[CancelBuildsEvent | Exception] = asyncio.Queue()

    async def follow(build_id: str) -> None:
        try:
            queue.put_nowait(finished_event(await until(build_id, lambda b: b.terminal, None)))
        except Exception as error:
            queue.put_nowait(error)

    async def pump_local() -> None:
        try:
            async for event in local:
                queue.put_nowait(event)
        except Exception as error:
            queue.put_nowait(error)

    tasks = [asyncio.ensure_future(pump_local())]
    tasks += [asyncio.ensure_future(follow(build_id)) for build_id in taken.open]
    try:
        for ended in taken.ended:
            yield ended
        left = len(tasks)  # each follower's end, and the local stream's summary
        summary: CancelBuildsSummary | None = None
        while left:
            item = await queue.get()
            if isinstance(item, Exception):
                raise item
            if isinstance(item, CancelBuildsSummary):
                summary, left = item, left - 1
                continue
            if isinstance(item, CancelFinishedEvent) and item.build_id in taken.open:
                left -= 1
            yield item
        assert summary is not None
        yield summary
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _added(local: CancelBuildsSummary, elsewhere: CancelBuildsSummary) -> CancelBuildsSummary:
    return CancelBuildsSummary(
        local.matched + elsewhere.matched,
        local.canceled + elsewhere.canceled,
        local.already_canceling + elsewhere.already_canceling,
        local.not_cancelable + elsewhere.not_cancelable,
        local.not_found + elsewhere.not_found,
    )
