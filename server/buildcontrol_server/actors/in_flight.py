"""Operations under way, counted so that shutdown can wait for them to settle.

A cancel that was accepted must see its stops leave: on shutdown the server first
refuses new cancels, then waits here until every cancel already under way has had
its actor commit it (its StopJobs are then queued in the agents' sessions), and only
then tells agents to leave."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager


class InFlight:
    def __init__(self) -> None:
        self._count = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @contextmanager
    def track(self) -> Iterator[None]:
        self._count += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._count -= 1
            if self._count == 0:
                self._idle.set()

    def __len__(self) -> int:
        return self._count

    async def settled(self) -> None:
        """Return once nothing is under way (bound it with asyncio.timeout)."""
        await self._idle.wait()
