"""Agents that left this replica but may live on at another one.

The hub gives up on an agent whose stream did not come back within its reconnect
window (AgentLost): on one server its jobs then end LOST. A replica first reads
`agent_sessions`: an agent whose stream another live replica holds (its row rewritten
within FRESH seconds, agent_delivery.py) has moved, not vanished; its jobs go on, its
stops reach it through the agent outbox and its results come back through the build
inbox. Such an agent is looked at again at every safety-net wake-up of the change
feed (about once a second): back here (its Hello settles its jobs), still held
elsewhere, or held nowhere. Held nowhere for a whole reconnect window, it is gone
for good: its builds are told (AgentLost, as on one server) and the agent outbox rows
of those builds for it are deleted, since no replica will send them.

A database that cannot be read is not a reason to wait: the agent is taken for lost,
as on one server (the builds' writes wait for the database anyway).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from buildcontrol_server.agents.events import AgentEvent, AgentEventHandler, AgentLost
from buildcontrol_server.agents.hub import AgentHub
from buildcontrol_server.replicas.leases import ShardLeases
from buildcontrol_server.store.postgres_connections import PostgresConnections

log = logging.getLogger(__name__)

# A holder rewrites its rows every second: a row older than this is of a replica
# that stopped writing (dead, paused, cut off).
FRESH = 5.0
HOLDER = (
    "SELECT r.name FROM agent_sessions s JOIN replicas r ON r.instance_id = s.instance_id"
    " WHERE s.agent_id = $1 AND s.instance_id <> $2 AND r.expires_at > now()"
    " AND s.updated_at > now() - $3::float8 * interval '1 second'"
)
# The same for many agents at once (the away ones, every second): those held elsewhere.
HELD_ELSEWHERE = (
    "SELECT s.agent_id FROM agent_sessions s JOIN replicas r ON r.instance_id = s.instance_id"
    " WHERE s.agent_id = ANY($1::text[]) AND s.instance_id <> $2 AND r.expires_at > now()"
    " AND s.updated_at > now() - $3::float8 * interval '1 second'"
)
FORGET = "DELETE FROM agent_outbox WHERE agent_id = $1 AND build_id = ANY($2::text[])"


@dataclass
class Away:
    jobs: dict[str, str]  # job_id -> build_id, as the hub held them
    # Monotonic time since which no replica holds its stream (None: one does).
    nowhere_since: float | None = None
    # Watched from the start (`watch`: an agent of another replica given a job of
    # this one's), not given up on by the hub: it goes once its jobs here ended.
    watched: bool = False


class AwayAgents:
    """Stands between the hub's AgentLost and the registry (`lost`, its handler)."""

    def __init__(
        self,
        connections: PostgresConnections,
        hub: AgentHub,
        leases: ShardLeases,
        lost: AgentEventHandler,
    ) -> None:
        self._connections = connections
        self._hub = hub
        self._leases = leases
        self._lost = lost
        self._away: dict[str, Away] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._checking: asyncio.Task[None] | None = None

    def agent_event(self, event: AgentEvent) -> None:
        if isinstance(event, AgentLost):
            self._spawn(self._given_up(event))

    def watch(self, agent_id: str, job_id: str, build_id: str) -> None:
        """`agent_id`, whose stream another replica holds, was given `job_id`: looked
        at every second like an agent that moved, lost to the build if no replica
        holds it for a reconnect window (no hub timer: it never left this replica)."""
        away = self._away.setdefault(agent_id, Away({}, watched=True))
        away.jobs[job_id] = build_id

    def woken(self, agent_id: str | None) -> None:
        """The change feed's wake-up (None: the safety net): look at the away agents."""
        if agent_id is None and self._away and (self._checking is None or self._checking.done()):
            self._checking = self._spawn(self._check_all())

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _given_up(self, event: AgentLost) -> None:
        holder = await self._holder(event.agent_id)
        if holder is None:
            await self._gone(event)
            return
        log.info(
            "agent %s did not come back here but is connected to replica %s: its %d job(s) go on",
            event.agent_id,
            holder,
            len(event.jobs),
        )
        away = self._away.setdefault(event.agent_id, Away({}))
        # A later window (a job assigned to it since) adds its jobs to those waiting.
        away.jobs.update(event.jobs)
        away.watched = False  # the hub gave up its jobs: they stay until it is gone

    async def _check_all(self) -> None:
        for agent_id in [a for a in self._away if self._hub.session(a) is not None]:
            del self._away[agent_id]  # back here: its Hello settled its jobs
        for agent_id, away in list(self._away.items()):
            if away.watched:  # only the jobs still on it count
                held = self._hub.held(agent_id)
                away.jobs = {j: b for j, b in away.jobs.items() if j in held}
                if not away.jobs:
                    del self._away[agent_id]
        elsewhere = await self._held_elsewhere(sorted(self._away))
        for agent_id, away in list(self._away.items()):
            if self._hub.session(agent_id) is not None:
                del self._away[agent_id]  # back here while the database was read
                continue
            if agent_id in elsewhere:
                away.nowhere_since = None
                continue
            now = time.monotonic()
            if away.nowhere_since is None:
                away.nowhere_since = now
            elif now - away.nowhere_since >= self._hub.reconnect_window:
                del self._away[agent_id]
                await self._gone(AgentLost(agent_id, away.jobs))

    async def _holder(self, agent_id: str) -> str | None:
        try:
            async with self._connections.acquire() as connection:
                name: str | None = await connection.fetchval(
                    HOLDER, agent_id, self._leases.instance_id, FRESH
                )
                return name
        except Exception as error:
            log.warning("agent %s: where it is connected not known (%s)", agent_id, error)
            return None

    async def _held_elsewhere(self, agent_ids: list[str]) -> set[str]:
        """Which of `agent_ids` another live replica holds (one query for all of them,
        which may be many: the agents of other replicas running this one's jobs)."""
        if not agent_ids:
            return set()
        try:
            async with self._connections.acquire() as connection:
                rows = await connection.fetch(
                    HELD_ELSEWHERE, agent_ids, self._leases.instance_id, FRESH
                )
        except Exception as error:
            log.warning(
                "where %d away agent(s) are connected: not known (%s)", len(agent_ids), error
            )
            return set()
        return {str(row["agent_id"]) for row in rows}

    async def _gone(self, event: AgentLost) -> None:
        """The agent is held by no replica: its builds end its jobs (LOST), and the
        stops left for it in the outbox go."""
        self._lost(event)
        builds = sorted(set(event.jobs.values()))
        try:
            async with self._connections.acquire() as connection:
                await connection.execute(FORGET, event.agent_id, builds)
        except Exception as error:  # rows of a gone agent are only re-read, never sent
            log.warning("agent outbox rows of agent %s not deleted: %s", event.agent_id, error)
