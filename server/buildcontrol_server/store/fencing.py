"""Fencing of a replica's writes: a change set commits only while its writer still
holds, in the same transaction, the lease epoch of every shard of builds it touches.

A replica that lost a shard's lease (paused, partitioned, slow to notice) is a zombie
for that shard: another replica took it over and bumped its epoch. Each transaction
of the fenced writer first reads the leases of the shards it writes `FOR SHARE`
(store/postgres_fenced_writer.py): a takeover (an UPDATE of those rows) waits for the
transaction to end, and a transaction that starts after the takeover sees the new
epoch and writes nothing for that shard. So no write of a zombie ever commits, even
one it had already begun (Temporal's range id works the same way)."""

from __future__ import annotations

from typing import Protocol

from buildcontrol_server.store.errors import StoreUnavailable
from buildcontrol_server.store.rows import PreparedWrite


class Fence(Protocol):
    """What the fenced writer asks the replica's leases (replicas/leases.py)."""

    @property
    def instance_id(self) -> str:
        """The replica's id in the lease rows."""
        ...

    def shard_of(self, build_id: str) -> int: ...

    def epoch(self, shard: int) -> int | None:
        """The epoch of `shard` this replica holds, None if it holds none."""
        ...

    def lost(self, shards: set[int]) -> None:
        """A transaction found these shards taken over: stop acting for them."""
        ...


# The channel every replica LISTENs on for committed changes (replicas/change_feed.py):
# one NOTIFY per batch, its payload the ids of the builds written, comma-separated, or
# "" (re-read every build followed) when they would not fit in a NOTIFY's payload.
CHANGES_CHANNEL = "buildcontrol_changes"
MAX_PAYLOAD = 7_900


def changes_payload(build_ids: set[str]) -> str:
    payload = ",".join(sorted(build_ids))
    return payload if len(payload) <= MAX_PAYLOAD else ""


class FencedOut(StoreUnavailable):
    """The change set touches a shard whose lease this replica no longer holds:
    nothing of it was written; its build is owned by another replica now."""


def build_of_job(job_id: str) -> str:
    """A job's build (job ids are `<build id>-j<n>`, store/rows.py's keys)."""
    return job_id.rsplit("-j", 1)[0]


def builds_written(write: PreparedWrite) -> set[str]:
    """The builds whose rows (build, jobs, steps) `write` inserts or updates."""
    builds: set[str] = set()
    for key in write.inserted | write.updated:
        kind, entity = key[0], str(key[1])
        builds.add(entity if kind == "build" else build_of_job(entity))
    return builds
