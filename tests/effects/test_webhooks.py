"""Webhook delivery against real HTTP receivers on 127.0.0.1: what arrives, retries
and giving up, timeouts, the circuit breaker, the bounded queue, bounded shutdown."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from buildcontrol_server.effects.breaker import BreakerState
from buildcontrol_server.effects.webhooks import WebhookNotifier
from buildcontrol_server.store.audit_records import record_from_dict, record_to_dict

from tests.support.webhook_receiver import MakeReceiver

from .samples import Deliveries, sample, sample_record

# Small delays everywhere: retries are exercised, not waited for.
FAST = {"base_delay": 0.001, "max_delay": 0.01}


class FakeClock:
    """Monotonic seconds that move only when the test says (breaker cooldowns)."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@asynccontextmanager
async def running(
    urls: list[str], stop_timeout: float = 1.0, **options: Any
) -> AsyncIterator[WebhookNotifier]:
    notifier = WebhookNotifier(urls, **{**FAST, **options})
    await notifier.start()
    try:
        yield notifier
    finally:
        await notifier.stop(timeout=stop_timeout)


async def joined(notifier: WebhookNotifier, within: float = 5.0) -> None:
    await asyncio.wait_for(notifier.join(), within)


async def test_delivery_posts_the_record_as_json_to_every_endpoint(
    receiver_factory: MakeReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    first, second = await receiver_factory(200), await receiver_factory(204)
    record = sample_record()
    async with running([first.url, second.url]) as notifier:
        counts = [Deliveries(label) for label in notifier.labels]

        notifier.notify(record)
        requests = [await first.next_request(), await second.next_request()]
        await joined(notifier)

        assert [c["delivered"] for c in counts] == [1, 1]
    for request in requests:
        assert request.method == "POST"
        assert request.path == "/hooks/secret-token?key=also-secret"
        assert request.headers["content-type"] == "application/json"
        assert request.headers["x-buildcontrol-event"] == "build.canceled"
        body = request.json()
        assert body == {
            "event": "build.canceled",
            "build_id": record.build_id,
            "record": record_to_dict(record),
        }
        assert record_from_dict(body["record"]) == record
    # The URL's path and query hold the receiver's secret: never in a log line.
    assert "secret" not in caplog.text


def test_metric_labels_name_the_host_not_the_secret_url() -> None:
    notifier = WebhookNotifier(["https://hooks.example.com/services/T0/B0/XYZ?token=s3cr3t"])
    assert notifier.labels == ["0:hooks.example.com:443"]
    with pytest.raises(ValueError, match="webhook #0"):
        WebhookNotifier(["ftp://example.com/hook"])
    with pytest.raises(ValueError, match="webhook #1 is not a valid URL") as raised:
        WebhookNotifier(["http://ok.example.com", "http://example.com:notaport/s3cr3t"])
    assert "s3cr3t" not in str(raised.value)


@pytest.mark.parametrize("status", [500, 503, 429])
async def test_failing_endpoint_is_tried_max_attempts_times_then_given_up(
    receiver_factory: MakeReceiver, status: int
) -> None:
    failing = await receiver_factory(status)
    async with running([failing.url], max_attempts=3, breaker_threshold=100) as notifier:
        counts = Deliveries(notifier.labels[0])

        notifier.notify(sample_record())
        await joined(notifier)

        assert len(failing.requests) == 3
        assert (counts["retried"], counts["gave_up"], counts["delivered"]) == (2, 1, 0)


async def test_client_error_is_not_retried(receiver_factory: MakeReceiver) -> None:
    refusing = await receiver_factory(404)
    async with running([refusing.url], max_attempts=5) as notifier:
        counts = Deliveries(notifier.labels[0])
        notifier.notify(sample_record())
        await joined(notifier)

        assert len(refusing.requests) == 1
        assert (counts["rejected"], counts["retried"]) == (1, 0)
        assert notifier.breaker_states() == [BreakerState.CLOSED]


async def test_hanging_endpoint_times_out_per_request_then_gives_up(
    receiver_factory: MakeReceiver,
) -> None:
    hanging = await receiver_factory(None)
    options = {"max_attempts": 2, "request_timeout": 0.1, "breaker_threshold": 100}
    async with running([hanging.url], **options) as notifier:
        label = notifier.labels[0]
        counts = Deliveries(label)
        histogram = {"endpoint": label}
        requests_before = sample("buildcontrol_webhook_request_seconds_count", histogram)
        started = time.perf_counter()

        notifier.notify(sample_record())
        await joined(notifier)

        elapsed = time.perf_counter() - started
        assert len(hanging.requests) == 2
        assert (counts["retried"], counts["gave_up"]) == (1, 1)
        assert 0.2 <= elapsed < 1.0  # two timeouts of 0.1 s, nothing longer
        requests = sample("buildcontrol_webhook_request_seconds_count", histogram)
        assert requests == requests_before + 2


async def test_stop_returns_within_its_bound_while_an_endpoint_hangs(
    receiver_factory: MakeReceiver,
) -> None:
    hanging = await receiver_factory(None)
    notifier = WebhookNotifier([hanging.url], request_timeout=30.0, **FAST)
    await notifier.start()
    counts = Deliveries(notifier.labels[0])
    for n in range(3):
        notifier.notify(sample_record(n))
    await hanging.next_request()  # the first delivery is in flight and will hang

    started = time.perf_counter()
    await notifier.stop(timeout=0.2)
    elapsed = time.perf_counter() - started

    assert 0.2 <= elapsed < 0.35
    assert counts["dropped_shutdown"] == 3  # in flight 1 + queued 2
    notifier.notify(sample_record(9))  # after stop: counted, never sent
    assert counts["dropped_shutdown"] == 4
    assert len(hanging.requests) == 1


async def test_breaker_opens_skips_requests_and_half_opens_after_the_cooldown(
    receiver_factory: MakeReceiver,
) -> None:
    failing = await receiver_factory(500)
    clock = FakeClock()
    options: dict[str, Any] = {"max_attempts": 1, "breaker_threshold": 3}
    async with running([failing.url], breaker_cooldown=5.0, clock=clock, **options) as notifier:
        label = notifier.labels[0]
        counts = Deliveries(label)
        state = {"endpoint": label}

        for n in range(3):
            notifier.notify(sample_record(n))
        await joined(notifier)
        assert len(failing.requests) == 3
        assert notifier.breaker_states() == [BreakerState.OPEN]
        assert sample("buildcontrol_webhook_breaker_state", state) == 1

        # Open: dropped without a request, until the cooldown has passed.
        notifier.notify(sample_record(3))
        clock.now += 4.9
        notifier.notify(sample_record(4))
        await joined(notifier)
        assert len(failing.requests) == 3
        assert counts["dropped_breaker_open"] == 2

        # After the cooldown one trial goes out (half-open); it succeeds: closed.
        clock.now += 0.2
        failing.status = 200
        failing.hold = asyncio.Event()
        seen = [failing.arrived.get_nowait() for _ in range(failing.arrived.qsize())]
        assert len(seen) == 3
        notifier.notify(sample_record(5))
        notifier.notify(sample_record(6))
        trial = await failing.next_request()
        assert trial.json()["build_id"] == sample_record(5).build_id
        assert notifier.breaker_states() == [BreakerState.HALF_OPEN]
        assert sample("buildcontrol_webhook_breaker_state", state) == 2
        failing.hold.set()
        await joined(notifier)
        assert notifier.breaker_states() == [BreakerState.CLOSED]
        assert sample("buildcontrol_webhook_breaker_state", state) == 0
        # The endpoint is back: the five it missed (parked) go out again after 5 and 6.
        assert counts["delivered"] == 7
        assert len(failing.requests) == 10
        resent = [request.json()["build_id"] for request in failing.requests[5:]]
        assert sorted(resent) == sorted(sample_record(n).build_id for n in range(5))


async def test_failed_trial_reopens_the_breaker_for_another_cooldown(
    receiver_factory: MakeReceiver,
) -> None:
    failing = await receiver_factory(503)
    clock = FakeClock()
    options: dict[str, Any] = {"max_attempts": 3, "breaker_threshold": 1}
    async with running([failing.url], breaker_cooldown=5.0, clock=clock, **options) as notifier:
        counts = Deliveries(notifier.labels[0])
        notifier.notify(sample_record(0))
        await joined(notifier)
        # The breaker opened at the first failure: no retries against an open breaker.
        assert len(failing.requests) == 1
        assert (counts["gave_up"], counts["retried"]) == (1, 0)

        clock.now += 5.0
        notifier.notify(sample_record(1))  # the trial: one request, fails
        notifier.notify(sample_record(2))  # open again: dropped
        await joined(notifier)

        assert len(failing.requests) == 2
        assert notifier.breaker_states() == [BreakerState.OPEN]
        assert counts["dropped_breaker_open"] == 1


async def test_full_queue_drops_the_oldest_notification(receiver_factory: MakeReceiver) -> None:
    receiver = await receiver_factory(200)
    notifier = WebhookNotifier([receiver.url], queue_size=3, **FAST)
    label = notifier.labels[0]
    counts = Deliveries(label)
    records = [sample_record(n) for n in range(5)]
    for record in records:  # not started yet: everything waits in the queue
        notifier.notify(record)
    assert counts["dropped_queue_full"] == 2
    assert sample("buildcontrol_webhook_queue_depth_notifications", {"endpoint": label}) == 3

    await notifier.start()
    try:
        await joined(notifier)
    finally:
        await notifier.stop(timeout=1.0)

    arrived = [request.json()["build_id"] for request in receiver.requests]
    assert arrived == [record.build_id for record in records[2:]]


async def test_one_slow_endpoint_does_not_delay_another(receiver_factory: MakeReceiver) -> None:
    hanging, healthy = await receiver_factory(None), await receiver_factory(200)
    urls = [hanging.url, healthy.url]
    async with running(urls, request_timeout=30.0, stop_timeout=0.05) as notifier:
        for n in range(3):
            notifier.notify(sample_record(n))
        for _ in range(3):
            await healthy.next_request(within=2.0)
        assert len(hanging.requests) == 1


def test_backoff_waits_grow_and_stay_capped() -> None:
    from buildcontrol_server.effects.backoff import capped_exponential, full_jitter

    assert [capped_exponential(n, 0.2, 1.0) for n in range(1, 6)] == [0.2, 0.4, 0.8, 1.0, 1.0]
    assert capped_exponential(5_000, 0.2, 10.0) == 10.0
    draws: list[Callable[[], float]] = [lambda: 0.0, lambda: 0.5, lambda: 0.999]
    assert [full_jitter(3, 0.2, 10.0, draw) for draw in draws] == [0.0, 0.4, 0.8 * 0.999]
    with pytest.raises(ValueError):
        capped_exponential(0, 0.2, 1.0)
