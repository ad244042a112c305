"""Work done for the whole database, by one replica at a time.

- Housekeeping (retention purges, compaction, the size gauges) and log retention run
  on the replica holding shard CHORES_SHARD's lease, and move with that lease: two
  replicas never purge the same rows at once, and a dead replica's chores resume on
  the one that takes its shard over.
- Webhook notifications are sent by the owner of their build: the actor that
  committed the event queues it, each replica queues the outbox entries still
  undelivered of the shards it takes over (in place of the one-server sweep at
  start), and a notifier skips a queued one whose shard it no longer holds
  (effects/webhooks.py's `delivers_here`), since the new owner queued it too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from buildcontrol_server.replicas.leases import ShardLeases

log = logging.getLogger(__name__)

# Any shard would do; every replica must name the same one.
CHORES_SHARD = 0


class Chore(Protocol):
    def start(self) -> None: ...

    async def stop(self) -> None: ...


class Undelivered(Protocol):
    async def queue_undelivered(self, of_builds: Callable[[str], bool] | None = None) -> None: ...


class RecurringTask:
    """A chore that is one task: made anew by each start, cancelled by stop."""

    def __init__(self, make: Callable[[], Coroutine[Any, Any, None]], name: str) -> None:
        self._make = make
        self._name = name
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._make(), name=self._name)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


class DatabaseChores:
    """A LeaseListener (leases.py): starts the chores with CHORES_SHARD's lease,
    stops them when it goes, and queues the undelivered webhooks of shards taken."""

    def __init__(self, leases: ShardLeases, notifier: Undelivered) -> None:
        self._leases = leases
        self._notifier = notifier
        self._chores: list[Chore] = []
        self._running = False

    def assign(self, chores: list[Chore]) -> None:
        self._chores = chores

    async def gained(self, shards: set[int]) -> None:
        shard_of = self._leases.shard_of
        await self._notifier.queue_undelivered(lambda build_id: shard_of(build_id) in shards)
        if CHORES_SHARD in shards and not self._running:
            self._running = True
            log.info("housekeeping runs on this replica (it holds shard %d)", CHORES_SHARD)
            for chore in self._chores:
                chore.start()

    async def releasing(self, shards: set[int]) -> None:
        if CHORES_SHARD in shards:
            await self.stop()

    async def lost(self, shards: set[int]) -> None:
        if CHORES_SHARD in shards:
            await self.stop()

    async def stop(self) -> None:
        self._running = False
        for chore in self._chores:
            await chore.stop()
