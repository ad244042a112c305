"""SideEffectsRunner: what the actors call when webhook notifications committed. It
returns at once (even with a receiver that hangs) and never raises into the actor."""

from __future__ import annotations

import statistics
import time
from dataclasses import replace

import pytest
from buildcontrol_server.domain.deliveries import Notification
from buildcontrol_server.domain.model import CancelRecord
from buildcontrol_server.domain.notifications import canceled
from buildcontrol_server.effects.audit import AuditLog
from buildcontrol_server.effects.base import SideEffects
from buildcontrol_server.effects.side_effects import SideEffectsRunner
from buildcontrol_server.effects.webhooks import WebhookNotifier
from buildcontrol_server.store.sqlite import SqliteStore

from tests.support.store_samples import commit_canceled
from tests.support.webhook_receiver import MakeReceiver

from .samples import Deliveries, sample, sample_record

CALLS = 1_000


async def test_notifications_return_in_microseconds_while_a_webhook_hangs(
    memory_store: SqliteStore, receiver_factory: MakeReceiver
) -> None:
    hanging = await receiver_factory(None)
    notifier = WebhookNotifier([hanging.url], request_timeout=30.0)
    runner = SideEffectsRunner(AuditLog(memory_store), notifier)
    effects: SideEffects = runner
    await runner.start()
    record = sample_record()
    records = [replace(record, build_id=f"b{n:020x}") for n in range(CALLS)]
    effects.notifications_committed([canceled(records[0])])
    await hanging.next_request()  # the first delivery now hangs

    seconds = []
    for rec in records[1:]:
        notification = canceled(rec)
        started = time.perf_counter()
        effects.notifications_committed([notification])
        seconds.append(time.perf_counter() - started)

    seconds.sort()
    median, p99, worst = statistics.median(seconds), seconds[int(0.99 * len(seconds))], seconds[-1]
    micro = [f"{value * 1e6:.1f} µs" for value in (median, p99, worst)]
    print("notified {} times: median {}, p99 {}, max {}".format(len(seconds), *micro))
    assert median < 50e-6
    assert p99 < 500e-6
    started = time.perf_counter()
    await runner.stop(timeout=0.2)
    assert time.perf_counter() - started < 0.35
    assert len(hanging.requests) == 1


class Broken:
    """A notifier whose queue call and stop raise (a bug)."""

    def notify(self, notification: Notification) -> None:
        raise RuntimeError("webhook bug")

    async def start(self) -> None:
        return None

    async def stop(self, timeout: float) -> None:  # noqa: ASYNC109
        raise RuntimeError("stop bug")


class NoAudit:
    async def start(self) -> None:
        return None


async def test_an_exception_in_the_notifier_is_logged_counted_and_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    errors = "buildcontrol_side_effect_errors_total"
    webhook_errors = sample(errors, {"effect": "webhooks"})
    record = sample_record()
    runner = SideEffectsRunner(NoAudit(), Broken())

    runner.notifications_committed([canceled(record)] * 2)
    await runner.stop(timeout=0.1)

    # One count per notification: a broken one does not keep the next from trying.
    assert sample(errors, {"effect": "webhooks"}) == webhook_errors + 2
    assert "webhook bug" in caplog.text
    assert "stopping the webhooks failed" in caplog.text


async def test_start_sweeps_then_delivers_and_stop_flushes_the_webhooks(
    memory_store: SqliteStore, receiver_factory: MakeReceiver
) -> None:
    receiver = await receiver_factory(200)
    [earlier] = await commit_canceled(memory_store, 1)
    notifier = WebhookNotifier([receiver.url])
    counts = Deliveries(notifier.labels[0])
    runner = SideEffectsRunner(AuditLog(memory_store), notifier)
    await runner.start()
    assert await memory_store.audit_records() == [CancelRecord.of(earlier)]

    record = sample_record(7)
    runner.notifications_committed([canceled(record)])
    await runner.stop(timeout=2.0)

    assert counts["delivered"] == 1
    assert [r.json()["build_id"] for r in receiver.requests] == [record.build_id]
