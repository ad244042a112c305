"""The housekeeping task: every `interval`, purge what is past the retention policy in
small transactions with a pause between them, compact the database when the writer
has been quiet for a moment, and refresh the size gauges.

Off the hot path by construction: one purge transaction deletes at most `max_rows`
rows (a few milliseconds of the writer's lock), and the pause between two of them
lets every cancel, submit and report queued meanwhile commit first. A purge of a
million builds is thus spread over minutes instead of holding the database for one
long transaction.

Logs of deleted builds live outside the database: `on_builds_deleted` is called
after each purge transaction's commit with the ids it deleted (the log store's
`delete_logs(build_ids)`). A failure there is logged and counted, never stops the
purge: the builds are gone already, and the log store can sweep what it still has
of builds the database no longer knows.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from buildcontrol_server import metrics
from buildcontrol_server.domain.retention import Cutoffs, PurgeCounts, RetentionPolicy
from buildcontrol_server.store.base import StoreStats
from buildcontrol_server.store.retention import DEFAULT_MAX_ROWS, Retention, StoreSizes

log = logging.getLogger("buildcontrol.housekeeping")

T = TypeVar("T")

# A pause between two purge transactions lasts at least this many times the last one.
PAUSE_FACTOR = 3.0
# While other writes commit (cancels, reports), the pause is this many times longer
# and a purge transaction deletes this many times fewer rows. Measured beside a
# million finished builds (bench/README.md, "Retention purge"): at the plain pause the
# purge ran about a quarter of the time, on the cores and the disk the cancels need,
# and a cancel that met one of its transactions waited for its COMMIT (~0.7 ms for
# 500 rows): their p99 was up to twice a quiet server's. Gentler while busy, they
# stay within noise of it; an idle server still purges at full speed.
BUSY_PAUSE_FACTOR = 4.0
BUSY_ROWS_DIVISOR = 5

# Called with the ids of each batch of deleted builds, after its commit.
BuildsDeleted = Callable[[Sequence[str]], Awaitable[None]]


DEFAULT_POLICY = RetentionPolicy()


@dataclass(frozen=True)
class HousekeepingSettings:
    policy: RetentionPolicy = DEFAULT_POLICY
    # Seconds between two passes (purge, compaction, gauges); 0: no background passes.
    interval: float = 300.0
    # Seconds between two purge transactions of one pass (at least PAUSE_FACTOR x the
    # last one's time).
    pause: float = 0.05
    # Rows one purge transaction may delete.
    max_rows: int = DEFAULT_MAX_ROWS
    # The writer counts as quiet when it committed nothing for this long: then, and
    # only then, the database is compacted (SQLite's vacuum and WAL checkpoint take
    # the writer's lock).
    quiet_seconds: float = 1.0


class Housekeeper:
    def __init__(
        self,
        retention: Retention,
        stats: StoreStats,
        settings: HousekeepingSettings,
        clock: Callable[[], float] = time.time,
        on_builds_deleted: BuildsDeleted | None = None,
    ) -> None:
        self._retention = retention
        self._stats = stats
        self._settings = settings
        self._clock = clock
        self.on_builds_deleted = on_builds_deleted
        # One purge at a time: a manual purge waits for the background pass.
        self._purging = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._last_batch_seconds = 0.0
        # The writer's commits at the last look: more since then is traffic.
        self._commits_seen = stats.commits
        self._busy = False  # traffic during the last batch or pause

    @property
    def policy(self) -> RetentionPolicy:
        return self._settings.policy

    def start(self) -> None:
        if self._settings.interval > 0 and self._task is None:
            self._task = asyncio.create_task(self._every_interval(), name="housekeeping")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _every_interval(self) -> None:
        # The gauges at once; the first purge one interval after start, not during
        # the recovery of a restarted server (its agents reconnect and report then).
        await self._guarded(self.refresh_gauges)
        while True:
            await asyncio.sleep(self._settings.interval)
            await self._guarded(self.run_pass)

    async def _guarded(self, step: Callable[[], Awaitable[object]]) -> None:
        try:
            await step()
        except asyncio.CancelledError:
            raise
        except Exception:
            # The store failing for a while (PostgreSQL away, disk full) must not end
            # housekeeping for good: the next pass tries again.
            metrics.HOUSEKEEPING_FAILURES.labels("pass").inc()
            log.exception("housekeeping failed; next pass in %.0fs", self._settings.interval)

    async def run_pass(self) -> PurgeCounts:
        """One pass of the policy: purge, compact if quiet, refresh the gauges."""
        purged = await self.purge(self._settings.policy.cutoffs(self._clock()))
        await self.compact_if_quiet()
        await self.refresh_gauges()
        return purged

    async def purge(self, cutoffs: Cutoffs) -> PurgeCounts:
        """Delete everything past `cutoffs`, batch after batch; rows per table."""
        counts = PurgeCounts()
        async with self._purging:
            # Commits before the purge are not its traffic: it starts at full size.
            self._traffic()
            self._busy = False
            while batch := await self._timed(
                self._retention.purge_builds_batch(cutoffs, self._builds_rows)
            ):
                self._count(counts, batch.rows)
                await self._builds_deleted(batch.build_ids)
                await self._pause()
            while audit := await self._timed(
                self._retention.purge_audit_batch(cutoffs, self._max_rows)
            ):
                self._count(counts, {"cancel_audit": audit})
                await self._pause()
            while deliveries := await self._timed(
                self._retention.purge_deliveries_batch(cutoffs, self._max_rows // 4)
            ):
                self._count(counts, deliveries)
                await self._pause()
        if counts.total:
            log.info("purged %s", ", ".join(f"{n} {t}" for t, n in counts.rows.items() if n))
        return counts

    async def preview(self, cutoffs: Cutoffs) -> dict[str, int]:
        return await self._retention.preview(cutoffs)

    @property
    def _max_rows(self) -> int:
        return self._settings.max_rows

    @property
    def _builds_rows(self) -> int:
        """Rows of the next purge transaction of builds: fewer while busy, so a
        commit that meets one waits for a shorter COMMIT."""
        if self._busy:
            return max(1, self._max_rows // BUSY_ROWS_DIVISOR)
        return self._max_rows

    def _count(self, counts: PurgeCounts, rows: dict[str, int]) -> None:
        counts.add(rows)
        for table, count in rows.items():
            if count:
                metrics.RETENTION_PURGED_ROWS.labels(table).inc(count)

    async def _builds_deleted(self, build_ids: Sequence[str]) -> None:
        if self.on_builds_deleted is None:
            return
        try:
            await self.on_builds_deleted(build_ids)
        except asyncio.CancelledError:
            raise
        except Exception:
            metrics.HOUSEKEEPING_FAILURES.labels("builds_deleted_hook").inc()
            log.exception("deleting the logs of %d purged builds failed", len(build_ids))

    async def _timed(self, step: Awaitable[T]) -> T:
        started = time.monotonic()
        try:
            return await step
        finally:
            self._last_batch_seconds = time.monotonic() - started

    async def _pause(self) -> None:
        """See `purge_pause`. Traffic is any commit of the writer since the last look
        (the purge's own transactions do not go through the writer): during the
        batch it lengthens this pause, during the pause it keeps the next batch small."""
        busy = self._traffic()
        await asyncio.sleep(purge_pause(self._settings.pause, self._last_batch_seconds, busy))
        self._busy = self._traffic() or busy

    def _traffic(self) -> bool:
        """Whether the writer committed since the last call."""
        commits, self._commits_seen = self._commits_seen, self._stats.commits
        return self._stats.commits != commits

    async def compact_if_quiet(self) -> int:
        """Compact when no write committed for `quiet_seconds`; what compact freed."""
        commits = self._stats.commits
        await asyncio.sleep(self._settings.quiet_seconds)
        if self._stats.commits != commits:
            return 0
        return await self._retention.compact()

    async def refresh_gauges(self) -> StoreSizes:
        sizes = await self._retention.sizes()
        for table, rows in sizes.rows.items():
            metrics.STORE_TABLE_ROWS.labels(table).set(rows)
        metrics.STORE_DATABASE_BYTES.set(sizes.database_bytes)
        oldest = sizes.oldest_finished_at
        age = max(0.0, self._clock() - oldest) if oldest is not None else 0.0
        metrics.RETENTION_OLDEST_FINISHED_AGE_SECONDS.set(age)
        return sizes


def purge_pause(configured: float, last_batch_seconds: float, busy: bool) -> float:
    """Seconds between two purge transactions: the configured pause, and at least
    PAUSE_FACTOR times what the last batch took (on a slow or loaded machine the
    purge slows down with it, so it never takes more than about a quarter of the
    database's and the CPU's time); BUSY_PAUSE_FACTOR times that while other writes
    commit, so a purge running beside cancels takes a few percent of the time."""
    pause = max(configured, PAUSE_FACTOR * last_batch_seconds)
    return pause * BUSY_PAUSE_FACTOR if busy else pause
