"""Gauges computed from the live build actors when Prometheus scrapes: builds in
CANCELING, the age of the oldest one (the stuck-cancel detector) and the deepest
actor inbox. Computing them at scrape time means no code path has to remember to
update them, and a build stuck in CANCELING shows a growing age without any event.

The scrape runs on prometheus-client's HTTP thread, not the event loop. It only reads:
`live()` copies the registry's dict in one C call (atomic under the GIL), and a read
of a build that an actor changes at the same moment is off by one transition at worst,
the same as a scrape a moment earlier or later."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Protocol

from buildcontrol_server import metrics
from buildcontrol_server.domain.model import Build
from buildcontrol_server.domain.states import BuildStatus


class LiveActor(Protocol):
    build: Build

    def depth(self) -> int: ...


class LiveBuildGauges:
    def __init__(
        self,
        live: Callable[[], Sequence[LiveActor]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._live = live
        # Wall clock, like the cancels' `requested_at` (epoch seconds) it is compared to.
        self.clock = clock

    def bind(self) -> None:
        """Point the process-wide gauges at this server's live builds (the last server
        bound wins: one per process outside tests)."""
        metrics.BUILDS_CANCELING.set_function(self.canceling)
        metrics.OLDEST_CANCELING_AGE_SECONDS.set_function(self.oldest_canceling_age)
        metrics.INBOX_DEPTH_MAX.set_function(self.max_inbox_depth)

    def _canceling_since(self) -> list[float]:
        return [
            actor.build.cancel.requested_at
            for actor in self._live()
            if actor.build.status is BuildStatus.CANCELING and actor.build.cancel is not None
        ]

    def canceling(self) -> float:
        return float(len(self._canceling_since()))

    def oldest_canceling_age(self) -> float:
        since = self._canceling_since()
        return max(0.0, self.clock() - min(since)) if since else 0.0

    def max_inbox_depth(self) -> float:
        return float(max((actor.depth() for actor in self._live()), default=0))
