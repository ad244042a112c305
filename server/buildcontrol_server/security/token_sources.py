"""Where the access tokens live: the tokens file (SQLite, the default) or the database
(PostgreSQL, where several servers, on several hosts, must see the same tokens).
docs/security.md says why the two backends differ.

Both sources answer the same questions: are there tokens yet (a first start creates
them), what are they, change them atomically (every `buildcontrol token` command is one
read-modify-write that a concurrent one cannot undo), and, for a running server, have
they changed. The last one has two halves: `take_fresh()`, synchronous and cheap (every
call's admission asks it), and `poll()`, which a server's checker awaits every half
second. The file answers `take_fresh()` itself with one stat; the database is asked
by `poll()` (and at once when its NOTIFY arrives), and `take_fresh()` hands over what
that read."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from buildcontrol_server.security import tokens
from buildcontrol_server.security.principals import TOKEN_ROLES, Principal
from buildcontrol_server.security.tokens import TokenEntry, TokensFileError
from buildcontrol_server.store.factory import token_table

if TYPE_CHECKING:
    from buildcontrol_server.store.postgres_tokens import PostgresTokenTable, TokenRow

log = logging.getLogger("buildcontrol_server.security.tokens")

# edit(tokens now, whether there are tokens yet) → the tokens to keep, or None to
# change nothing. May raise TokensFileError (nothing changes then).
Edit = Callable[[list[TokenEntry], bool], Sequence[TokenEntry] | None]


class TokenSource(Protocol):
    # What messages name: the file's path, or the database URL without its password.
    description: str
    # True if take_fresh() alone sees every change (the file's stat); False if it
    # needs poll() (the database).
    sees_changes_per_call: bool

    async def open(self, on_fresh: Callable[[], object]) -> None:
        """Start following changes; `on_fresh` is called when take_fresh() has news."""

    async def close(self) -> None: ...

    async def exists(self) -> bool:
        """True once tokens were ever created (a first start needs to make them)."""

    async def read(self) -> list[TokenEntry]:
        """The tokens now; TokensFileError if they cannot be read. Changes nothing
        that take_fresh() answers: any reader may call it, not only the registry."""

    async def change(self, edit: Edit) -> bool:
        """Apply `edit` atomically; False if it changed nothing."""

    def take_fresh(self) -> list[TokenEntry] | None:
        """The tokens, if they changed since the last read or take; else None."""

    async def poll(self) -> None:
        """Look for a change that take_fresh() cannot see by itself."""

    async def shared_job_key(self, proposed: bytes) -> bytes | None:
        """The job-token key every server of these tokens signs with (`proposed` if
        there is none yet); None where each server keeps its own key file."""


class FileTokenSource:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.description = f"tokens file {path}"
        self.sees_changes_per_call = True
        self._stamp: tuple[int, int, int] | None = None

    async def open(self, on_fresh: Callable[[], object]) -> None:
        """Nothing to start: every take_fresh() looks at the file."""

    async def close(self) -> None:
        """Nothing to stop."""

    async def exists(self) -> bool:
        return self.path.exists()

    async def read(self) -> list[TokenEntry]:
        # No stamp kept: a read is not a take (the first take_fresh() reads once more).
        return tokens.read(self.path)

    async def change(self, edit: Edit) -> bool:
        with tokens.locked(self.path):
            present = self.path.exists()
            edited = edit(tokens.read(self.path) if present else [], present)
            if edited is None:
                return False
            tokens.write(self.path, edited)
        return True

    def take_fresh(self) -> list[TokenEntry] | None:
        stamp = self._file_stamp()
        if stamp == self._stamp:
            return None
        self._stamp = stamp
        if stamp is None:
            log.error("tokens file %s is gone; keeping the tokens read before", self.path)
            return None
        try:
            return tokens.read(self.path)
        except TokensFileError as error:
            log.error("tokens file not reloaded, keeping the tokens read before: %s", error)
            return None

    async def poll(self) -> None:
        """take_fresh() stats the file itself."""

    async def shared_job_key(self, proposed: bytes) -> bytes | None:
        return None  # one server per file (SQLite): the data directory's key file

    def _file_stamp(self) -> tuple[int, int, int] | None:
        try:
            status = os.stat(self.path)
        except OSError:
            return None
        return (status.st_mtime_ns, status.st_size, status.st_ino)


class DatabaseTokenSource:
    def __init__(self, table: PostgresTokenTable) -> None:
        self._table = table
        self.description = f"tokens in {table.shown_url}"
        self.sees_changes_per_call = False
        self._generation: int | None = None
        self._fresh: list[TokenEntry] | None = None
        self._on_fresh: Callable[[], object] | None = None
        self._polls: set[asyncio.Task[None]] = set()
        self._opened = False
        # One poll at a time: a NOTIFY's and the checker's may overlap.
        self._polling = asyncio.Lock()
        # The last poll failed (the database away): logged once, not per poll.
        self._failing = False

    async def open(self, on_fresh: Callable[[], object]) -> None:
        self._on_fresh = on_fresh
        await self._table.close()
        await self._table.open(on_change=self._notified)
        self._opened = True

    async def close(self) -> None:
        for task in list(self._polls):
            task.cancel()
        await asyncio.gather(*self._polls, return_exceptions=True)
        await self._table.close()

    async def _connected(self) -> None:
        if not self._opened:
            await self._table.open()
            self._opened = True

    async def exists(self) -> bool:
        await self._connected()
        _, _, bootstrapped = await self._table.read()
        return bootstrapped

    async def read(self) -> list[TokenEntry]:
        # No generation kept: a read is not a take (the first poll reads once more).
        await self._connected()
        _, rows, _ = await self._table.read()
        return _entries(rows, self.description)

    async def change(self, edit: Edit) -> bool:
        await self._connected()

        def edit_rows(rows: list[TokenRow], bootstrapped: bool) -> list[TokenRow] | None:
            edited = edit(_entries(rows, self.description), bootstrapped)
            return None if edited is None else [_row(entry) for entry in edited]

        return await self._table.change(edit_rows) is not None

    def take_fresh(self) -> list[TokenEntry] | None:
        fresh, self._fresh = self._fresh, None
        return fresh

    async def poll(self) -> None:
        """Read the tokens if their generation moved. A lost database keeps the
        tokens read before in force (logged), as a broken tokens file does."""
        async with self._polling:
            await self._poll()

    async def _poll(self) -> None:
        entries: list[TokenEntry] | None = None
        try:
            generation = await self._table.generation()
            if generation != self._generation:
                generation, rows, _ = await self._table.read()
                entries = _entries(rows, self.description)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            if not self._failing:  # once per outage, not every half second
                log.error(
                    "%s not reloaded, keeping the tokens read before: %s",
                    self.description,
                    error,
                )
            self._failing = True
            await self._table.close()  # reopened by the next poll
            return
        if self._failing:
            log.info("%s readable again", self.description)
            self._failing = False
        if entries is None:
            return
        self._generation = generation
        self._fresh = entries
        if self._on_fresh is not None:
            self._on_fresh()

    async def shared_job_key(self, proposed: bytes) -> bytes:
        await self._connected()
        return bytes.fromhex(await self._table.job_key(proposed.hex()))

    def _notified(self) -> None:
        """A NOTIFY of a change: read it now rather than at the next poll."""
        task = asyncio.get_running_loop().create_task(self.poll())
        self._polls.add(task)
        task.add_done_callback(self._polls.discard)


def _entries(rows: Sequence[TokenRow], where: str) -> list[TokenEntry]:
    """Rows as entries, checked as a tokens file is (a hand-made row is refused)."""
    raw = [
        {"name": name, "role": role, "sha256": sha256}
        | ({"agent_id": agent_id} if agent_id is not None else {})
        for name, role, agent_id, sha256 in rows
    ]
    try:
        return tokens.entries_of(raw)
    except TokensFileError as error:
        raise TokensFileError(f"{where}: {error}") from None


def _row(entry: TokenEntry) -> TokenRow:
    principal: Principal = entry.principal
    assert principal.role in TOKEN_ROLES
    return (principal.name, principal.role.value, principal.agent_id, entry.sha256)


def token_source(
    tokens_file: Path | None, default_file: Path, store_url: str | None
) -> TokenSource:
    """The tokens of a server on `store_url`: the database's on PostgreSQL, else the
    tokens file (`tokens_file`, or `default_file` in the data directory)."""
    table = token_table(store_url)
    if table is None:
        return FileTokenSource(tokens_file or default_file)
    return DatabaseTokenSource(table)  # a --tokens-file beside it is refused at start
