"""What the actors need from persistence. One implementation per backend (sqlite.py,
postgres.py; factory.py picks one from the store URL); the same test suite
(tests/store) runs against each.

"One server per database" is each backend's own business, taken in `open()`: SQLite
holds a file lock, PostgreSQL a session advisory lock; a second server is refused
with StoreOpenError."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from buildcontrol_server.domain.deliveries import Notification
from buildcontrol_server.domain.model import Build, CancelRecord, ChangeSet
from buildcontrol_server.store.retention import Retention
from buildcontrol_server.store.webhook_rows import OutboxListing, QueuedDelivery


@dataclass
class StoreStats:
    """The store's own counters (also exported as Prometheus metrics).

    `commits` counts transactions that committed; `writes` counts change sets
    applied; `statements` counts SQL statements executed inside write transactions
    (INSERT/UPDATE; one `executemany` counts once; BEGIN/SAVEPOINT/COMMIT do not);
    `failed_writes` counts change sets rejected (their callers got the error);
    `batch_sizes` holds the number of change sets of each commit (failed ones
    included), in order, the most recent 10,000; `rows` counts rows inserted or
    updated by committed change sets; `isolated_batches` counts batches replayed
    change set by change set because one of them failed; `round_trips` (PostgreSQL
    only; SQLite runs in the process) counts the requests write batches sent to the
    database, BEGIN, SAVEPOINT, RELEASE and COMMIT included."""

    commits: int = 0
    writes: int = 0
    statements: int = 0
    failed_writes: int = 0
    batch_sizes: list[int] = field(default_factory=list)
    rows: int = 0
    isolated_batches: int = 0
    round_trips: int = 0


class BuildStore(Protocol):
    stats: StoreStats
    # What messages name: the file, or the URL without its password.
    path: str

    @property
    def available(self) -> bool:
        """False while the database cannot be reached (writes fail with StoreUnavailable)."""

    def watch_availability(self, listener: Callable[[bool], None]) -> None:
        """Call `listener(available)` each time the store turns (un)available."""

    async def open(self) -> None:
        """Check the database, take the one-server lock, migrate, start the writer."""

    async def close(self) -> None:
        """Finish every queued write, then close connections and release the lock."""

    @property
    def retention(self) -> Retention:
        """Purge past a retention policy, its dry run, sizes (store/retention.py)."""

    async def commit(self, changes: ChangeSet) -> None:
        """Persist one change set atomically, sharing a transaction with whatever
        other change sets are queued (group commit). Returns after the commit.
        Every update is compare-and-set on the entity's version; a mismatch raises
        VersionConflict for this change set only, and none of it is written."""

    async def commit_all(self, change_sets: list[ChangeSet]) -> list[BaseException | None]:
        """Like `commit` for several change sets at once (one batch): returns, per
        change set, None or the error that rejected it."""

    async def get_build(self, build_id: str) -> Build | None:
        """The build with its stages, jobs and steps, as last committed."""

    async def list_builds(
        self, limit: int, before_build_id: str | None = None, pipeline: str | None = None
    ) -> list[Build]:
        """Newest first, ids strictly below `before_build_id`; stages left empty."""

    async def load_unfinished(self) -> list[Build]:
        """Every build not in a terminal status, complete (for recovery on start)."""

    async def unfinished_build_ids(self) -> list[str]:
        """The ids of every build not in a terminal status, in id order (cheap: no
        jobs or steps are read)."""

    async def canceling_since(self) -> dict[str, float]:
        """Every build in CANCELING as committed: build id → its cancel's requested_at
        (epoch seconds)."""

    async def submit_request(self, submitter: str, request_id: str) -> tuple[str, str] | None:
        """(digest, build_id) of a stored idempotency key, or None."""

    async def audit_records(self, build_ids: list[str] | None = None) -> list[CancelRecord]:
        """Audit records of the given builds (all when None), ordered by build id;
        builds without a record are left out."""

    async def canceled_without_audit(
        self, limit: int, after_build_id: str | None = None
    ) -> list[Build]:
        """Up to `limit` CANCELED builds, complete, that have no audit record yet,
        oldest first, ids strictly above `after_build_id` (the audit's start-up sweep
        pages with it)."""

    async def undelivered_webhooks(self, endpoint: str) -> list[QueuedDelivery]:
        """Outbox entries not yet delivered (nor refused) at `endpoint`, oldest first."""

    async def webhook_outbox_entry(
        self, delivery_id: str
    ) -> tuple[Notification, dict[str, int]] | None:
        """The notification of one outbox entry and the attempts made so far per
        endpoint key; None if there is no such entry."""

    async def webhook_deliveries(self, limit: int) -> list[OutboxListing]:
        """The newest outbox entries, each with its delivery log per endpoint."""
