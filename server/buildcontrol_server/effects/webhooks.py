"""Webhook notifications of finished cancels: best effort, bounded, never in the way.

`notify()` queues the record for every endpoint and returns; one worker task per
endpoint POSTs the JSON (`{"event": "build.canceled", "build_id": …, "record": …}`,
the record as the audit stores it). The audit is the record of a cancel; a webhook
is a courtesy, so when something has to give, notifications give:

- a full queue drops its OLDEST notification (the newest state is the most useful);
- a failed request (timeout, connection error, 5xx, 429) is retried with full-jitter
  exponential backoff (a 429/503 `Retry-After` is honoured up to `max_delay`), at
  most `max_attempts` requests per notification, then given up; other 4xx mean the
  receiver does not want it: no retry;
- a circuit breaker per endpoint (breaker.py) skips a receiver that keeps failing,
  so one dead endpoint costs a few requests per cooldown, not a timeout per cancel;
- `stop(timeout)` waits at most `timeout` for the workers, then cancels them.

Every drop is counted (buildcontrol_webhook_deliveries_total by result). One worker
per endpoint means one request in flight per endpoint and notifications to an
endpoint in cancel order; a slow endpoint never delays another.

Metric labels and log lines name an endpoint by position and host only
("0:hooks.example.com:443"): webhook URLs often carry their secret in the path or
query string, which must not reach a metrics scrape or a log file.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from enum import Enum

import httpx

from buildcontrol_server import metrics
from buildcontrol_server.domain.model import CancelRecord
from buildcontrol_server.effects.backoff import full_jitter
from buildcontrol_server.effects.breaker import BreakerState, CircuitBreaker
from buildcontrol_server.store.audit_records import record_to_dict

log = logging.getLogger(__name__)

EVENT = "build.canceled"
HEADERS = {
    "content-type": "application/json",
    "user-agent": "buildcontrol-webhooks",
    "x-buildcontrol-event": EVENT,
}
# Read at most this much of a response body: enough for the connection to be reused
# after a normal reply, and a receiver cannot make us buffer megabytes.
MAX_RESPONSE_BYTES = 64 * 1024
# After `stop()`'s timeout, how long cancelled workers get to unwind (closing sockets).
CANCEL_GRACE = 0.1


class _Result(Enum):
    DELIVERED = "delivered"
    REJECTED = "rejected"  # 4xx other than 429: the receiver refused; retrying won't help
    FAILED = "failed"  # timeout, connection error, 5xx, 429: worth another try


def payload(record: CancelRecord) -> bytes:
    body = {"event": EVENT, "build_id": record.build_id, "record": record_to_dict(record)}
    return json.dumps(body, separators=(",", ":")).encode()


class _Endpoint:
    """One receiver: its queue, breaker, worker task and metric children."""

    def __init__(self, index: int, url: str, breaker: CircuitBreaker) -> None:
        # The messages leave the URL out: it may hold a secret (see the module doc).
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL:
            raise ValueError(f"webhook #{index} is not a valid URL") from None
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ValueError(f"webhook #{index} is not an http(s) URL with a host")
        self.url = url
        default_port = 443 if parsed.scheme == "https" else 80
        self.label = f"{index}:{parsed.host}:{parsed.port or default_port}"
        self.breaker = breaker
        # Unbounded asyncio.Queue; the bound is enforced by notify(), which drops the
        # oldest instead of refusing the newest. None tells the worker to finish.
        self.queue: asyncio.Queue[CancelRecord | None] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None
        self.depth = metrics.WEBHOOK_QUEUE_DEPTH.labels(endpoint=self.label)
        self.state = metrics.WEBHOOK_BREAKER_STATE.labels(endpoint=self.label)
        self.seconds = metrics.WEBHOOK_REQUEST_SECONDS.labels(endpoint=self.label)
        self.state.set(breaker.state)

    def count(self, result: str) -> None:
        metrics.WEBHOOK_DELIVERIES.labels(endpoint=self.label, result=result).inc()

    def show_state(self) -> None:
        self.state.set(self.breaker.state)


class WebhookNotifier:
    def __init__(
        self,
        urls: list[str],
        max_attempts: int = 5,
        base_delay: float = 0.2,
        max_delay: float = 10.0,
        request_timeout: float = 5.0,
        breaker_threshold: int = 5,
        breaker_cooldown: float = 30.0,
        queue_size: int = 10_000,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`clock` (monotonic seconds) times the breakers' cooldowns; tests move it."""
        if max_attempts < 1 or queue_size < 1 or request_timeout <= 0:
            raise ValueError("max_attempts, queue_size and request_timeout must be positive")
        self._max_attempts = max_attempts
        self._base_delay = base_delay
        self._max_delay = max_delay
        self._request_timeout = request_timeout
        self._queue_size = queue_size
        self._endpoints = [
            _Endpoint(n, url, CircuitBreaker(breaker_threshold, breaker_cooldown, clock))
            for n, url in enumerate(urls)
        ]
        self._client: httpx.AsyncClient | None = None
        self._stopped = False

    @property
    def labels(self) -> list[str]:
        """Each endpoint's metric label, in the order of `urls`."""
        return [endpoint.label for endpoint in self._endpoints]

    def breaker_states(self) -> list[BreakerState]:
        return [endpoint.breaker.state for endpoint in self._endpoints]

    def notify(self, record: CancelRecord) -> None:
        """Queue `record` for every endpoint. Returns at once, never raises."""
        for endpoint in self._endpoints:
            if self._stopped:
                endpoint.count("dropped_shutdown")
                continue
            queue = endpoint.queue
            if queue.qsize() >= self._queue_size:
                queue.get_nowait()
                queue.task_done()
                endpoint.count("dropped_queue_full")
            queue.put_nowait(record)
            endpoint.depth.set(queue.qsize())

    async def start(self) -> None:
        if self._client is not None:
            raise RuntimeError("the webhook notifier is already started")
        # httpx logs every request's full URL at INFO ("HTTP Request: POST https://…"):
        # that would put the receivers' secrets in the server log. Its own level, so a
        # root logger at DEBUG (a --log-level, a test) does not bring the lines back.
        httpx_log = logging.getLogger("httpx")
        httpx_log.setLevel(max(httpx_log.level, logging.WARNING))
        # httpx's timeout bounds each phase (connect, write, read); the total per
        # request is bounded separately with asyncio.timeout in _post.
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(self._request_timeout),
            follow_redirects=False,
        )
        for endpoint in self._endpoints:
            endpoint.task = asyncio.create_task(
                self._work(endpoint), name=f"webhook-{endpoint.label}"
            )

    async def join(self) -> None:
        """Wait until every notification queued so far was delivered or dropped."""
        await asyncio.gather(*(endpoint.queue.join() for endpoint in self._endpoints))

    # The bound is the API: shutdown must never wait on a receiver. On expiry the
    # workers are cancelled and what is left counted, which asyncio.timeout cannot do.
    async def stop(self, timeout: float) -> None:  # noqa: ASYNC109
        """Stop accepting; give queued and in-flight deliveries at most `timeout`
        seconds (plus the few ms that cancelling takes), then cancel them."""
        if self._stopped:
            return
        self._stopped = True
        tasks = [endpoint.task for endpoint in self._endpoints if endpoint.task is not None]
        for endpoint in self._endpoints:
            endpoint.queue.put_nowait(None)
        try:
            if tasks:
                _, pending = await asyncio.wait(tasks, timeout=timeout)
                for task in pending:
                    task.cancel()
                if pending:
                    await asyncio.wait(pending, timeout=CANCEL_GRACE)
        finally:
            for task in tasks:
                task.cancel()  # no-op for finished ones; covers stop() being cancelled
            self._abandon_queued()
            if self._client is not None:
                await self._client.aclose()

    def _abandon_queued(self) -> None:
        for endpoint in self._endpoints:
            left = 0
            while not endpoint.queue.empty():
                if endpoint.queue.get_nowait() is not None:
                    left += 1
                endpoint.queue.task_done()
            if left:
                metrics.WEBHOOK_DELIVERIES.labels(
                    endpoint=endpoint.label, result="dropped_shutdown"
                ).inc(left)
                log.warning(
                    "webhook %s: %d notifications not sent (shutdown)", endpoint.label, left
                )
            endpoint.depth.set(0)

    # ---- one worker per endpoint ---------------------------------------------------

    async def _work(self, endpoint: _Endpoint) -> None:
        while True:
            record = await endpoint.queue.get()
            try:
                if record is None:
                    return
                await self._deliver(endpoint, record)
            except asyncio.CancelledError:
                if record is not None:
                    endpoint.count("dropped_shutdown")
                raise
            except Exception:
                # A bug, not a receiver's failure (those are results): log it and keep
                # the worker alive for the next notification.
                log.exception("webhook %s: delivery failed unexpectedly", endpoint.label)
                endpoint.count("gave_up")
            finally:
                endpoint.queue.task_done()
                endpoint.depth.set(endpoint.queue.qsize())

    async def _deliver(self, endpoint: _Endpoint, record: CancelRecord) -> None:
        body = payload(record)
        breaker = endpoint.breaker
        for attempt in range(1, self._max_attempts + 1):
            if not breaker.allow():
                endpoint.count("dropped_breaker_open")
                return
            endpoint.show_state()  # allow() may have moved open → half-open
            result, retry_after = await self._post(endpoint, body)
            if result is not _Result.FAILED:
                breaker.succeeded()  # a 4xx too: the receiver is up and answering
                endpoint.show_state()
                endpoint.count(result.value)
                if result is _Result.REJECTED:
                    log.warning("webhook %s refused build %s", endpoint.label, record.build_id)
                return
            breaker.failed()
            endpoint.show_state()
            if attempt == self._max_attempts or breaker.state is BreakerState.OPEN:
                endpoint.count("gave_up")
                log.warning(
                    "webhook %s: gave up on build %s after %d attempts%s",
                    endpoint.label,
                    record.build_id,
                    attempt,
                    " (breaker opened)" if breaker.state is BreakerState.OPEN else "",
                )
                return
            endpoint.count("retried")
            delay = full_jitter(attempt, self._base_delay, self._max_delay)
            if retry_after is not None:
                delay = max(delay, min(retry_after, self._max_delay))
            await asyncio.sleep(delay)

    async def _post(self, endpoint: _Endpoint, body: bytes) -> tuple[_Result, float | None]:
        assert self._client is not None
        started = time.perf_counter()
        try:
            async with (
                asyncio.timeout(self._request_timeout),
                self._client.stream("POST", endpoint.url, content=body, headers=HEADERS) as reply,
            ):
                received = 0
                async for chunk in reply.aiter_raw():
                    received += len(chunk)
                    if received >= MAX_RESPONSE_BYTES:
                        break
        except (TimeoutError, httpx.HTTPError) as error:
            log.info("webhook %s: request failed: %s", endpoint.label, type(error).__name__)
            return _Result.FAILED, None
        finally:
            endpoint.seconds.observe(time.perf_counter() - started)
        status = reply.status_code
        if 200 <= status < 300:
            return _Result.DELIVERED, None
        if status == 429 or status >= 500:
            log.info("webhook %s: answered %d", endpoint.label, status)
            return _Result.FAILED, _retry_after(reply.headers.get("retry-after"))
        return _Result.REJECTED, None


def _retry_after(value: str | None) -> float | None:
    """Seconds of a Retry-After header (the HTTP-date form is ignored: rare here)."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None
