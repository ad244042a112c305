"""The stuck-cancel gauges, read from the store, and the deepest actor inbox.

`buildcontrol_builds_canceling` and `buildcontrol_oldest_canceling_age_seconds` come
from what the store has committed, not from the live actors: an actor that died (or a
build the server lost track of) must show as stuck, not disappear from the gauges.
`refresh()` reads the CANCELING builds (an indexed query over the few live builds) and
runs every --audit-interval; a scrape reads the last values.

The age is on the monotonic clock: when a build is first seen CANCELING, its start
is placed on the monotonic clock once (now minus its age by the stored wall time);
from then on a step of the wall clock moves neither the age nor the alert.

The scrape runs on prometheus-client's HTTP thread, not the event loop. It only reads
a dict the loop replaces whole (one reference assignment, atomic under the GIL), and
`live()` copies the registry's dict in one C call."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Protocol

from buildcontrol_server import metrics


class LiveActor(Protocol):
    def depth(self) -> int: ...


class CancelingBuilds(Protocol):
    async def canceling_since(self) -> dict[str, float]: ...


class LiveBuildGauges:
    def __init__(
        self,
        live: Callable[[], Sequence[LiveActor]],
        store: CancelingBuilds,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._live = live
        self._store = store
        self.wall = wall  # only to read the stored requested_at once
        self.monotonic = monotonic
        self._since: dict[str, float] = {}  # build id → CANCELING since (monotonic)

    def bind(self) -> None:
        """Point the process-wide gauges at this server (the last server bound wins:
        one per process outside tests)."""
        metrics.BUILDS_CANCELING.set_function(self.canceling)
        metrics.OLDEST_CANCELING_AGE_SECONDS.set_function(self.oldest_canceling_age)
        metrics.INBOX_DEPTH_MAX.set_function(self.max_inbox_depth)

    async def refresh(self) -> None:
        """Read the builds in CANCELING from the store."""
        stored = await self._store.canceling_since()
        now_wall, now = self.wall(), self.monotonic()
        known = self._since
        self._since = {
            build_id: known.get(build_id, now - max(0.0, now_wall - requested_at))
            for build_id, requested_at in stored.items()
        }

    def canceling(self) -> float:
        return float(len(self._since))

    def oldest_canceling_age(self) -> float:
        since = self._since
        return max(0.0, self.monotonic() - min(since.values())) if since else 0.0

    def max_inbox_depth(self) -> float:
        return float(max((actor.depth() for actor in self._live()), default=0))
