"""One housekeeping pass on every backend, on an injected clock: it purges what the
policy says, hands each batch's build ids to the logs hook after its commit, counts
what it purged in the metrics and sets the size gauges from the store's own counts;
a failing hook is counted and the purge goes on."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from buildcontrol_server.domain.retention import DAY_SECONDS, RetentionPolicy
from buildcontrol_server.housekeeping import housekeeper as housekeeping
from buildcontrol_server.housekeeping.housekeeper import (
    BUSY_PAUSE_FACTOR,
    BUSY_ROWS_DIVISOR,
    PAUSE_FACTOR,
    Housekeeper,
    HousekeepingSettings,
)
from buildcontrol_server.store.base import BuildStore
from prometheus_client import REGISTRY

from tests.store.retention_samples import NOW, WINDOW, finished, running


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def housekeeper(store: BuildStore, **hook: object) -> Housekeeper:
    settings = HousekeepingSettings(
        policy=RetentionPolicy(builds_days=90), pause=0, max_rows=20, quiet_seconds=0
    )
    return Housekeeper(store.retention, store.stats, settings, lambda: NOW, **hook)  # type: ignore[arg-type]


async def test_a_pass_purges_per_policy_feeds_the_logs_hook_and_the_metrics(
    store: BuildStore,
) -> None:
    old = [await finished(store, NOW - WINDOW - 1 - n) for n in range(7)]
    inside = await finished(store, NOW - WINDOW + 1)
    live = await running(store, NOW - 2 * WINDOW)
    handed: list[list[str]] = []

    async def delete_logs(build_ids: Sequence[str]) -> None:
        # Called after the commit: the builds are gone already.
        assert all([await store.get_build(b) is None for b in build_ids])
        handed.append(list(build_ids))

    purged_before = sample("buildcontrol_retention_purged_rows_total", table="steps")
    counts = await housekeeper(store, on_builds_deleted=delete_logs).run_pass()

    # 20 rows a transaction, 7 a build: 2 builds each, the last one alone.
    assert [len(batch) for batch in handed] == [2, 2, 2, 1]
    assert sorted(b for batch in handed for b in batch) == sorted(b.build_id for b in old)
    assert (counts.rows["builds"], counts.rows["steps"]) == (7, 28)
    assert sample("buildcontrol_retention_purged_rows_total", table="steps") - purged_before == 28
    assert sample("buildcontrol_store_table_rows", table="builds") == 2
    assert sample("buildcontrol_store_table_rows", table="steps") == 8
    assert sample("buildcontrol_store_database_bytes") > 0
    oldest_age = sample("buildcontrol_retention_oldest_finished_build_age_seconds")
    assert oldest_age == NOW - inside.finished_at  # type: ignore[operator]
    assert await store.get_build(live.build_id) == live


async def test_a_failing_logs_hook_is_counted_and_the_purge_goes_on(store: BuildStore) -> None:
    for n in range(5):
        await finished(store, NOW - 200 * DAY_SECONDS - n)

    async def broken(build_ids: Sequence[str]) -> None:
        raise OSError("log volume gone")

    failures = sample("buildcontrol_housekeeping_failures_total", step="builds_deleted_hook")
    counts = await housekeeper(store, on_builds_deleted=broken).run_pass()
    assert counts.rows["builds"] == 5
    after = sample("buildcontrol_housekeeping_failures_total", step="builds_deleted_hook")
    assert after - failures == 3


async def test_the_purge_is_gentler_while_other_writes_commit(
    store: BuildStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    for n in range(6):
        await finished(store, NOW - WINDOW - 1 - n)
    await running(store, NOW)  # commits before the purge are not its traffic
    busy_seen: list[bool] = []

    def recorded(configured: float, last_batch_seconds: float, busy: bool) -> float:
        busy_seen.append(busy)
        return 0.0

    monkeypatch.setattr(housekeeping, "purge_pause", recorded)
    batches: list[int] = []

    async def a_cancel_commits_after_the_first_batch(build_ids: Sequence[str]) -> None:
        batches.append(len(build_ids))
        if len(batches) == 1:
            await running(store, NOW)  # two commits through the writer

    await housekeeper(store, on_builds_deleted=a_cancel_commits_after_the_first_batch).purge(
        RetentionPolicy(builds_days=90).cutoffs(NOW)
    )
    # 20 rows a transaction, 7 a build: 2 builds; after the traffic a longer pause and
    # a transaction of 20 // BUSY_ROWS_DIVISOR rows (one build: a build is never
    # split), then full size again. The purge's own transactions are not traffic.
    assert 20 // BUSY_ROWS_DIVISOR < 7
    assert busy_seen == [True, False, False, False]
    assert batches == [2, 1, 2, 1]


def test_a_pause_is_longer_while_the_server_is_busy_and_follows_a_slow_batch() -> None:
    assert housekeeping.purge_pause(0.05, 0.001, busy=False) == 0.05
    assert housekeeping.purge_pause(0.05, 0.001, busy=True) == 0.05 * BUSY_PAUSE_FACTOR
    assert housekeeping.purge_pause(0.05, 0.1, busy=False) == pytest.approx(PAUSE_FACTOR * 0.1)
    assert housekeeping.purge_pause(0.05, 0.1, busy=True) == pytest.approx(
        PAUSE_FACTOR * 0.1 * BUSY_PAUSE_FACTOR
    )
