"""Webhook notifications (build.canceled, build.finished, cancel.accepted,
job.stopped): durable, at least once, never in the way (docs/webhooks.md).

Durable: an event's notification is an outbox row written in the same transaction as
the transition that caused it (the actor adds it to that change set). `notify()`,
called after that commit, only queues it in memory for every endpoint subscribed to
its event; `start()` first queues every outbox entry still PENDING or FAILED at each
endpoint, so what a crash or a shutdown left undelivered goes out after the restart.

At least once: every request carries the delivery's id in `X-Buildcontrol-Delivery`
(the same for every retry, endpoint and redelivery). A delivery is done at an
endpoint only after a 2xx; each outcome goes to the delivery log (delivery_log.py).

Bounded: a failed request (timeout, connection error, 5xx, 429) is retried with
full-jitter exponential backoff, at most `max_attempts` in a row; other 4xx are
REJECTED (not retried); a circuit breaker per endpoint (breaker.py) skips a receiver
that keeps failing. A delivery out of attempts, or met by an open breaker, is parked
(FAILED) and queued again once its endpoint answers a 2xx, at the next start, or by
a redelivery. The memory queue is bounded (the oldest leaves memory, not the
outbox); `stop(timeout)` waits at most `timeout`, then cancels the workers.

One worker per endpoint: one request in flight per endpoint, in cancel order; a
slow endpoint never delays another. Labels, log lines and the delivery log name an
endpoint by position and host only ("0:hooks.example.com:443"), the store keys it by
a digest of its URL: webhook URLs often carry their secret.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping

import httpx

from buildcontrol_server import metrics
from buildcontrol_server.domain.deliveries import (
    DEFAULT_EVENTS,
    DeliveryLog,
    DeliveryState,
    Notification,
    WebhookEvent,
)
from buildcontrol_server.domain.errors import NotFound
from buildcontrol_server.effects import webhook_http
from buildcontrol_server.effects.backoff import full_jitter
from buildcontrol_server.effects.breaker import BreakerState, CircuitBreaker
from buildcontrol_server.effects.delivery_log import DeliveryLogWriter
from buildcontrol_server.effects.delivery_store import DeliveryStore
from buildcontrol_server.effects.webhook_endpoint import Endpoint, Item
from buildcontrol_server.effects.webhook_http import EVENT, HEADERS, Answer, Result, payload, post
from buildcontrol_server.effects.webhook_signing import WebhookSecret

log = logging.getLogger(__name__)

__all__ = ["EVENT", "HEADERS", "DeliveryStore", "WebhookNotifier", "payload"]

# After `stop()`'s timeout, how long cancelled workers get to unwind (closing sockets).
CANCEL_GRACE = 0.1


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
        secrets: Mapping[int, WebhookSecret] | None = None,
        events: Mapping[int, frozenset[WebhookEvent]] | None = None,
        store: DeliveryStore | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        delivers_here: Callable[[str], bool] | None = None,
    ) -> None:
        """`store`: the outbox and delivery log (None: memory only, nothing survives a
        restart). `clock` (monotonic seconds) times the breakers' cooldowns; tests
        move it. `wall_clock` stamps the delivery log. `secrets`: position → signer;
        `events`: position → the events it gets (DEFAULT_EVENTS when absent).
        `delivers_here(build_id)`: False when another server delivers that build's
        notifications now (a replica that handed its shard on); None: this one does
        all, and `start` queues the whole outbox's undelivered entries. With it, the
        caller queues them with `queue_undelivered` as it takes builds over."""
        if max_attempts < 1 or queue_size < 1 or request_timeout <= 0:
            raise ValueError("max_attempts, queue_size and request_timeout must be positive")
        self._max_attempts = max_attempts
        self._base_delay = base_delay
        self._max_delay = max_delay
        self._request_timeout = request_timeout
        self._queue_size = queue_size
        self._store = store
        self._wall_clock = wall_clock
        self._endpoints = [
            Endpoint(
                n,
                url,
                CircuitBreaker(breaker_threshold, breaker_cooldown, clock),
                (secrets or {}).get(n),
                (events or {}).get(n, DEFAULT_EVENTS),
            )
            for n, url in enumerate(urls)
        ]
        self._client: httpx.AsyncClient | None = None
        self._stopped = False
        self._log = DeliveryLogWriter(store) if store is not None else None
        self._delivers_here = delivers_here

    @property
    def labels(self) -> list[str]:
        """Each endpoint's metric label, in the order of `urls`."""
        return [endpoint.label for endpoint in self._endpoints]

    def breaker_states(self) -> list[BreakerState]:
        return [endpoint.breaker.state for endpoint in self._endpoints]

    def notify(self, notification: Notification) -> None:
        """Queue `notification` for every endpoint subscribed to its event. Returns
        at once, never raises."""
        for endpoint in self._endpoints:
            if notification.event in endpoint.events:
                self._enqueue(endpoint, Item(notification))

    async def redeliver(self, delivery_id: str) -> list[str]:
        """Queue one outbox entry again for every endpoint that had it or subscribes
        to its event, whatever its state there (delivered ones included: the
        receiver asked for it). Returns those endpoints' labels. NotFound if the
        outbox has no such entry."""
        store = self._store
        found = None if store is None else await store.webhook_outbox_entry(delivery_id)
        if found is None:
            raise NotFound(f"no webhook delivery {delivery_id}")
        notification, attempts = found
        queued = []
        for endpoint in self._endpoints:
            if endpoint.key not in attempts and notification.event not in endpoint.events:
                continue
            parked = endpoint.parked.pop(delivery_id, None)
            made = max(attempts.get(endpoint.key, 0), parked.attempts if parked else 0)
            self._enqueue(endpoint, Item(notification, made))
            queued.append(endpoint.label)
        return queued

    def _enqueue(self, endpoint: Endpoint, item: Item) -> None:
        if self._stopped:
            endpoint.count("dropped_shutdown")
            return
        if item.delivery_id in endpoint.queued:
            return  # already on its way (swept at start and notified, say)
        queue = endpoint.queue
        if queue.qsize() >= self._queue_size:
            oldest = queue.get_nowait()
            queue.task_done()
            if oldest is not None:
                endpoint.queued.discard(oldest.delivery_id)
            endpoint.count("dropped_queue_full")
        endpoint.queued.add(item.delivery_id)
        queue.put_nowait(item)
        endpoint.depth.set(queue.qsize())

    async def start(self) -> None:
        """Queue what the outbox holds undelivered, then start one worker per endpoint."""
        if self._client is not None:
            raise RuntimeError("the webhook notifier is already started")
        # httpx logs every request's full URL at INFO ("HTTP Request: POST https://…"):
        # that would put the receivers' secrets in the server log. Its own level, so a
        # root logger at DEBUG (a --log-level, a test) does not bring the lines back.
        httpx_log = logging.getLogger("httpx")
        httpx_log.setLevel(max(httpx_log.level, logging.WARNING))
        if self._delivers_here is None:
            await self.queue_undelivered()
        # httpx's timeout bounds each phase (connect, write, read); the total per
        # request is bounded separately with asyncio.timeout in webhook_http.post.
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(self._request_timeout),
            follow_redirects=False,
        )
        for endpoint in self._endpoints:
            endpoint.task = asyncio.create_task(
                self._work(endpoint), name=f"webhook-{endpoint.label}"
            )
        if self._log is not None:
            self._log.start()

    async def queue_undelivered(self, of_builds: Callable[[str], bool] | None = None) -> None:
        """Queue the outbox entries still undelivered at each endpoint (those of the
        builds `of_builds` accepts; None: all)."""
        if self._store is None:
            return
        for endpoint in self._endpoints:
            try:
                found = await self._store.undelivered_webhooks(endpoint.key)
            except Exception:
                # The rows stay in the outbox: the next start tries again. Starting
                # without them beats refusing to serve cancels over a webhook.
                log.exception("webhook %s: reading undelivered outbox failed", endpoint.label)
                continue
            if of_builds is not None:
                found = [queued for queued in found if of_builds(queued.notification.build_id)]
            for queued in found:
                self._enqueue(endpoint, Item(queued.notification, queued.attempts))
            if found:
                metrics.WEBHOOK_OUTBOX_RECOVERED.labels(endpoint=endpoint.label).inc(len(found))
                log.info("webhook %s: %d undelivered from the outbox", endpoint.label, len(found))

    async def join(self) -> None:
        """Wait until every notification queued so far was delivered or dropped, and
        its delivery log written."""
        await asyncio.gather(*(endpoint.queue.join() for endpoint in self._endpoints))
        if self._log is not None:
            await self._log.flushed()

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
            if self._log is not None:
                await self._log.stop()

    def _abandon_queued(self) -> None:
        for endpoint in self._endpoints:
            left = 0
            while not endpoint.queue.empty():
                if endpoint.queue.get_nowait() is not None:
                    left += 1
                endpoint.queue.task_done()
            if left:
                endpoint.count("dropped_shutdown", left)
                log.warning(
                    "webhook %s: %d notifications not sent (shutdown)%s",
                    endpoint.label,
                    left,
                    "; the outbox keeps them for the next start" if self._store else "",
                )
            endpoint.depth.set(0)

    # ---- one worker per endpoint ---------------------------------------------------

    async def _work(self, endpoint: Endpoint) -> None:
        while True:
            item = await endpoint.queue.get()
            try:
                if item is None:
                    return
                await self._deliver(endpoint, item)
            except asyncio.CancelledError:
                if item is not None:
                    endpoint.count("dropped_shutdown")
                raise
            except Exception:
                # A bug, not a receiver's failure (those are results): log it and keep
                # the worker alive for the next notification.
                log.exception("webhook %s: delivery failed unexpectedly", endpoint.label)
                endpoint.count("gave_up")
            finally:
                if item is not None:
                    endpoint.queued.discard(item.delivery_id)
                endpoint.queue.task_done()
                endpoint.depth.set(endpoint.queue.qsize())

    async def _deliver(self, endpoint: Endpoint, item: Item) -> None:
        body = payload(item.notification)
        signature = endpoint.secret.signature(body) if endpoint.secret is not None else None
        breaker = endpoint.breaker
        for attempt in range(1, self._max_attempts + 1):
            if self._delivers_here is not None and not self._delivers_here(
                item.notification.build_id
            ):
                # Its build moved to another replica, which queued the outbox row
                # when it took the build over: sending it here too would repeat it.
                endpoint.count("handed_on")
                return
            if not breaker.allow():
                endpoint.count("dropped_breaker_open")
                self._park(endpoint, item, None)
                return
            endpoint.show_state()  # allow() may have moved open → half-open
            assert self._client is not None
            answer = await post(
                self._client,
                endpoint.url,
                body,
                item.notification,
                endpoint.label,
                endpoint.seconds,
                self._request_timeout,
                signature,
            )
            item.attempts += 1
            if answer.result is not Result.FAILED:
                self._answered(endpoint, item, answer)
                return
            breaker.failed()
            endpoint.show_state()
            if attempt == self._max_attempts or breaker.state is BreakerState.OPEN:
                endpoint.count("gave_up")
                log.warning(
                    "webhook %s: gave up on %s for now after %d attempts%s",
                    endpoint.label,
                    item.delivery_id,
                    attempt,
                    " (breaker opened)" if breaker.state is BreakerState.OPEN else "",
                )
                self._park(endpoint, item, answer)
                return
            self._note(endpoint, item, DeliveryState.PENDING, answer)
            endpoint.count("retried")
            delay = full_jitter(attempt, self._base_delay, self._max_delay)
            if answer.retry_after is not None:
                delay = max(delay, min(answer.retry_after, self._max_delay))
            await asyncio.sleep(delay)

    def _answered(self, endpoint: Endpoint, item: Item, answer: Answer) -> None:
        """The receiver answered (2xx, or a 4xx it meant): it is up."""
        endpoint.breaker.succeeded()
        endpoint.show_state()
        endpoint.count(answer.result.value)
        if answer.result is Result.REJECTED:
            log.warning("webhook %s refused %s", endpoint.label, item.delivery_id)
            self._note(endpoint, item, DeliveryState.REJECTED, answer)
            return
        self._note(endpoint, item, DeliveryState.DELIVERED, answer)
        # The endpoint is back: what it missed in this run goes out again, in order.
        parked, endpoint.parked = endpoint.parked, {}
        for waiting in parked.values():
            self._enqueue(endpoint, waiting)

    def _park(self, endpoint: Endpoint, item: Item, answer: Answer | None) -> None:
        endpoint.parked[item.delivery_id] = item
        self._note(endpoint, item, DeliveryState.FAILED, answer)

    def _note(
        self, endpoint: Endpoint, item: Item, state: DeliveryState, answer: Answer | None
    ) -> None:
        """Note where the delivery stands; the log writer stores it soon after."""
        if self._log is None:
            return
        self._log.note(
            DeliveryLog(
                delivery_id=item.delivery_id,
                endpoint=endpoint.key,
                endpoint_label=endpoint.label,
                state=state,
                attempts=item.attempts,
                last_status=answer.status if answer is not None else None,
                last_error=webhook_http.error_of(answer),
                last_attempt_at=self._wall_clock() if answer is not None else None,
            )
        )
