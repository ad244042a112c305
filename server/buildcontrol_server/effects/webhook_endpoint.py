"""One webhook receiver as the notifier keeps it (its queue, breaker, secret, events and
metric children), and one delivery queued for it. The notifier is webhooks.py."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import httpx

from buildcontrol_server import metrics
from buildcontrol_server.domain.deliveries import Notification, WebhookEvent, endpoint_of
from buildcontrol_server.effects.breaker import CircuitBreaker
from buildcontrol_server.effects.webhook_signing import WebhookSecret


@dataclass
class Item:
    notification: Notification
    attempts: int = 0  # requests made so far at this endpoint, earlier runs included

    @property
    def delivery_id(self) -> str:
        return self.notification.delivery_id


class Endpoint:
    """One receiver: its queue, breaker, worker task and metric children."""

    def __init__(
        self,
        index: int,
        url: str,
        breaker: CircuitBreaker,
        secret: WebhookSecret | None,
        events: frozenset[WebhookEvent],
    ) -> None:
        # The messages leave the URL out: webhook URLs often carry their secret.
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL:
            raise ValueError(f"webhook #{index} is not a valid URL") from None
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ValueError(f"webhook #{index} is not an http(s) URL with a host")
        self.url = url
        self.secret = secret  # signs every body sent here; None: unsigned
        self.events = events  # what it subscribed to
        # The outbox's key and label of the endpoint (the same the actors write).
        identity = endpoint_of(index, url)
        self.label = identity.label
        self.key = identity.key
        self.breaker = breaker
        # Unbounded asyncio.Queue; the bound is enforced by _enqueue, which drops the
        # oldest instead of refusing the newest. None tells the worker to finish.
        self.queue: asyncio.Queue[Item | None] = asyncio.Queue()
        # Ids queued or in flight: a delivery is never queued twice at once.
        self.queued: set[str] = set()
        # Deliveries that failed in this run, queued again once the endpoint is back.
        self.parked: dict[str, Item] = {}
        self.task: asyncio.Task[None] | None = None
        self.depth = metrics.WEBHOOK_QUEUE_DEPTH.labels(endpoint=self.label)
        self.state = metrics.WEBHOOK_BREAKER_STATE.labels(endpoint=self.label)
        self.seconds = metrics.WEBHOOK_REQUEST_SECONDS.labels(endpoint=self.label)
        self.state.set(breaker.state)

    def count(self, result: str, amount: int = 1) -> None:
        metrics.WEBHOOK_DELIVERIES.labels(endpoint=self.label, result=result).inc(amount)

    def show_state(self) -> None:
        self.state.set(self.breaker.state)
