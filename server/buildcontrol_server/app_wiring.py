"""Parts one server process is assembled from (app.py): its clocks, the addresses it
serves on, and the components whose construction is all settings."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from buildcontrol_server.config import Settings
from buildcontrol_server.effects.webhook_events import chosen_events
from buildcontrol_server.effects.webhook_signing import load_secrets
from buildcontrol_server.effects.webhooks import WebhookNotifier
from buildcontrol_server.housekeeping.housekeeper import Housekeeper, HousekeepingSettings
from buildcontrol_server.logs import retention
from buildcontrol_server.logs.store import LogStore
from buildcontrol_server.replicas.chores import RecurringTask
from buildcontrol_server.replicas.leases import ShardLeases
from buildcontrol_server.store.base import BuildStore


@dataclass(frozen=True)
class Clocks:
    """Wall time is only stored and shown; every duration and deadline inside the
    process is on the monotonic clock, which must tick with the event loop's."""

    wall: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic


@dataclass
class Endpoints:
    grpc_port: int
    metrics_port: int
    # The agents-only address (--agent-listen), if any.
    agent_port: int | None = None


def webhook_notifier(
    settings: Settings, store: BuildStore, leases: ShardLeases | None
) -> WebhookNotifier:
    """With replicas, each build's notifications go out from the replica holding its
    shard (replicas/chores.py)."""
    return WebhookNotifier(
        list(settings.webhook_urls),
        max_attempts=settings.webhook_max_attempts,
        base_delay=settings.webhook_base_delay,
        request_timeout=settings.webhook_request_timeout,
        breaker_threshold=settings.webhook_breaker_threshold,
        breaker_cooldown=settings.webhook_breaker_cooldown,
        queue_size=settings.webhook_queue_size,
        secrets=load_secrets(settings.webhook_secrets, len(settings.webhook_urls)),
        events=chosen_events(settings.webhook_events, len(settings.webhook_urls)),
        store=store,
        delivers_here=leases.holds if leases is not None else None,
    )


def housekeeper_for(
    settings: Settings, store: BuildStore, wall: Callable[[], float], logs: LogStore
) -> Housekeeper:
    """Retention purges, compaction and size gauges; the logs of purged builds go too."""
    return Housekeeper(
        store.retention,
        store.stats,
        HousekeepingSettings(
            policy=settings.retention_policy,
            interval=settings.housekeeping_interval,
            pause=settings.housekeeping_pause,
        ),
        clock=wall,
        on_builds_deleted=retention.deleting_logs_of(logs),
    )


def log_retention_for(
    settings: Settings, logs: LogStore, wall: Callable[[], float]
) -> RecurringTask:
    """The log retention rounds (`--log-retention`), as a chore started and stopped."""
    return RecurringTask(
        lambda: retention.keep_retention(logs, settings.log_retention_days, wall),
        "log-retention",
    )
