"""The group-commit writer of a replica (--replicas on): every batch is one
transaction that first checks the lease epochs of the shards it writes (fencing.py).

Change sets of shards this replica no longer holds fail with FencedOut and write
nothing; the others of the batch commit in the same transaction, merged in one
SAVEPOINT or, if that misses, one by one, as in postgres_writer.py. Each batch also
NOTIFYs the builds it wrote (fencing.CHANGES_CHANNEL), so a caller following a build
on another replica reads it again.

A batch of updates only (a cancel, agent reports, or a burst of them merged: the
latency path) is one statement in autocommit, as on one server: its CTEs lock and
count the lease rows still held beside the compare-and-sets, the check aborts it
unless every count matched, and it NOTIFYs; one round trip, like an unfenced batch.
A miss of that statement (a version or a lease) writes nothing and the batch is
replayed the long way below, which tells a fenced change set from a conflict. The
long way (inserts, or a shard known lost here) costs BEGIN, the check, the NOTIFY and
COMMIT: four round trips more than the unfenced writer's."""

from __future__ import annotations

from typing import Any

from buildcontrol_server import metrics
from buildcontrol_server.store import postgres_sql as sql
from buildcontrol_server.store import postgres_updates as updates
from buildcontrol_server.store.base import StoreStats
from buildcontrol_server.store.fencing import (
    CHANGES_CHANNEL,
    Fence,
    FencedOut,
    builds_written,
    changes_payload,
)
from buildcontrol_server.store.group_commit import (
    DEFAULT_MAX_BATCH,
    _mergeable,
    _QueuedWrite,
)
from buildcontrol_server.store.postgres_connections import PostgresConnections
from buildcontrol_server.store.postgres_writer import (
    PostgresGroupCommitWriter,
    _merged,
    _updates_only,
    updated_tables,
)

# The leases of the shards a batch writes, locked against a takeover until COMMIT.
CHECK_LEASES = sql.leases_held(0)


NOTIFY = "SELECT pg_notify($1, $2)"


class FencedGroupCommitWriter(PostgresGroupCommitWriter):
    def __init__(
        self,
        connections: PostgresConnections,
        stats: StoreStats,
        fence: Fence,
        max_batch: int = DEFAULT_MAX_BATCH,
    ) -> None:
        super().__init__(connections, stats, max_batch)
        self._fence = fence

    async def _write_on(
        self, connection: Any, batch: list[_QueuedWrite], errors: list[BaseException | None]
    ) -> None:
        if await self._fenced_alone(connection, batch):
            return
        async with self._counted_transaction(connection):
            await self._checked(connection, batch, errors)

    async def _fenced_alone(self, connection: Any, batch: list[_QueuedWrite]) -> bool:
        """The batch as one fenced, self-checking statement in autocommit: False if it
        is not updates only, touches a shard not held here, or missed (nothing
        written, no NOTIFY sent)."""
        if not _mergeable(batch):
            return False
        write = batch[0].write if len(batch) == 1 else _merged(batch)
        if not _updates_only(write):
            return False
        shards = sorted(set[int]().union(*(self._shards_of(queued) for queued in batch)))
        epochs = [self._fence.epoch(shard) for shard in shards]
        if not shards or None in epochs:
            return False
        written = set[str]().union(*(builds_written(queued.write) for queued in batch))
        query, arguments = updates.checked(updated_tables(write), write.insert_audit, fenced=True)
        arguments[-1] = [*arguments[-1], len(shards)]  # the counts: the leases' last
        arguments += [shards, epochs, self._fence.instance_id]
        arguments += [CHANGES_CHANNEL, changes_payload(written)]
        return await self._run_checked(connection, query, arguments)

    def _stopped_error(self) -> BaseException:
        return FencedOut("the writer was stopped; try again")

    async def _checked(
        self, connection: Any, batch: list[_QueuedWrite], errors: list[BaseException | None]
    ) -> None:
        """In the batch's transaction: the leases first, then what they still allow."""
        shards = [self._shards_of(queued) for queued in batch]
        lost = await self._check(connection, set[int]().union(*shards))
        kept: list[_QueuedWrite] = []
        positions: list[int] = []
        for position, touched in enumerate(shards):
            if touched & lost:
                errors[position] = _fenced_out(touched & lost)
            else:
                kept.append(batch[position])
                positions.append(position)
        if not kept:
            return
        kept_errors: list[BaseException | None] = [None] * len(kept)
        await self._write_kept(connection, kept, kept_errors)
        for position, error in zip(positions, kept_errors, strict=True):
            errors[position] = error
        # Delivered at COMMIT only: followers on every replica re-read these builds.
        written = set[str]().union(*(builds_written(queued.write) for queued in kept))
        if written:
            self._round_trips += 1
            await connection.execute(NOTIFY, CHANGES_CHANNEL, changes_payload(written))

    def _shards_of(self, queued: _QueuedWrite) -> set[int]:
        return {self._fence.shard_of(build_id) for build_id in builds_written(queued.write)}

    async def _check(self, connection: Any, shards: set[int]) -> set[int]:
        """The shards of `shards` this replica does not hold (now, in the database)."""
        if not shards:
            return set()
        held = {shard: self._fence.epoch(shard) for shard in shards}
        lost = {shard for shard, epoch in held.items() if epoch is None}
        ask = sorted(shard for shard in shards if shard not in lost)
        if ask:
            self._statements += 1
            self._round_trips += 1
            rows = await connection.fetch(
                CHECK_LEASES, ask, [held[shard] for shard in ask], self._fence.instance_id
            )
            confirmed = {int(row["shard"]) for row in rows}
            taken = set(ask) - confirmed
            if taken:
                # Taken over since the last renewal: the leases stop the shard's actors.
                self._fence.lost(taken)
            lost |= taken
        return lost

    async def _write_kept(
        self, connection: Any, batch: list[_QueuedWrite], errors: list[BaseException | None]
    ) -> None:
        """Inside the checked transaction: merged in one SAVEPOINT, else one by one."""
        if not (_mergeable(batch) and await self._merged_on(connection, batch)):
            await self._isolated_on(connection, batch, errors)


def _fenced_out(shards: set[int]) -> FencedOut:
    metrics.REPLICA_FENCED_WRITES.inc()
    names = ", ".join(str(shard) for shard in sorted(shards))
    return FencedOut(f"shard(s) {names} are owned by another replica now; try again")
