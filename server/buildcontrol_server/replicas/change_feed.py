"""The replica's one LISTEN connection: committed changes of builds (so a call taken
here can follow a build another replica owns) and commands left in the build inbox.

A dedicated connection outside the pool (asyncpg's pool runs UNLISTEN on release).
A listener misses what was sent while it was away, so after every (re)connect, and
every SAFETY_NET seconds besides, everyone waiting is woken to read again: a lost
NOTIFY delays an answer by at most that much, it never loses it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

from buildcontrol_server.store.fencing import CHANGES_CHANNEL
from buildcontrol_server.store.postgres_connections import (
    RETRY_FIRST,
    RETRY_MAX,
    PostgresConnections,
    is_connection_loss,
)

log = logging.getLogger(__name__)

# Commands for a build of another replica: the payload is the build's shard.
INBOX_CHANNEL = "buildcontrol_inbox"
# Rows for an agent held by another replica (agent_delivery.py): the agent's id.
AGENTS_CHANNEL = "buildcontrol_agents"
# A stop's row itself, for the replica holding its agent (agent_delivery.py): JSON.
STOPS_CHANNEL = "buildcontrol_agent_stops"
# Jobs offered to the agents of every replica (offers.py): no payload.
OFFERS_CHANNEL = "buildcontrol_offers"
SAFETY_NET = 1.0


class ChangeFeed:
    def __init__(self, connections: PostgresConnections) -> None:
        self._connections = connections
        self._followers: dict[str, set[asyncio.Event]] = {}
        # Told the shards whose inbox has something (None: look at every shard).
        self._inbox_listeners: list[Callable[[set[int] | None], None]] = []
        # Told the agent whose outbox has something (None: look at every agent).
        self._agent_listeners: list[Callable[[str | None], None]] = []
        # Told each stop row a NOTIFY carried (its payload).
        self._stop_listeners: list[Callable[[str], None]] = []
        # Told that jobs were offered (True), or that it is the safety net's turn (False).
        self._offer_listeners: list[Callable[[bool], None]] = []
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()

    def on_inbox(self, listener: Callable[[set[int] | None], None]) -> None:
        self._inbox_listeners.append(listener)

    def on_agent_outbox(self, listener: Callable[[str | None], None]) -> None:
        self._agent_listeners.append(listener)

    def on_stop_row(self, listener: Callable[[str], None]) -> None:
        self._stop_listeners.append(listener)

    def on_offers(self, listener: Callable[[bool], None]) -> None:
        self._offer_listeners.append(listener)

    @contextlib.contextmanager
    def following(self, build_id: str) -> Iterator[asyncio.Event]:
        """An event set whenever `build_id` may have changed (read it again)."""
        event = asyncio.Event()
        self._followers.setdefault(build_id, set()).add(event)
        try:
            yield event
        finally:
            waiting = self._followers.get(build_id)
            if waiting is not None:
                waiting.discard(event)
                if not waiting:
                    del self._followers[build_id]

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="change-feed")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        delay = RETRY_FIRST
        while True:
            try:
                connection = await self._connections.connect()
            except Exception as error:
                if not is_connection_loss(error):
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)
                continue
            delay = RETRY_FIRST
            try:
                await self._listen(connection)
            except Exception as error:
                if not is_connection_loss(error):
                    raise
                log.warning("change feed: LISTEN connection lost (%s); reconnecting", error)
            finally:
                self.connected.clear()
                connection.terminate()

    async def _listen(self, connection: Any) -> None:
        closed = asyncio.Event()
        connection.add_termination_listener(lambda _connection: closed.set())
        await connection.add_listener(CHANGES_CHANNEL, self._changes)
        await connection.add_listener(INBOX_CHANNEL, self._inbox)
        await connection.add_listener(AGENTS_CHANNEL, self._agents)
        await connection.add_listener(STOPS_CHANNEL, self._stops)
        await connection.add_listener(OFFERS_CHANNEL, self._offers)
        self.connected.set()
        while not closed.is_set():
            self._wake_everyone()  # after (re)connecting, then as the safety net
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(closed.wait(), SAFETY_NET)
        log.warning("change feed: LISTEN connection closed; reconnecting")

    def _wake_everyone(self) -> None:
        for waiting in self._followers.values():
            for event in waiting:
                event.set()
        for listener in self._inbox_listeners:
            listener(None)
        for agent_listener in self._agent_listeners:
            agent_listener(None)
        for offer_listener in self._offer_listeners:
            offer_listener(False)

    def _offers(self, _connection: Any, _pid: int, _channel: str, _payload: str) -> None:
        for listener in self._offer_listeners:
            listener(True)

    def _agents(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        for listener in self._agent_listeners:
            listener(payload or None)

    def _stops(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        for listener in self._stop_listeners:
            listener(payload)

    def _changes(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        if not payload:
            self._wake_everyone()
            return
        for build_id in payload.split(","):
            for event in self._followers.get(build_id, ()):
                event.set()

    def _inbox(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            shards: set[int] | None = {int(payload)}
        except ValueError:
            shards = None
        for listener in self._inbox_listeners:
            listener(shards)
