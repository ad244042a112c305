"""Webhook deliveries as data: the outbox entry an event leaves behind, and one
endpoint's log of trying to deliver it. Plain data, like model.py; the worker that
sends them is effects/webhooks.py."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:  # model.py imports this module: only the type is needed here
    from buildcontrol_server.domain.model import CancelRecord

# The one event that has webhooks today.
CANCELED_EVENT = "build.canceled"


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


def delivery_id_of(build_id: str, event: str = CANCELED_EVENT) -> str:
    """The idempotency key of an event: the same for every endpoint and every retry,
    so a receiver can drop a repeat (a build is cancelled at most once)."""
    return f"{build_id}.{event}"


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
class OutboxEntry:
    """A notification to deliver to `endpoints` (those configured when it was made:
    an endpoint added later does not get the history)."""

    record: CancelRecord
    endpoints: tuple[Endpoint, ...]

    @property
    def delivery_id(self) -> str:
        return delivery_id_of(self.record.build_id)
