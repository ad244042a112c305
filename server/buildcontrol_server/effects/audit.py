"""The cancel audit: one record per cancelled build, written behind the transition, in
batches, and never lost.

Write-behind: `record()` only appends to a queue; a writer task stores up to `batch`
records per change set, so the audit shares the store's group-commit transactions
and a burst of 500 cancels costs one audit write, not 500. A failed write is retried
with capped exponential backoff for as long as it takes: a record is never dropped.

Never lost, across crashes too: the record is queued only after the build's CANCELED
state was committed, so any record that was in memory when the process died belongs
to a CANCELED build without an audit row. `start()` first sweeps those and writes
their records (CancelRecord.of the stored build: the same data the actor had). The
same sweep backfills the cancels of databases from before the audit (schema < 3).
Duplicates (a record both swept and queued) are harmless: the row is keyed by build
and written with INSERT OR IGNORE.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import replace
from functools import partial
from itertools import islice
from typing import Protocol, TypeVar

from buildcontrol_server import metrics
from buildcontrol_server.domain.model import Build, CancelInfo, CancelRecord, ChangeSet
from buildcontrol_server.effects.backoff import capped_exponential

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_BATCH = 500


class AuditStore(Protocol):
    """The part of BuildStore the audit uses (small, so tests can wrap it)."""

    async def commit(self, changes: ChangeSet) -> None: ...

    async def canceled_without_audit(
        self, limit: int, after_build_id: str | None = None
    ) -> list[Build]: ...


class AuditLog:
    def __init__(
        self,
        store: AuditStore,
        batch: int = DEFAULT_BATCH,
        *,
        retry_base: float = 0.05,
        retry_cap: float = 5.0,
    ) -> None:
        if batch < 1:
            raise ValueError(f"audit batch must be at least 1, not {batch}")
        self._store = store
        self._batch = batch
        self._retry_base = retry_base
        self._retry_cap = retry_cap
        # Unbounded on purpose: records are small (~1 KB for a build of two jobs,
        # measured), and a bound would mean dropping, which only a restart's sweep
        # could repair.
        self._queue: deque[CancelRecord] = deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def pending(self) -> int:
        """Records queued and not yet committed."""
        return len(self._queue)

    def record(self, record: CancelRecord) -> None:
        """Queue one record. Returns at once; never raises for the store's troubles."""
        self._queue.append(record)
        self._idle.clear()
        self._wake.set()
        metrics.AUDIT_QUEUE_DEPTH.set(len(self._queue))
        if self._closing:
            # Nobody will write it in this process; the build is CANCELED in the store,
            # so the next start's sweep will.
            log.warning("audit log stopped: build %s left to the next sweep", record.build_id)

    async def start(self) -> None:
        """Sweep (write the records of CANCELED builds that have none), then start the
        writer. Returns when the sweep is done: from then on the audit is complete up
        to what is queued."""
        if self._task is not None:
            raise RuntimeError("the audit log is already started")
        swept = await self._sweep()
        if swept:
            log.info("audit sweep wrote %d records of cancels that had none", swept)
        self._task = asyncio.create_task(self._run(), name="audit-writer")
        self._task.add_done_callback(_report_crash)

    async def flush(self) -> None:
        """Wait until the queue is empty: every record queued so far (and any queued
        meanwhile) committed. Only after `start()`: before it nothing writes."""
        await self._idle.wait()

    # The bound is the API (shutdown gives each part its share); on expiry this must
    # cancel the writer and log what is left, which a caller's asyncio.timeout cannot.
    async def stop(self, timeout: float) -> None:  # noqa: ASYNC109
        """Write what is queued, for at most `timeout` seconds; then stop the writer.
        What is left unwritten is logged and recovered by the next start's sweep."""
        self._closing = True
        self._wake.set()
        task = self._task
        if task is None:
            return
        try:
            done, _ = await asyncio.wait({task}, timeout=timeout)
        except asyncio.CancelledError:
            task.cancel()
            raise
        if not done:
            task.cancel()
            # Returns once the cancellation landed; unlike `await task` it does not
            # raise the task's CancelledError into this (not cancelled) caller.
            await asyncio.wait({task})
            log.warning(
                "audit log stopped after %.1fs with %d records unwritten; the next start's"
                " sweep writes them",
                timeout,
                len(self._queue),
            )

    # ---- the writer task ----------------------------------------------------------

    async def _run(self) -> None:
        while True:
            if not self._queue:
                self._idle.set()
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            # Copied, not popped: until the commit succeeds the records stay queued
            # (counted as pending, and retried as the same batch).
            batch = list(islice(self._queue, self._batch))
            await self._retrying(
                f"audit write of {len(batch)} records",
                partial(self._store.commit, ChangeSet(audit=batch)),
            )
            for _ in batch:
                self._queue.popleft()
            metrics.AUDIT_RECORDS_WRITTEN.inc(len(batch))
            metrics.AUDIT_QUEUE_DEPTH.set(len(self._queue))

    async def _sweep(self) -> int:
        swept = 0
        # Paged by build id: each page starts after the last, so the sweep ends even if
        # a write did not stick, and never re-reads the prefix it has done.
        after: str | None = None
        while True:
            builds = await self._retrying(
                "audit sweep read",
                partial(self._store.canceled_without_audit, self._batch, after),
            )
            if not builds:
                return swept
            records = [record_of(build) for build in builds]
            await self._retrying(
                f"audit sweep write of {len(records)} records",
                partial(self._store.commit, ChangeSet(audit=records)),
            )
            after = builds[-1].build_id
            swept += len(records)
            metrics.AUDIT_RECORDS_WRITTEN.inc(len(records))
            metrics.AUDIT_RECORDS_SWEPT.inc(len(records))

    async def _retrying(self, what: str, operation: Callable[[], Awaitable[T]]) -> T:
        """Run `operation` until it succeeds, waiting longer after each failure (up to
        retry_cap). Only `stop()` (by cancelling the task) ends the retries."""
        attempt = 0
        while True:
            try:
                return await operation()
            except Exception as error:  # CancelledError is not an Exception: it passes
                attempt += 1
                delay = capped_exponential(attempt, self._retry_base, self._retry_cap)
                metrics.AUDIT_WRITE_FAILURES.inc()
                log.warning(
                    "%s failed (attempt %d), retrying in %.2fs: %s", what, attempt, delay, error
                )
                await asyncio.sleep(delay)


def record_of(build: Build) -> CancelRecord:
    """The audit record of a stored CANCELED build. Every cancel path stores who/why
    and the end time; a build that lacks them (hand-edited data) still gets a record,
    marked as such, so the sweep never stalls on it."""
    if build.cancel is not None and build.finished_at is not None:
        return CancelRecord.of(build)
    log.warning("build %s is CANCELED without cancel details; audited as unknown", build.build_id)
    finished = build.finished_at if build.finished_at is not None else build.created_at
    unknown = CancelInfo("(not recorded)", "", force=False, grace_period=0.0, requested_at=finished)
    return CancelRecord.of(replace(build, cancel=build.cancel or unknown, finished_at=finished))


def _report_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        # A bug, not a store error (those are retried): say so loudly; the queued
        # records are recovered by the next start's sweep.
        log.error("the audit writer crashed", exc_info=task.exception())
