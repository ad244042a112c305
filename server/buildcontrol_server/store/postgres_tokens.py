"""The access tokens on PostgreSQL: the `access_tokens` table (hashes only) and the
generation that every change bumps, for every server of the database to follow.

A change replaces the whole table in one transaction that first locks the state row
(`FOR UPDATE`): two `buildcontrol token` commands at once queue behind each other, and
each sees the other's change (the file's lock on SQLite). The same transaction sends a
NOTIFY, delivered at commit, so servers re-read at once; they also poll the generation,
because a listener that reconnects misses what was sent meanwhile.

Rows are plain tuples (name, role, agent_id, sha256): what a token means is the
security package's business, not the store's."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import asyncpg

from buildcontrol_server.store.postgres_connections import (
    COMMAND_TIMEOUT,
    CONNECT_TIMEOUT,
    tune_socket,
)

# NOTIFY channel of token changes; the payload is the new generation.
CHANNEL = "buildcontrol_tokens"
TokenRow = tuple[str, str, str | None, str]

_ROWS = "SELECT name, role, agent_id, sha256 FROM access_tokens ORDER BY position"
_STATE = "SELECT generation, bootstrapped FROM access_token_state"


class TokenTableMissing(Exception):
    """The database has no access token tables yet (no server of this version ran)."""


class PostgresTokenTable:
    """One connection of its own (not the store's pool: LISTEN needs a session that
    the pool's reset would not undo), opened by open() and reopened after a loss."""

    def __init__(self, url: str, shown_url: str) -> None:
        self._url = url
        self.shown_url = shown_url
        self._connection: asyncpg.Connection | None = None
        self._on_change: Callable[[], object] | None = None
        # One operation at a time on the one connection (a NOTIFY's re-read, the
        # checker's poll and a change may overlap).
        self._busy = asyncio.Lock()

    async def open(self, on_change: Callable[[], object] | None = None) -> None:
        """Connect (and LISTEN if `on_change`). Raises TokenTableMissing, or the
        connection's error."""
        self._on_change = on_change
        connection = await asyncpg.connect(
            self._url, timeout=CONNECT_TIMEOUT, command_timeout=COMMAND_TIMEOUT
        )
        tune_socket(connection)
        try:
            if not await connection.fetchval(
                "SELECT to_regclass('access_token_state') IS NOT NULL"
            ):
                raise TokenTableMissing(
                    f"{self.shown_url} has no access token tables: start a buildcontrol "
                    "server on it once (it creates them)"
                )
            if on_change is not None:
                await connection.add_listener(CHANNEL, self._notified)
        except BaseException:
            await connection.close()
            raise
        self._connection = connection

    def _notified(self, *_: Any) -> None:
        if self._on_change is not None:
            self._on_change()

    async def close(self) -> None:
        async with self._busy:
            connection, self._connection = self._connection, None
            if connection is not None and not connection.is_closed():
                await connection.close()

    async def _live(self) -> asyncpg.Connection:
        """The connection, reopened if it was lost (a restarted database)."""
        if self._connection is None or self._connection.is_closed():
            await self.open(self._on_change)
        assert self._connection is not None
        return self._connection

    async def generation(self) -> int:
        async with self._busy:
            connection = await self._live()
            return int(await connection.fetchval("SELECT generation FROM access_token_state"))

    async def read(self) -> tuple[int, list[TokenRow], bool]:
        """(generation, rows, bootstrapped), read in one snapshot."""
        async with self._busy:
            connection = await self._live()
            async with connection.transaction(isolation="repeatable_read", readonly=True):
                state = await connection.fetchrow(_STATE)
                rows = await connection.fetch(_ROWS)
        return int(state[0]), [_row(row) for row in rows], bool(state[1])

    async def job_key(self, proposed: str) -> str:
        """The database's job-token key (hex); `proposed` becomes it if there is none
        yet. Two servers starting at once both get the one that was written first."""
        async with self._busy:
            connection = await self._live()
            await connection.execute(
                "INSERT INTO job_token_key (id, key) VALUES (1, $1) ON CONFLICT (id) DO NOTHING",
                proposed,
            )
            return str(await connection.fetchval("SELECT key FROM job_token_key WHERE id = 1"))

    async def change(
        self, edit: Callable[[list[TokenRow], bool], Sequence[TokenRow] | None]
    ) -> int | None:
        """Replace the rows with `edit(rows, bootstrapped)` (None: change nothing), as
        one transaction; marks the table bootstrapped. The new generation, or None."""
        async with self._busy:
            return await self._change(edit)

    async def _change(
        self, edit: Callable[[list[TokenRow], bool], Sequence[TokenRow] | None]
    ) -> int | None:
        connection = await self._live()
        async with connection.transaction():
            state = await connection.fetchrow(f"{_STATE} FOR UPDATE")
            rows = [_row(row) for row in await connection.fetch(_ROWS)]
            edited = edit(rows, bool(state[1]))
            if edited is None:
                return None
            await connection.execute("DELETE FROM access_tokens")
            await connection.executemany(
                "INSERT INTO access_tokens (name, role, agent_id, sha256, position)"
                " VALUES ($1, $2, $3, $4, $5)",
                [(*row, position) for position, row in enumerate(edited)],
            )
            generation = int(
                await connection.fetchval(
                    "UPDATE access_token_state SET generation = generation + 1,"
                    " bootstrapped = 1 RETURNING generation"
                )
            )
            await connection.execute("SELECT pg_notify($1, $2)", CHANNEL, str(generation))
        return generation


def _row(record: Any) -> TokenRow:
    return (record[0], record[1], record[2], record[3])
