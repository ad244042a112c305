"""Webhook deliveries as data: the events that have webhooks, the notification an
event leaves in the outbox, and one endpoint's log of trying to deliver it. Plain
data, like model.py; which change set causes which event is notifications.py, the
worker that sends them effects/webhooks.py."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit


class WebhookEvent(StrEnum):
    """The events an endpoint may subscribe to (docs/webhooks.md shows each body)."""

    # A cancel ended: the build is CANCELED (the default, and the first event).
    BUILD_CANCELED = "build.canceled"
    # A build reached its end, whatever it is: SUCCEEDED, FAILED or CANCELED.
    BUILD_FINISHED = "build.finished"
    # A cancel was accepted: CANCELING (or CANCELED at once) is committed.
    CANCEL_ACCEPTED = "cancel.accepted"
    # A job on an agent was stopped by a cancel (GRACEFUL, KILLED or FORCED).
    JOB_STOPPED = "job.stopped"


# What an endpoint gets when it names no events: what every endpoint got before
# events could be chosen, so an existing configuration keeps working unchanged.
DEFAULT_EVENTS = frozenset({WebhookEvent.BUILD_CANCELED})
CANCELED_EVENT = WebhookEvent.BUILD_CANCELED.value


class DeliveryState(StrEnum):
    # Not yet delivered to this endpoint: sent again at the next start.
    PENDING = "PENDING"
    # The receiver answered 2xx: done.
    DELIVERED = "DELIVERED"
    # The receiver answered a 4xx other than 429: it does not want it; not retried.
    REJECTED = "REJECTED"
    # Every attempt of this run failed (or the endpoint's breaker was open): parked
    # until the endpoint answers again, the next start, or a redeliver.
    FAILED = "FAILED"


# Deliveries in these states are sent again when the server starts.
UNFINISHED_STATES = frozenset({DeliveryState.PENDING, DeliveryState.FAILED})


def delivery_id_of(subject: str, event: str = CANCELED_EVENT) -> str:
    """The idempotency key of an event: the same for every endpoint and every retry,
    so a receiver can drop a repeat. `subject` is the build id, or the job id for a
    job's event: each event happens at most once to its subject (a build is
    cancelled once, finishes once; a job is stopped once)."""
    return f"{subject}.{event}"


@dataclass(frozen=True)
class DeliveryLog:
    """Where one delivery stands at one endpoint (the row of the delivery log)."""

    delivery_id: str
    # A stable key of the endpoint (a digest of its URL: the URL may hold a secret).
    endpoint: str
    # How metrics and logs name the endpoint ("0:hooks.example.com:443").
    endpoint_label: str
    state: DeliveryState
    # Requests made so far, over every run of the server.
    attempts: int
    # HTTP status of the last answer; None when the last request got none.
    last_status: int | None
    # Why the last request failed, without the URL; None after a success.
    last_error: str | None
    # When the last request was made (epoch seconds).
    last_attempt_at: float | None


@dataclass(frozen=True)
class Endpoint:
    """A webhook receiver as the outbox knows it."""

    # A digest of the URL: stable across restarts and reorderings of the URLs, and
    # not the URL itself (webhook URLs often carry their secret).
    key: str
    # Position and host, for people, metrics and logs ("0:hooks.example.com:443").
    label: str


def endpoint_of(index: int, url: str) -> Endpoint:
    parts = urlsplit(url)
    default_port = 443 if parts.scheme == "https" else 80
    port = parts.port or default_port
    key = hashlib.sha256(url.encode()).hexdigest()[:32]
    return Endpoint(key, f"{index}:{parts.hostname or ''}:{port}")


def endpoints_of(urls: tuple[str, ...] | list[str]) -> tuple[Endpoint, ...]:
    return tuple(endpoint_of(index, url) for index, url in enumerate(urls))


@dataclass(frozen=True)
class Notification:
    """One event for the webhooks, as the outbox keeps it and a receiver gets it."""

    event: WebhookEvent
    build_id: str
    # The build id, or the job id of a job's event: with `event`, the delivery id.
    subject: str
    # The event's object, JSON-ready (event_data.py): the body carries it under the
    # event's key (docs/webhooks.md).
    data: Mapping[str, Any]
    # When the event happened (epoch seconds): the outbox's order.
    at: float

    @property
    def delivery_id(self) -> str:
        return delivery_id_of(self.subject, self.event.value)


@dataclass(frozen=True)
class OutboxEntry:
    """A notification to deliver to `endpoints` (those subscribed when it was made:
    an endpoint added later does not get the history)."""

    notification: Notification
    endpoints: tuple[Endpoint, ...]

    @property
    def delivery_id(self) -> str:
        return self.notification.delivery_id
