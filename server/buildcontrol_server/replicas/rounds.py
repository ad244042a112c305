"""Rounds of work that a NOTIFY, a freed slot or the safety net asks for: one task at
a time, and one more round after it when asked again while it ran (what it reads
may have changed meanwhile). The build inbox's drain, the agent outbox's and the
claims of offers run so."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


class Rounds:
    def __init__(
        self, work: Callable[[], Awaitable[None]], name: str, failed: Callable[[Exception], None]
    ) -> None:
        """`work`: one round; `failed`: told a round's error (the next round tries
        again, at the latest at the safety net's)."""
        self._work = work
        self._name = name
        self._failed = failed
        self._task: asyncio.Task[None] | None = None
        self._again = False

    def wake(self) -> None:
        """Run a round now, or once more after the one under way."""
        if self._task is not None and not self._task.done():
            self._again = True
            return
        self._task = asyncio.get_running_loop().create_task(self._run(), name=self._name)

    def again(self) -> None:
        """From inside a round: one more after it (it left work, e.g. a full batch)."""
        self._again = True

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            self._again = False
            try:
                await self._work()
            except Exception as error:
                self._failed(error)
            if not self._again:
                return
