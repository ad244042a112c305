"""The log store's setup: its backend for the build store in use, and retention
(`--log-retention`): logs whose last byte is older are deleted, once at start and then
every hour (a clock, not an event, decides when a log is old)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from buildcontrol_server import metrics
from buildcontrol_server.config import Settings
from buildcontrol_server.logs.files import FileLogStore
from buildcontrol_server.logs.postgres import PostgresLogStore
from buildcontrol_server.logs.store import LogStore

log = logging.getLogger("buildcontrol.logs")

RETENTION_ROUND_SECONDS = 3600.0
DAY_SECONDS = 86400.0


def log_store_for(settings: Settings) -> LogStore:
    """Files under the data dir beside SQLite; the database itself for PostgreSQL."""
    if settings.store_url:
        return PostgresLogStore(settings.store_url)
    return FileLogStore(settings.log_dir)


async def delete_expired(store: LogStore, retention_days: float | None, now: float) -> int:
    """One round of retention; how many jobs' logs were deleted."""
    if retention_days is None or retention_days <= 0:
        return 0
    deleted = await store.delete_older_than(now - retention_days * DAY_SECONDS)
    if deleted:
        metrics.LOGS_DELETED.inc(deleted)
        log.info("log retention: deleted the logs of %d jobs", deleted)
    return deleted


async def keep_retention(
    store: LogStore, retention_days: float | None, clock: Callable[[], float]
) -> None:
    """Rounds of retention until cancelled; a failing round is logged and retried."""
    while True:
        try:
            await delete_expired(store, retention_days, clock())
        except (OSError, RuntimeError) as error:
            log.warning("log retention failed (retried in an hour): %s", error)
        await asyncio.sleep(RETENTION_ROUND_SECONDS)


def deleting_logs_of(store: LogStore) -> Callable[[Sequence[str]], Awaitable[None]]:
    """What the purge of builds calls after each commit: delete those builds' logs."""

    async def builds_deleted(build_ids: Sequence[str]) -> None:
        deleted = await store.delete_logs(build_ids)
        metrics.LOGS_DELETED.inc(deleted)

    return builds_deleted
