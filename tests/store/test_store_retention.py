"""Retention in the store contract, on every backend: a purge deletes exactly what is
past the policy (finished builds with their jobs, steps and submit keys; audit records
whose build is gone; finished webhook deliveries) and nothing else, in transactions
of a bounded size; its dry run counts the same rows; the sizes count every table.

Times are the domain's own (finished_at of each build), so the policy's clock is a
parameter: no sleeps, and "one second inside the window" is exact."""

from __future__ import annotations

import pytest
from buildcontrol_server.domain import cancellation
from buildcontrol_server.domain.deliveries import DeliveryLog, DeliveryState
from buildcontrol_server.domain.errors import InvalidArgument
from buildcontrol_server.domain.model import CancelRecord, ChangeSet
from buildcontrol_server.domain.retention import DAY_SECONDS, Cutoffs, RetentionPolicy
from buildcontrol_server.store.base import BuildStore

from tests.store.outbox_samples import ENDPOINTS
from tests.store.retention_samples import NOW, WINDOW, finished, running
from tests.support.store_samples import (
    STOP_TIMES,
    T0,
    cancel_info,
    canceled,
    wide_spec,
)

POLICY = RetentionPolicy(builds_days=90, audit_days=365, deliveries_days=30)


async def purge_all(store: BuildStore, cutoffs: Cutoffs, max_rows: int = 1_000) -> list[int]:
    """Purge batch after batch until nothing is past the cut-offs; rows per batch."""
    batches = []
    while (batch := await store.retention.purge_builds_batch(cutoffs, max_rows)) is not None:
        batches.append(batch.total)
    return batches


async def test_purge_deletes_finished_builds_past_the_window_and_nothing_else(
    store: BuildStore,
) -> None:
    past = await finished(store, NOW - WINDOW - 1)
    long_past = await finished(store, NOW - 2 * WINDOW)
    inside = await finished(store, NOW - WINDOW + 1)
    old_running = await running(store, NOW - 3 * WINDOW)
    cancelling = await running(store, NOW - 3 * WINDOW + 10)
    await store.commit(
        cancellation.cancel(cancelling, cancel_info(NOW - 2 * WINDOW), STOP_TIMES, NOW).changes
    )
    before = (await store.retention.sizes()).rows

    assert await purge_all(store, POLICY.cutoffs(NOW)) == [14]

    assert await store.get_build(past.build_id) is None
    assert await store.get_build(long_past.build_id) is None
    for kept in (inside, old_running, cancelling):
        assert await store.get_build(kept.build_id) == kept
    after = (await store.retention.sizes()).rows
    assert {t: before[t] - after[t] for t in ("builds", "jobs", "steps")} == {
        "builds": 2,
        "jobs": 4,
        "steps": 8,
    }
    assert await store.retention.purge_builds_batch(POLICY.cutoffs(NOW)) is None


async def test_each_purge_transaction_stays_within_the_row_budget(store: BuildStore) -> None:
    for n in range(12):
        await finished(store, T0 + n)
    # One build is 7 rows (itself, 2 jobs, 4 steps): 3 builds fit in 25 rows.
    assert await purge_all(store, Cutoffs(builds_before=NOW), max_rows=25) == [21] * 4
    assert (await store.retention.sizes()).rows["builds"] == 0


async def test_one_build_larger_than_the_budget_is_still_purged_alone(store: BuildStore) -> None:
    await finished(store, T0)
    assert await purge_all(store, Cutoffs(builds_before=NOW), max_rows=3) == [7]


async def test_builds_max_keeps_the_newest_finished_builds(store: BuildStore) -> None:
    builds = [await finished(store, NOW - 10 + n) for n in range(5)]
    live = await running(store, NOW - 100)
    cutoffs = RetentionPolicy(builds_days=None, builds_max=2).cutoffs(NOW)
    assert (await store.retention.preview(cutoffs))["builds"] == 3
    await purge_all(store, cutoffs)
    kept = {b.build_id for b in await store.list_builds(10)}
    assert kept == {builds[3].build_id, builds[4].build_id, live.build_id}


async def test_submit_keys_go_with_their_build(store: BuildStore) -> None:
    old = await finished(store, NOW - WINDOW - 10, key="push-1")
    new = await finished(store, NOW - 10, key="push-2")
    await purge_all(store, POLICY.cutoffs(NOW))
    assert await store.submit_request("alice", "push-1") is None
    assert await store.submit_request("alice", "push-2") == ("digest", new.build_id)
    assert await store.get_build(old.build_id) is None


