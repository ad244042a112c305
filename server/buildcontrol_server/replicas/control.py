"""The control of a replica: calls for a build another replica owns are answered
here anyway, through the database.

- Cancel: the cancel is left in the owner's inbox (inbox.py); the caller's stream
  follows the build through the change feed (a NOTIFY of committed changes, then a
  read): ACCEPTED once the owner committed the cancel (CANCELING), each job as a
  read finds it ended, then the terminal event, as the owner's stream says them.
- GetBuild: the committed state, read from the store; WatchBuild: that state, then
  the changes between the copies read after each NOTIFY of the build (build_diff.py).

- CancelBuilds: the builds owned here as on one server, the others' cancels through
  their owners' inboxes, in one stream (bulk_forward.py).

Everything else, and every build owned here, is the one-server control's."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any, TypeVar

from buildcontrol_server import metrics
from buildcontrol_server.actors.bulk_cancel import CancelBuildsEvent
from buildcontrol_server.actors.cancel_requests import MayCancel
from buildcontrol_server.actors.control import BuildControl
from buildcontrol_server.actors.registry import Registry
from buildcontrol_server.actors.router import LiveElsewhere
from buildcontrol_server.actors.selection import BuildSelector
from buildcontrol_server.agents.hub import AgentHub, AgentSession
from buildcontrol_server.domain.errors import Unavailable, build_already_finished, build_not_found
from buildcontrol_server.domain.events import (
    AgentHello,
    CancelAcceptedEvent,
    CancelEvent,
    WatchChange,
    finished_event,
)
from buildcontrol_server.domain.model import Build, CancelInfo
from buildcontrol_server.domain.states import JobStatus
from buildcontrol_server.replicas.agent_delivery import AgentDelivery
from buildcontrol_server.replicas.build_diff import (
    changes_between,
    ended_before_accepted,
    newly_ended,
)
from buildcontrol_server.replicas.bulk_forward import (
    Forwarding,
    builds_elsewhere,
    cancel_builds_across,
)
from buildcontrol_server.replicas.change_feed import ChangeFeed
from buildcontrol_server.replicas.inbox import BuildInbox
from buildcontrol_server.replicas.results import ReplicaReportIntake
from buildcontrol_server.store.base import BuildStore

T = TypeVar("T")

log = logging.getLogger(__name__)

# How long a forwarded cancel may wait for its owner to take it (a dead owner's
# shards are taken over within a lease, and the new owner drains the inbox).
ACCEPT_TIMEOUT = 30.0


class ReplicaControl(BuildControl):
    def __init__(
        self,
        store: BuildStore,
        registry: Registry,
        hub: AgentHub,
        *args: Any,
        inbox: BuildInbox,
        feed: ChangeFeed,
        delivery: AgentDelivery,
        **kwargs: Any,
    ) -> None:
        super().__init__(store, registry, hub, *args, **kwargs)
        self._inbox = inbox
        self._feed = feed
        # Results of builds owned elsewhere go to their owner (results.py).
        self.reports = ReplicaReportIntake(store, registry, hub, inbox)

    async def agent_connected(self, session: AgentSession, hello: AgentHello) -> None:
        """As on one server; then the owner of each other replica's build whose job this
        replica counts on the agent but the Hello does not claim (a restarted agent
        lost it) is told what the agent runs of that build, as its own Hello would."""
        await self.recovered.wait()
        before = self._hub.held(session.agent_id)
        await super().agent_connected(session, hello)
        held = self._hub.held(session.agent_id)  # less the results the Hello re-sent
        claimed = {claim.job_id for claim in hello.running}
        gone: dict[str, list[str]] = {}
        for job_id, build_id in before.items():
            if job_id in held and job_id not in claimed and not self._registry.owns(build_id):
                gone.setdefault(build_id, []).append(job_id)
        for build_id, job_ids in gone.items():
            await self._relay_hello(session.agent_id, build_id, job_ids, hello)

    async def _relay_hello(
        self, agent_id: str, build_id: str, job_ids: list[str], hello: AgentHello
    ) -> None:
        for job_id in job_ids:  # not on the agent: its slot is free
            self._hub.release(agent_id, job_id)
        running = sorted(c.job_id for c in hello.running if c.build_id == build_id)
        try:
            await self._inbox.forward_hello(agent_id, build_id, running)
        except Exception as error:  # then the job's timeout ends it on its owner
            log.warning("agent %s: Hello not relayed to build %s: %s", agent_id, build_id, error)

    async def get(self, build_id: str, render: Callable[[Build], T]) -> T:
        try:
            return await super().get(build_id, render)
        except LiveElsewhere as elsewhere:
            return render(elsewhere.build)  # the router's read: committed, and just now

    async def watch(
        self, build_id: str, render: Callable[[Build], T]
    ) -> tuple[T, AsyncIterator[WatchChange]]:
        try:
            return await super().watch(build_id, render)
        except LiveElsewhere as elsewhere:
            return render(elsewhere.build), self._changes_of(elsewhere.build)

    async def _changes_of(self, seen: Build) -> AsyncIterator[WatchChange]:
        """The changes of a build owned elsewhere, read after each NOTIFY of it."""
        with self._feed.following(seen.build_id) as changed:
            while not seen.terminal:
                await changed.wait()
                changed.clear()
                now = await self._read(seen.build_id)
                for change in changes_between(seen, now):
                    yield change
                seen = now

    async def _cancel(
        self,
        build_id: str,
        reason: str,
        force: bool,
        grace_period: float | None,
        requested_by: str,
        may_cancel: MayCancel,
    ) -> AsyncIterator[CancelEvent]:
        # Followed before the router reads the build: a change committed after that
        # read wakes `changed`, so the router's copy is the first to look at (the
        # forwarded cancel reads the build only after the owner's NOTIFY). Following
        # costs a local cancel nothing but a set entry.
        with self._feed.following(build_id) as changed:
            try:
                return await super()._cancel(
                    build_id, reason, force, grace_period, requested_by, may_cancel
                )
            except LiveElsewhere as elsewhere:
                build = elsewhere.build
            info = self._cancel_info(reason, force, grace_period, requested_by)
            if may_cancel is not None:
                may_cancel(build)  # pipeline and submitter never change: any copy will do
            await self._inbox.forward_cancel(build_id, info)
            metrics.CANCELS_FORWARDED.inc()
            try:
                async with asyncio.timeout(ACCEPT_TIMEOUT):
                    taken = await self._first(build_id, _cancel_taken, changed, build)
            except TimeoutError:
                raise Unavailable(
                    f"the owner of build {build_id} has not taken the cancel yet; it stays"
                    " queued for it (asking again is safe)"
                ) from None
            if taken.cancel is None:
                raise build_already_finished(build_id, taken.status.value)
            # Its follow begins while this one still runs, so no change falls between.
            followed = self._followed(taken, info, changed)
            accepted = await anext(followed)
        return _resumed(accepted, followed)

    async def _cancel_builds(
        self,
        selector: BuildSelector,
        reason: str,
        force: bool,
        grace_period: float | None,
        requested_by: str,
        may_cancel: MayCancel,
    ) -> AsyncIterator[CancelBuildsEvent]:
        """This replica's builds by the one-server code, the others' through their
        owners' inboxes, in one stream (bulk_forward.py)."""
        elsewhere = await builds_elsewhere(selector, self._router, self._store, self._registry.owns)
        if may_cancel is not None:
            for build in elsewhere:
                may_cancel(build)  # refused: nothing is cancelled, here or elsewhere
        if elsewhere and selector.build_ids is not None:
            remote = {build.build_id for build in elsewhere}
            here = [build_id for build_id in selector.build_ids if build_id not in remote]
            selector = dataclasses.replace(selector, build_ids=here)
        local = await super()._cancel_builds(
            selector, reason, force, grace_period, requested_by, may_cancel
        )
        if not elsewhere:
            return local
        info = self._cancel_info(reason, force, grace_period, requested_by)
        return cancel_builds_across(
            local, Forwarding(elsewhere, info, self._inbox, self._until, ACCEPT_TIMEOUT)
        )

    async def _followed(
        self, taken: Build, info: CancelInfo, before: asyncio.Event
    ) -> AsyncGenerator[CancelEvent, None]:
        """What the owner's stream says: accepted, each job as it ends, the end.
        `before` is the caller's follow of the build, which `taken` was read under."""
        ended = ended_before_accepted(taken)
        now = taken
        with self._feed.following(taken.build_id) as changed:
            yield _accepted(taken, info)
            # Read once more without waiting only if a change came after `taken` was
            # read and before this follow began (the caller's follow saw it).
            reread = before.is_set()
            while True:
                for result in newly_ended(ended, now):
                    yield result
                if now.terminal:
                    break
                if not reread:
                    await changed.wait()
                changed.clear()
                reread = False
                now = await self._read(taken.build_id)
        yield finished_event(now)

    async def _until(
        self, build_id: str, done: Callable[[Build], bool], within: float | None
    ) -> Build:
        """The build once `done` holds for its committed state."""
        with self._feed.following(build_id) as changed:
            async with asyncio.timeout(within):
                return await self._first(build_id, done, changed, None)

    async def _first(
        self,
        build_id: str,
        done: Callable[[Build], bool],
        changed: asyncio.Event,
        seen: Build | None,
    ) -> Build:
        """The first committed copy for which `done` holds, `seen` (read since `changed`
        follows the build) first, then one read after each wake-up."""
        while True:
            if seen is None:
                changed.clear()
                seen = await self._read(build_id)
            if done(seen):
                return seen
            await changed.wait()
            seen = None

    async def _read(self, build_id: str) -> Build:
        build = await self._store.get_build(build_id)
        if build is None:
            raise build_not_found(build_id)
        return build


async def _resumed(first: T, rest: AsyncGenerator[T, None]) -> AsyncIterator[T]:
    """`first`, then the rest of a stream already started (closed with this one)."""
    async with contextlib.aclosing(rest):
        yield first
        async for item in rest:
            yield item


def _cancel_taken(build: Build) -> bool:
    return build.cancel is not None or build.terminal


def _accepted(build: Build, info: CancelInfo) -> CancelAcceptedEvent:
    assert build.cancel is not None
    stopping = sum(1 for job in build.jobs() if job.status is JobStatus.STOPPING)
    joined = (build.cancel.requested_at, build.cancel.requested_by) != (
        info.requested_at,
        info.requested_by,
    )
    return CancelAcceptedEvent(build.build_id, build.status, build.cancel, stopping, joined)
