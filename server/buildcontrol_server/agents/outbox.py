"""The commands waiting for one agent stream's writer, in order.

One per connected agent, so its size counts: an asyncio.Queue costs ~3 KiB per stream
(three deques and an Event, for bounded sizes, several getters and task_done() that a
single writer never uses); this holds one deque and, while the writer waits, one
future. Measured with bench/ (1,000 idle agent streams, 2 cores): ~51.5 → ~49 KiB of
server memory per stream, of which grpc.aio's own connection and call are ~39.5 KiB."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")
K = TypeVar("K")


class Outbox(Generic[T]):
    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: deque[T] = deque()
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: T) -> None:
        """Queue `item`; never blocks (the outbox is not bounded)."""
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> T:
        """The oldest item, once there is one. One reader at a time (the stream's
        writer); cancelling it loses nothing."""
        while not self._items:
            if self._waiter is not None:
                raise RuntimeError("an outbox has one reader at a time")
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.popleft()

    def take_leading(self, kind: type[K], limit: int) -> list[K]:
        """The oldest items, at most `limit`, as long as each is a `kind`; never waits."""
        taken: list[K] = []
        items = self._items
        while items and len(taken) < limit and isinstance(head := items[0], kind):
            items.popleft()
            taken.append(head)
        return taken

    def get_nowait(self) -> T:
        if not self._items:
            raise asyncio.QueueEmpty
        return self._items.popleft()

    def empty(self) -> bool:
        return not self._items

    def qsize(self) -> int:
        return len(self._items)
