"""One transaction for the CANCELING writes of many builds (CancelBuilds).

Each build's actor applies the cancel to its own state, then hands its change set
to the batch and waits. When every actor of the batch has either contributed or
abstained (nothing to write: already cancelling, finished, or gone), the batch
commits all change sets at once and tells each actor how its write went.

`arrived` is set at that moment (the commit is under way), `committed` once the
commit's outcome is handed to every contributor (their turns resume, in that order,
before whoever waits on `committed`): CancelBuilds tells the next batch's actors only
then, so their domain work queues behind this batch's StopJobs, not ahead of them."""

from __future__ import annotations

import asyncio
from typing import Protocol

from buildcontrol_server.domain.model import ChangeSet


class BatchStore(Protocol):
    async def commit_all(self, change_sets: list[ChangeSet]) -> list[BaseException | None]: ...


class CancelBatch:
    def __init__(self, store: BatchStore, expected: int) -> None:
        self._store = store
        self._waiting = expected
        self._changes: list[ChangeSet] = []
        self._results: list[asyncio.Future[BaseException | None]] = []
        self.commits = 0
        # Set once every actor of the batch contributed or abstained.
        self.arrived = asyncio.Event()
        # Set once the commit's outcome went to every contributor (or there was none).
        self.committed = asyncio.Event()
        if expected == 0:
            self.arrived.set()
            self.committed.set()

    async def contribute(self, changes: ChangeSet) -> None:
        """Add a change set and wait for the batch's commit; raise its error, if any."""
        result: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()
        self._changes.append(changes)
        self._results.append(result)
        self._arrived()
        error = await result
        if error is not None:
            raise error

    def abstain(self) -> None:
        self._arrived()

    def _arrived(self) -> None:
        self._waiting -= 1
        if self._waiting == 0:
            # The commit's first step is queued before the next batch's actors wake.
            asyncio.get_running_loop().create_task(self._commit())
            self.arrived.set()

    async def _commit(self) -> None:
        try:
            if not self._changes:
                return
            try:
                errors = await self._store.commit_all(self._changes)
            except asyncio.CancelledError:
                raise
            except Exception as failure:
                errors = [failure] * len(self._changes)
            self.commits += 1
            for result, outcome in zip(self._results, errors, strict=True):
                result.set_result(outcome)
        finally:
            self.committed.set()
