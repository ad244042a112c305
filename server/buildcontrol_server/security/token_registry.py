"""The tokens in force in a running server, from its token source (token_sources.py),
re-read when they change; and the first start's tokens.

A change takes effect without a restart: on the tokens file at the next call (one
stat per call), in the database when its NOTIFY arrives or at the next poll (every
0.5 s). A source that cannot be read (a file broken by an edit, a database gone) is
logged and the tokens read before stay in force."""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from buildcontrol_server.security.principals import Principal, Role
from buildcontrol_server.security.token_sources import TokenSource
from buildcontrol_server.security.tokens import (
    ADMIN_TOKEN_FILE,
    AGENT_TOKEN_FILE,
    BOOTSTRAP_AGENT_IDS,
    BOOTSTRAP_AGENT_NAME,
    TokenEntry,
    new_token,
    token_hash,
    write_private,
)

log = logging.getLogger("buildcontrol_server.security.tokens")


class TokenRegistry:
    def __init__(self, source: TokenSource) -> None:
        self.source = source
        self._entries: list[TokenEntry] = []
        # Called after every reload that changed the tokens in force (open_calls.py
        # ends the calls whose token is gone).
        self.on_change: Callable[[], object] | None = None
        # poll_now(): the poll that starts after the current one, shared by every
        # caller that arrives before it starts; and the one-at-a-time slot.
        self._next_poll: asyncio.Future[None] | None = None
        self._poll_slot = asyncio.Lock()

    async def load(self) -> None:
        """Read the tokens now and follow their changes; raises TokensFileError (at
        start, where a broken source must stop the server rather than lock everyone
        out)."""
        self._entries = await self.source.read()
        await self.source.open(on_fresh=self.refresh)

    async def close(self) -> None:
        await self.source.close()

    def refresh(self) -> None:
        """Take the source's news, if any (a stat of the tokens file at most)."""
        entries = self.source.take_fresh()
        if entries is None:
            return
        if entries == self._entries:
            return  # e.g. the first take after load(), which reads once more
        self._entries = entries
        log.info("%s reloaded: %d token(s)", self.source.description, len(entries))
        if self.on_change is not None:
            self.on_change()

    async def poll(self) -> None:
        """Look for changes the source cannot see by itself, then take them."""
        await self.source.poll()
        self.refresh()

    async def changed_since(self) -> bool:
        """For an unknown token: may the tokens have changed since they were read? On a
        source that cannot be looked at per call (the database) a token made a moment
        ago on another host must not wait for the next poll: re-read now (shared with
        other unknown tokens: one query at a time), and True: decide again. Not "True
        if this poll changed them": a NOTIFY's reload may take the change between the
        caller's lookup and this poll, which then finds nothing new (a token created
        a moment ago was refused that way). The file: no (its stat is done)."""
        if self.source.sees_changes_per_call:
            return False
        await self.poll_now()
        return True

    async def poll_now(self) -> None:
        """A poll that starts after this call (so it sees every change committed
        before it), shared with the callers that come while it waits. At most one
        runs and one waits, however many ask."""
        if self._next_poll is None:
            self._next_poll = asyncio.ensure_future(self._run_next_poll())
        await asyncio.shield(self._next_poll)

    async def _run_next_poll(self) -> None:
        async with self._poll_slot:
            self._next_poll = None  # who comes now needs a poll that starts later
            await self.poll()

    def principal_of(self, digest: str) -> Principal | None:
        """The principal whose token hashes to `digest` now, or None (revoked)."""
        found: Principal | None = None
        for entry in self._entries:
            if hmac.compare_digest(entry.sha256, digest):
                found = entry.principal
        return found

    def principals_by_digest(self) -> dict[str, Principal]:
        return {entry.sha256: entry.principal for entry in self._entries}

    def authenticate(self, token: str) -> Principal | None:
        """The principal of `token`, or None. Compares with every entry, always."""
        self.refresh()
        return self.principal_of(token_hash(token))


@dataclass(frozen=True)
class Bootstrapped:
    """What a first start created; the paths are safe to print, their contents not."""

    where: str
    admin_token_file: Path
    agent_token_file: Path
    # The pattern of agent ids the agent token accepts (agent_id_patterns.py).
    agent_ids: str

    def hint(self) -> str:
        return (
            f"buildcontrol: authentication is on and there were no tokens, so some were "
            f"created: {self.where} (hashes only).\n"
            f"  admin token:  {self.admin_token_file}\n"
            f"  agent token:  {self.agent_token_file} (connects as an agent id matching "
            f"{self.agent_ids!r}: an agent on this host with its default id)\n"
            f"  (both mode 0600; shown nowhere else). Use them with --token-file FILE or "
            f"the BUILDCONTROL_TOKEN variable, e.g.\n"
            f"    buildcontrol agent --token-file {self.agent_token_file}\n"
            f"    BUILDCONTROL_TOKEN=$(cat {self.admin_token_file}) buildcontrol list"
        )


async def bootstrap(source: TokenSource, directory: Path) -> Bootstrapped | None:
    """Create one admin and one agent token, their plaintext in 0600 files in
    `directory`, unless the source has tokens already (None). The tokens are stored
    last: a crash before leaves none, so the next start simply bootstraps again. Two
    servers of one database starting at once: one stores its tokens, the other
    removes the files it wrote (None)."""
    if await source.exists():
        return None
    admin, agent = new_token(), new_token()
    admin_file, agent_file = _write_plaintext(directory, admin, agent)
    created = [
        TokenEntry(Principal("admin", Role.ADMIN), token_hash(admin)),
        TokenEntry(
            Principal(BOOTSTRAP_AGENT_NAME, Role.AGENT, BOOTSTRAP_AGENT_IDS), token_hash(agent)
        ),
    ]
    if not await source.change(lambda _, present: None if present else created):
        admin_file.unlink(missing_ok=True)
        agent_file.unlink(missing_ok=True)
        return None
    return Bootstrapped(source.description, admin_file, agent_file, BOOTSTRAP_AGENT_IDS)


def _write_plaintext(directory: Path, admin: str, agent: str) -> tuple[Path, Path]:
    """The tokens' plaintext files (0600), before their hashes are stored."""
    directory.mkdir(parents=True, exist_ok=True)
    admin_file, agent_file = directory / ADMIN_TOKEN_FILE, directory / AGENT_TOKEN_FILE
    write_private(admin_file, admin + "\n")
    write_private(agent_file, agent + "\n")
    return admin_file, agent_file