async def test_audit_records_outlive_their_build_until_their_own_window(
    store: BuildStore,
) -> None:
    # Finished 100 days ago (build past its window, record inside its own) and 400
    # days ago (both past); a record past its window whose build is kept stays.
    recent, old = await finished(store, NOW - 100 * DAY_SECONDS), await finished(store, T0 - 1)
    kept_build = await finished(store, NOW - 380 * DAY_SECONDS)
    records = [CancelRecord.of(b) for b in (recent, old, kept_build)]
    await store.commit(ChangeSet(audit=records))
    cutoffs = Cutoffs(builds_before=NOW - 370 * DAY_SECONDS, audit_before=NOW - 365 * DAY_SECONDS)
    cutoffs_builds_only = Cutoffs(builds_before=NOW - WINDOW)

    preview = await store.retention.preview(cutoffs)
    assert (preview["builds"], preview["cancel_audit"]) == (2, 2)
    await purge_all(store, cutoffs)
    assert await store.retention.purge_audit_batch(cutoffs) == 2
    assert [r.build_id for r in await store.audit_records()] == [recent.build_id]

    await purge_all(store, cutoffs_builds_only)
    assert await store.retention.purge_audit_batch(POLICY.cutoffs(NOW)) == 0
    assert [r.build_id for r in await store.audit_records()] == [recent.build_id]


async def notified(store: BuildStore, finished_at: float) -> str:
    build, (insert, cancel) = canceled(wide_spec(1, 1), now=finished_at - 5)
    cancellation.queue_notification(build, cancel, ENDPOINTS)
    await store.commit(insert)
    await store.commit(cancel)
    return f"{build.build_id}.build.canceled"


def log(delivery_id: str, endpoint: int, state: DeliveryState) -> DeliveryLog:
    e = ENDPOINTS[endpoint]
    return DeliveryLog(delivery_id, e.key, e.label, state, 1, 200, None, T0)


async def test_finished_deliveries_past_the_window_go_and_unfinished_ones_stay(
    store: BuildStore,
) -> None:
    done = await notified(store, NOW - 31 * DAY_SECONDS)
    half = await notified(store, NOW - 31 * DAY_SECONDS + 1)
    recent = await notified(store, NOW - 29 * DAY_SECONDS)
    await store.commit(
        ChangeSet(
            deliveries=[
                log(done, 0, DeliveryState.DELIVERED),
                log(done, 1, DeliveryState.REJECTED),
                log(half, 0, DeliveryState.DELIVERED),
                log(recent, 0, DeliveryState.DELIVERED),
                log(recent, 1, DeliveryState.DELIVERED),
            ]
        )
    )
    cutoffs = POLICY.cutoffs(NOW)
    preview = await store.retention.preview(cutoffs)
    assert (preview["webhook_outbox"], preview["webhook_deliveries"]) == (1, 2)
    assert await store.retention.purge_deliveries_batch(cutoffs) == {
        "webhook_deliveries": 2,
        "webhook_outbox": 1,
    }
    assert await store.webhook_outbox_entry(done) is None
    assert await store.webhook_outbox_entry(half) is not None
    assert await store.webhook_outbox_entry(recent) is not None
    assert await store.retention.purge_deliveries_batch(cutoffs) == {}


async def test_dry_run_counts_what_the_purge_then_deletes_and_deletes_nothing(
    store: BuildStore,
) -> None:
    for n in range(3):
        await finished(store, NOW - WINDOW - 100 + n, key=f"k{n}")
    await finished(store, NOW - 5)
    await running(store, T0)
    cutoffs = POLICY.cutoffs(NOW)
    before = (await store.retention.sizes()).rows
    preview = await store.retention.preview(cutoffs)
    assert (await store.retention.sizes()).rows == before
    assert {t: n for t, n in preview.items() if n} == {
        "builds": 3,
        "jobs": 6,
        "steps": 12,
        "submit_requests": 3,
    }
    deleted: dict[str, int] = {}
    while (batch := await store.retention.purge_builds_batch(cutoffs)) is not None:
        for table, n in batch.rows.items():
            deleted[table] = deleted.get(table, 0) + n
    assert {t: n for t, n in deleted.items() if n} == {t: n for t, n in preview.items() if n}


async def test_sizes_count_rows_per_table_and_the_oldest_finished_build(
    store: BuildStore,
) -> None:
    empty = await store.retention.sizes()
    assert set(empty.rows.values()) == {0} and empty.oldest_finished_at is None
    assert empty.database_bytes > 0
    await finished(store, T0 + 50)
    await finished(store, T0 + 20)
    await running(store, T0)
    sizes = await store.retention.sizes()
    assert (sizes.rows["builds"], sizes.rows["jobs"], sizes.rows["steps"]) == (3, 6, 12)
    assert sizes.oldest_finished_at == T0 + 20


def test_a_policy_refuses_windows_of_no_time() -> None:
    for bad in ({"builds_days": 0.0}, {"audit_days": -1.0}, {"builds_max": 0}):
        with pytest.raises(InvalidArgument):
            RetentionPolicy(**bad)  # type: ignore[arg-type]
