"""Shard leases: which replica owns which builds, renewed in the database.

Builds are spread over N shards (`shard_of`: a stable hash of the build id, mod N).
Each shard has one row in `shard_leases` (owner, epoch, expires_at). Every replica
runs one loop that, every quarter of the lease:

- renews its own row in `replicas` (so the others know how many are alive) and the
  leases it holds; a lease it finds no longer its own is lost;
- takes free or expired shards up to its share (N / live replicas, rounded up),
  bumping each one's epoch (the fencing token every write checks: store/fencing.py);
- hands back its surplus when more replicas are alive: its listener first stops the
  shard's actors (their last writes commit), then the lease is freed at once, so the
  new replica does not wait for it to expire.

Times are the database's (`now()`): replicas on hosts whose clocks drift still agree
on when a lease expired. A replica that cannot reach the database stops acting for
its shards once its own (monotonic) view of the lease has run out; writes it had
queued are refused by the fence anyway.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import secrets
import socket
import time
import zlib
from typing import Any, Protocol

from buildcontrol_server import metrics
from buildcontrol_server.store.postgres_connections import PostgresConnections

log = logging.getLogger(__name__)

ENSURE_SHARDS = (
    "INSERT INTO shard_leases (shard) SELECT generate_series(0, $1::int - 1)"
    " ON CONFLICT (shard) DO NOTHING"
)
HEARTBEAT = (
    "INSERT INTO replicas (instance_id, name, expires_at)"
    " VALUES ($1, $2, now() + $3::float8 * interval '1 second')"
    " ON CONFLICT (instance_id) DO UPDATE SET expires_at = EXCLUDED.expires_at"
)
LIVE_REPLICAS = "SELECT count(*) FROM replicas WHERE expires_at > now()"
FORGET_DEAD_REPLICAS = "DELETE FROM replicas WHERE expires_at < now() - interval '1 hour'"
# Every statement that locks lease rows locks them in shard order (the subqueries'
# ORDER BY … FOR UPDATE, the writer's ORDER BY … FOR SHARE): no two of them deadlock.
RENEW = (
    "UPDATE shard_leases SET expires_at = now() + $3::float8 * interval '1 second'"
    " WHERE shard IN (SELECT shard FROM shard_leases"
    " WHERE owner = $1 AND shard = ANY($2::int[]) ORDER BY shard FOR UPDATE)"
    " RETURNING shard, epoch"
)
# SKIP LOCKED: a shard whose row another replica is taking, or whose old owner is
# still inside a write transaction (FOR SHARE), is left for the next round.
TAKE = (
    "UPDATE shard_leases SET owner = $1, epoch = epoch + 1,"
    " expires_at = now() + $3::float8 * interval '1 second'"
    " WHERE shard IN (SELECT shard FROM shard_leases"
    " WHERE shard < $4 AND (owner IS NULL OR expires_at < now())"
    " ORDER BY shard LIMIT $2 FOR UPDATE SKIP LOCKED)"
    " RETURNING shard, epoch"
)
RELEASE = (
    "UPDATE shard_leases SET owner = NULL, expires_at = '-infinity'"
    " WHERE shard IN (SELECT shard FROM shard_leases"
    " WHERE owner = $1 AND shard = ANY($2::int[]) ORDER BY shard FOR UPDATE)"
)
LEAVE = "DELETE FROM replicas WHERE instance_id = $1"


def shard_of(build_id: str, shards: int) -> int:
    """The shard of a build: the same on every replica and across restarts (Python's
    own hash() of a str is salted per process)."""
    return zlib.crc32(build_id.encode()) % shards


class LeaseListener(Protocol):
    """Told by the leases what to do with a shard's builds (replicas/takeover.py)."""

    async def gained(self, shards: set[int]) -> None:
        """Recover the unfinished builds of these shards (now owned here)."""
        ...

    async def releasing(self, shards: set[int]) -> None:
        """Stop the actors of these shards: their leases are handed back next."""
        ...

    async def lost(self, shards: set[int]) -> None:
        """Stop the actors of these shards: another replica owns them now."""
        ...


