"""Fault injection on the real store of a running server: its writes (and, when
asked, its reads of builds) fail until healed, or wait until released. Every part of
the server holds the same store object, so replacing its methods on that object
reaches all of them; the SQLite store underneath is untouched."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

from buildcontrol_server.domain.model import Build, ChangeSet
from buildcontrol_server.store.sqlite import SqliteStore

WAIT = 20.0


class StoreFaults:
    def __init__(self, store: SqliteStore) -> None:
        self._commit = store.commit
        self._commit_all = store.commit_all
        self._get_build = store.get_build
        store.commit = self._faulty_commit  # type: ignore[method-assign]
        store.commit_all = self._faulty_commit_all  # type: ignore[method-assign]
        store.get_build = self._faulty_get_build  # type: ignore[method-assign]
        self._failing_writes = False
        self._failing_reads = False
        self._held: asyncio.Event | None = None
        self.refused_writes = 0
        self.refused_reads = 0
        self._refusals: asyncio.Queue[str] = asyncio.Queue()
        # Set when a write is waiting at the hold.
        self.holding = asyncio.Event()
        # Writes waiting at the hold now, and an event set whenever one more arrives.
        self.waiting = 0
        self._arrived = asyncio.Event()

    def fail(self, *, reads: bool = False) -> None:
        """From now on every write fails (and every read of a build, with `reads`)."""
        self._failing_writes = True
        self._failing_reads = reads

    def heal(self) -> None:
        self._failing_writes = self._failing_reads = False

    def hold_writes(self) -> None:
        """Writes wait (before reaching SQLite) until `release`."""
        self._held = asyncio.Event()
        self.holding.clear()

    def release(self) -> None:
        if self._held is not None:
            self._held.set()
            self._held = None

    async def held(self, count: int) -> None:
        """Wait until `count` writes wait at the hold (at most WAIT seconds)."""
        async with asyncio.timeout(WAIT):
            while self.waiting < count:
                self._arrived.clear()
                await self._arrived.wait()

    async def refusals(self, count: int) -> None:
        """Wait until `count` more operations were refused (at most WAIT seconds)."""
        async with asyncio.timeout(WAIT):
            for _ in range(count):
                await self._refusals.get()

    async def _gate(self) -> None:
        held = self._held
        if held is not None:
            self.holding.set()
            self.waiting += 1
            self._arrived.set()
            try:
                await held.wait()
            finally:
                self.waiting -= 1
        if self._failing_writes:
            self.refused_writes += 1
            self._refusals.put_nowait("write")
            raise sqlite3.OperationalError("disk I/O error (injected)")

    async def _faulty_commit(self, changes: ChangeSet) -> None:
        await self._gate()
        await self._commit(changes)

    async def _faulty_commit_all(self, change_sets: list[ChangeSet]) -> list[Any]:
        await self._gate()
        return await self._commit_all(change_sets)

    async def _faulty_get_build(self, build_id: str) -> Build | None:
        if self._failing_reads:
            self.refused_reads += 1
            self._refusals.put_nowait("read")
            raise sqlite3.OperationalError("disk I/O error (injected)")
        return await self._get_build(build_id)
