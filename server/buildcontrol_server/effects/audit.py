"""The cancel audit's start-up sweep: the records of CANCELED builds that have none.

A cancel's record commits with the write that ends it, in the same transaction
(domain/cancellation.py `record_audit`): no write of its own, and no window in which
a crash leaves a CANCELED build unaudited. What the sweep still finds is older: the
cancels of databases from before the audit (schema < 3), of servers from before the
record rode with the CANCELED write, and of builds ended by hand. Duplicates are
harmless: the row is keyed by build and written with INSERT OR IGNORE (ON CONFLICT DO
NOTHING on PostgreSQL). A failed page is retried with capped exponential backoff.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from functools import partial
from typing import Protocol, TypeVar

from buildcontrol_server import metrics
from buildcontrol_server.domain.model import Build, CancelInfo, CancelRecord, ChangeSet
from buildcontrol_server.effects.backoff import capped_exponential

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_BATCH = 500


class AuditStore(Protocol):
    """The part of BuildStore the sweep uses (small, so tests can wrap it)."""

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

    async def start(self) -> None:
        """Sweep: write the records of CANCELED builds that have none. Returns when it
        is done: from then on the audit is complete."""
        swept = await self._sweep()
        if swept:
            log.info("audit sweep wrote %d records of cancels that had none", swept)

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
        retry_cap). Only cancellation (shutdown during the sweep) ends the retries."""
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