class ShardLeases:
    def __init__(self, shards: int, lease_seconds: float, name: str) -> None:
        """`name`: how callers reach this replica (its listen address), shown to a
        caller sent elsewhere."""
        self.shards = shards
        self.lease_seconds = lease_seconds
        self.renew_every = lease_seconds / 4
        self.name = name
        self._instance_id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._held: dict[int, int] = {}  # shard -> epoch
        self._recovering: set[int] = set()
        self._releasing: set[int] = set()
        self._valid_until = 0.0  # monotonic: the leases renewed last run out then
        self._connections: PostgresConnections | None = None
        self._listeners: list[LeaseListener] = []
        self._task: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()
        self.first_round = asyncio.Event()
        # Notified after every round (tests wait on it for a share to settle).
        self.rounds = asyncio.Condition()

    # ---- what the fence and the router ask ----

    @property
    def instance_id(self) -> str:
        return self._instance_id

    def shard_of(self, build_id: str) -> int:
        return shard_of(build_id, self.shards)

    def epoch(self, shard: int) -> int | None:
        return self._held.get(shard)

    def owns(self, build_id: str) -> bool:
        """Commands for `build_id` are taken here (held, recovered, not handed back)."""
        shard = self.shard_of(build_id)
        return shard in self._held and not (shard in self._recovering or shard in self._releasing)

    def holds(self, build_id: str) -> bool:
        """The lease of `build_id`'s shard is held here (being recovered or handed back
        included)."""
        return self.shard_of(build_id) in self._held

    def held(self) -> set[int]:
        return set(self._held)

    def serving(self) -> set[int]:
        """The shards held here whose builds are recovered and not being handed back."""
        return set(self._held) - self._recovering - self._releasing

    def lost(self, shards: set[int]) -> None:
        """The fence found these shards taken over (between two renewals)."""
        gone = shards & set(self._held)
        if gone:
            self._forget(gone)
            task = asyncio.get_running_loop().create_task(self._tell_lost(gone))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    # ---- start / stop ----

    def subscribe(self, listener: LeaseListener) -> None:
        self._listeners.append(listener)

    async def start(self, connections: PostgresConnections) -> None:
        """Take a first share of the shards (and recover them), then keep renewing."""
        self._connections = connections
        async with connections.acquire() as connection:
            await connection.execute(ENSURE_SHARDS, self.shards)
        await self._round_or_log()
        self.first_round.set()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="shard-leases")

    async def stop(self) -> None:
        """Stop renewing (the leases stay until `release_all` or their expiry)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await asyncio.gather(*self._pending, return_exceptions=True)

    async def release_all(self) -> None:
        """Hand every lease back (a clean shutdown: the others take them at once)."""
        shards, self._held = sorted(self._held), {}
        metrics.REPLICA_SHARDS_HELD.set(0)
        if self._connections is None:
            return
        async with self._connections.acquire() as connection:
            if shards:
                await connection.execute(RELEASE, self._instance_id, shards)
            await connection.execute(LEAVE, self._instance_id)
        log.info("replica %s handed back %d shard(s)", self.name, len(shards))

    # ---- the loop ----

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.renew_every)
            await self._round_or_log()

    async def _round_or_log(self) -> None:
        try:
            await self._round()
            async with self.rounds:
                self.rounds.notify_all()
        except Exception as error:  # the database away: leases run out on their own
            log.warning("replica %s: shard leases not renewed: %s", self.name, error)
            if self._held and time.monotonic() > self._valid_until:
                gone = set(self._held)
                log.error("replica %s: leases of %d shard(s) ran out", self.name, len(gone))
                self._forget(gone)
                await self._tell_lost(gone)

    async def _round(self) -> None:
        connections = self._require_connections()
        started = time.monotonic()
        async with connections.acquire() as connection, connection.transaction():
            renewed, live = await self._renew(connection)
            lost = set(self._held) - renewed
            target = math.ceil(self.shards / max(live, 1))
            taken: dict[int, int] = {}
            if len(renewed) < target:
                taken = await self._take(connection, target - len(renewed))
        self._valid_until = started + self.lease_seconds
        lost &= set(self._held)  # not those the fence found lost meanwhile (told already)
        if lost:
            self._forget(lost)
            await self._tell_lost(lost)
        if taken:
            await self._gain(taken)
        surplus = len(self._held) - target
        if surplus > 0:
            await self._release(set(sorted(self._held)[-surplus:]))

    async def _renew(self, connection: Any) -> tuple[set[int], int]:
        await connection.execute(HEARTBEAT, self._instance_id, self.name, self.lease_seconds)
        live = int(await connection.fetchval(LIVE_REPLICAS))
        await connection.execute(FORGET_DEAD_REPLICAS)
        rows = await connection.fetch(
            RENEW, self._instance_id, sorted(self._held), self.lease_seconds
        )
        # A shard re-taken since (another epoch) is not the lease this replica holds.
        renewed = {
            int(row["shard"]) for row in rows if self._held.get(row["shard"]) == row["epoch"]
        }
        return renewed, live

    async def _take(self, connection: Any, wanted: int) -> dict[int, int]:
        rows = await connection.fetch(
            TAKE, self._instance_id, wanted, self.lease_seconds, self.shards
        )
        return {int(row["shard"]): int(row["epoch"]) for row in rows}

    async def _gain(self, taken: dict[int, int]) -> None:
        shards = set(taken)
        self._held.update(taken)
        self._recovering |= shards
        metrics.REPLICA_SHARDS_TAKEN.inc(len(shards))
        metrics.REPLICA_SHARDS_HELD.set(len(self._held))
        log.info("replica %s took %d shard(s): %s", self.name, len(shards), _listed(shards))
        try:
            for listener in self._listeners:
                await listener.gained(shards)
        finally:
            self._recovering -= shards

    async def _release(self, shards: set[int]) -> None:
        self._releasing |= shards
        try:
            for listener in self._listeners:
                await listener.releasing(shards)
        finally:
            # Its actors are stopped: not claimed here any more, even if the release
            # below fails (the lease then simply expires).
            self._releasing -= shards
            for shard in shards:
                self._held.pop(shard, None)
            metrics.REPLICA_SHARDS_HELD.set(len(self._held))
        connections = self._require_connections()
        async with connections.acquire() as connection:
            await connection.execute(RELEASE, self._instance_id, sorted(shards))
        log.info("replica %s handed back %d shard(s): %s", self.name, len(shards), _listed(shards))

    def _forget(self, shards: set[int]) -> None:
        for shard in shards:
            self._held.pop(shard, None)
        metrics.REPLICA_SHARDS_LOST.inc(len(shards))
        metrics.REPLICA_SHARDS_HELD.set(len(self._held))
        log.warning("replica %s lost %d shard(s): %s", self.name, len(shards), _listed(shards))

    async def _tell_lost(self, shards: set[int]) -> None:
        for listener in self._listeners:
            await listener.lost(shards)

    def _require_connections(self) -> PostgresConnections:
        if self._connections is None:
            raise RuntimeError("shard leases not started")
        return self._connections


def _listed(shards: set[int]) -> str:
    return ",".join(str(shard) for shard in sorted(shards))
