"""Columns and rows added after the first schema (job start times, cancel escalations,
delivery logs), on every backend: written by inserts and updates, read back as written."""

from __future__ import annotations

from buildcontrol_server.domain import cancellation
from buildcontrol_server.domain.deliveries import DeliveryLog, DeliveryState
from buildcontrol_server.domain.model import ChangeSet
from buildcontrol_server.domain.states import BuildStatus
from buildcontrol_server.store.base import BuildStore

from tests.store.outbox_samples import ENDPOINTS, with_outbox
from tests.support.store_samples import STOP_TIMES, T0, cancel_info, start_first_job, submitted


async def test_job_start_time_and_cancel_escalations_are_written_and_read_back(
    store: BuildStore,
) -> None:
    build, changes = submitted()
    await store.commit(changes)
    await store.commit(start_first_job(build, now=T0 + 1))
    await store.commit(cancellation.cancel(build, cancel_info(T0 + 2), STOP_TIMES, T0 + 2).changes)
    assert build.status is BuildStatus.CANCELING
    forced = cancel_info(T0 + 3, force=True)
    await store.commit(cancellation.escalate(build, forced, STOP_TIMES, T0 + 3).changes)

    loaded = await store.get_build(build.build_id)

    assert loaded == build
    assert loaded is not None and loaded.cancel is not None
    assert loaded.stages[0].jobs[0].started_at == T0 + 1
    assert [(e.requested_by, e.requested_at, e.force) for e in loaded.cancel.escalations] == [
        ("alice@example.com", T0 + 3, True)
    ]
    [unfinished] = await store.load_unfinished()
    assert unfinished == build


async def test_two_logs_of_one_delivery_in_one_batch_leave_the_last_without_a_replay(
    store: BuildStore,
) -> None:
    build_id, change_sets = with_outbox()
    for changes in change_sets:
        await store.commit(changes)
    delivery_id = f"{build_id}.build.canceled"
    endpoint = ENDPOINTS[0]
    failed = DeliveryLog(
        delivery_id, endpoint.key, endpoint.label, DeliveryState.FAILED, 1, 503, "HTTP 503", T0
    )
    delivered = DeliveryLog(
        delivery_id, endpoint.key, endpoint.label, DeliveryState.DELIVERED, 2, 200, None, T0 + 1
    )
    isolated_before = store.stats.isolated_batches

    errors = await store.commit_all(
        [ChangeSet(deliveries=[failed]), ChangeSet(deliveries=[delivered])]
    )

    assert errors == [None, None]
    # One statement of upserts that names a key twice is refused by PostgreSQL; the
    # batch must not need the change-set-by-change-set replay to get through.
    assert store.stats.isolated_batches == isolated_before
    assert await store.undelivered_webhooks(endpoint.key) == []
    found = await store.webhook_outbox_entry(delivery_id)
    assert found is not None and found[1][endpoint.key] == 2
    [entry] = [
        row.log
        for row in await store.webhook_deliveries(10)
        if row.log is not None and row.log.endpoint == endpoint.key
    ]
    assert entry == delivered
