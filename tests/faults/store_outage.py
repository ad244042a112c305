"""A store write failure injected the way a sick disk shows it: the writer's SQLite
connection refuses to begin a transaction ("disk I/O error") for a window, so every
write of that window fails inside the real group-commit writer, and reads go on."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

from buildcontrol_server.store.sqlite import SqliteStore


class FailingConnection:
    """Stands in for the writer's aiosqlite connection; passes everything through
    except BEGIN while `failing` is set."""

    def __init__(self, real: Any) -> None:
        self._real = real
        self.failing = False
        self.refused = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    async def execute(self, sql: str, *args: Any) -> Any:
        if self.failing and sql.startswith("BEGIN"):
            self.refused += 1
            raise sqlite3.OperationalError("disk I/O error (injected)")
        return await self._real.execute(sql, *args)


class StoreOutage:
    """Write failures for windows of time on an open SqliteStore."""

    def __init__(self, store: SqliteStore) -> None:
        writer = store._writer  # the group-commit writer of the open store
        assert writer is not None, "open the store first"
        self._connection = FailingConnection(writer._connection)
        writer._connection = self._connection  # type: ignore[assignment]
        self._heal: asyncio.TimerHandle | None = None
        self.seconds = 0.0  # total length of the windows so far

    @property
    def failing(self) -> bool:
        return self._connection.failing

    @property
    def refused(self) -> int:
        return self._connection.refused

    def fail_for(self, seconds: float) -> None:
        """Refuse every write from now for `seconds` (extends a window under way)."""
        if self._heal is not None:
            self._heal.cancel()
        self._connection.failing = True
        self.seconds += seconds
        self._heal = asyncio.get_running_loop().call_later(seconds, self.heal)

    def heal(self) -> None:
        if self._heal is not None:
            self._heal.cancel()
            self._heal = None
        self._connection.failing = False
