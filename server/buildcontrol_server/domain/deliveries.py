"""Webhook deliveries as data: the outbox entry an event leaves behind, and one
endpoint's log of trying to deliver it. Plain data, like model.py; the worker that
sends them is effects/webhooks.py."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

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
