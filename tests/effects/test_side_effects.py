"""SideEffectsRunner: what the actors call when a cancel is done. It returns at once
(even with a receiver that hangs) and never raises into the actor."""

from __future__ import annotations

import statistics
import time
from dataclasses import replace

import pytest
from buildcontrol_server.domain.model import CancelRecord
from buildcontrol_server.effects.audit import AuditLog
from buildcontrol_server.effects.base import SideEffects
from buildcontrol_server.effects.side_effects import SideEffectsRunner
from buildcontrol_server.effects.webhooks import WebhookNotifier
from buildcontrol_server.store.sqlite import SqliteStore

from tests.support.store_samples import commit_canceled
from tests.support.webhook_receiver import MakeReceiver

from .samples import Deliveries, sample, sample_record

CALLS = 1_000


async def test_cancel_finished_returns_in_microseconds_while_a_webhook_hangs(
    memory_store: SqliteStore, receiver_factory: MakeReceiver
) -> None:
    hanging = await receiver_factory(None)
    notifier = WebhookNotifier([hanging.url], request_timeout=30.0)
    runner = SideEffectsRunner(AuditLog(memory_store), notifier)
    effects: SideEffects = runner
    await runner.start()
    record = sample_record()
    records = [replace(record, build_id=f"b{n:020x}") for n in range(CALLS)]
    effects.cancel_finished(records[0])
    await hanging.next_request()  # the first delivery now hangs

    seconds = []
    for rec in records[1:]:
        started = time.perf_counter()
        effects.cancel_finished(rec)
        seconds.append(time.perf_counter() - started)

    seconds.sort()
    median, p99, worst = statistics.median(seconds), seconds[int(0.99 * len(seconds))], seconds[-1]
    micro = [f"{value * 1e6:.1f} µs" for value in (median, p99, worst)]
    print("cancel_finished over {} calls: median {}, p99 {}, max {}".format(len(seconds), *micro))
    assert median < 50e-6
    assert p99 < 500e-6
    started = time.perf_counter()
    await runner.stop(timeout=0.2)
    assert time.perf_counter() - started < 0.35
    assert len(await memory_store.audit_records()) == CALLS  # the audit kept up regardless
    assert len(hanging.requests) == 1


class Broken:
    """An audit log or notifier whose queue call raises (a bug)."""

    def record(self, record: CancelRecord) -> None:
        raise RuntimeError("audit bug")

    def notify(self, record: CancelRecord) -> None:
        raise RuntimeError("webhook bug")

    async def start(self) -> None:
        return None

    async def stop(self, timeout: float) -> None:  # noqa: ASYNC109
        raise RuntimeError("stop bug")


class Collecting:
    def __init__(self) -> None:
        self.records: list[CancelRecord] = []

    def record(self, record: CancelRecord) -> None:
        self.records.append(record)

    def notify(self, record: CancelRecord) -> None:
        self.records.append(record)

    async def start(self) -> None:
        return None

    async def stop(self, timeout: float) -> None:  # noqa: ASYNC109
        return None


async def test_an_exception_in_one_effect_is_logged_counted_and_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    errors = "buildcontrol_side_effect_errors_total"
    audit_errors = sample(errors, {"effect": "audit"})
    webhook_errors = sample(errors, {"effect": "webhooks"})
    collecting = Collecting()
    record = sample_record()

    SideEffectsRunner(Broken(), collecting).cancel_finished(record)
    SideEffectsRunner(collecting, Broken()).cancel_finished(record)
    await SideEffectsRunner(Broken(), collecting).stop(timeout=0.1)

    assert collecting.records == [record, record]  # the other effect still ran
    assert sample(errors, {"effect": "audit"}) == audit_errors + 1
    assert sample(errors, {"effect": "webhooks"}) == webhook_errors + 1
    assert "audit bug" in caplog.text and "webhook bug" in caplog.text
    assert "stopping the audit failed" in caplog.text


async def test_start_sweeps_then_delivers_and_stop_flushes_both(
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
    runner.cancel_finished(record)
    await runner.stop(timeout=2.0)

    assert await memory_store.audit_records([record.build_id]) == [record]
    assert counts["delivered"] == 1
    assert [r.json()["build_id"] for r in receiver.requests] == [record.build_id]
