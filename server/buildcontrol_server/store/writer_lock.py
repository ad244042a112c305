"""The lock of SQLite's writer connection, which says when a task waits for it.

A purge transaction runs in one hop on the connection's own thread (retention_sqlite.py)
and cannot see the event loop's tasks; `wanted` is how it learns that a group-commit
batch (a cancel's CANCELING write, say) is waiting for the connection, so it commits
what it deleted so far and hands the connection back between two of its chunks instead
of finishing its whole batch first.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Literal


class WriterLock(asyncio.Lock):
    def __init__(self) -> None:
        super().__init__()
        # Set while at least one task waits for the lock: a threading.Event because
        # the connection's thread reads it, not the event loop.
        self.wanted = threading.Event()
        self._waiting = 0

    async def acquire(self) -> Literal[True]:
        self._waiting += 1
        if self.locked():
            self.wanted.set()
        try:
            return await super().acquire()
        finally:
            self._waiting -= 1
            if not self._waiting:
                self.wanted.clear()
