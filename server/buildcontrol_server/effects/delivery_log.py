"""The writer of the webhook delivery log: where each delivery stands at each endpoint.

The webhook workers note states as they go (`note()` returns at once); one task
writes everything noted since its last write in one change set, so many deliveries
cost one row each in a shared group commit, not a commit each in the way of the
cancels' commits. The latest state of a delivery replaces an older one not yet
written. A failed write is logged and counted, not retried: at worst a delivered
notification is sent again after a restart (the delivery is at least once anyway).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from buildcontrol_server import metrics
from buildcontrol_server.domain.deliveries import DeliveryLog
from buildcontrol_server.domain.model import ChangeSet

log = logging.getLogger(__name__)

# At shutdown, how long the last entries get to be written (the store closes after).
STOP_GRACE = 0.1


class LogStore(Protocol):
    async def commit(self, changes: ChangeSet) -> None: ...


class DeliveryLogWriter:
    def __init__(self, store: LogStore) -> None:
        self._store = store
        self._unwritten: dict[tuple[str, str], DeliveryLog] = {}
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()  # set while nothing noted is unwritten
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def note(self, entry: DeliveryLog) -> None:
        self._unwritten[(entry.delivery_id, entry.endpoint)] = entry
        self._idle.clear()
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="webhook-delivery-log")

    async def flushed(self) -> None:
        """Wait until everything noted so far is written (or its write failed)."""
        if self._task is not None:
            await self._idle.wait()

    async def stop(self) -> None:
        """Write what is noted, within STOP_GRACE; what is lost only means a delivery
        may be sent again after the restart."""
        self._stopping = True
        task = self._task
        if task is None:
            return
        self._wake.set()
        _, pending = await asyncio.wait({task}, timeout=STOP_GRACE)
        if pending:
            task.cancel()
            await asyncio.wait(pending)

    async def _run(self) -> None:
        while True:
            if not self._unwritten:
                self._idle.set()
                if self._stopping:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            entries, self._unwritten = list(self._unwritten.values()), {}
            try:
                await self._store.commit(ChangeSet(deliveries=entries))
            except Exception as error:  # CancelledError is not an Exception: it passes
                metrics.WEBHOOK_LOG_WRITE_FAILURES.inc()
                log.warning("webhook delivery log write of %d failed: %s", len(entries), error)
