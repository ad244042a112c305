"""The webhook outbox and delivery log: SQL, rows and reads (schema v8).

The outbox row of an event, and a PENDING delivery row per subscribed endpoint, are
inserted by the change set that causes the event (same transaction:
domain/notifications.py); the delivery rows are then updated by the webhook workers
after their requests. Reads run inside a snapshot (SqliteStore._snapshot).

`payload` holds the event's object as JSON (for build.canceled: the cancel record,
as it always did), `event` its name, `created_at` when it happened."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import aiosqlite

from buildcontrol_server.domain.deliveries import (
    UNFINISHED_STATES,
    DeliveryLog,
    DeliveryState,
    Notification,
    OutboxEntry,
    WebhookEvent,
)

log = logging.getLogger(__name__)

# OR IGNORE: the event's id is its key; a second write of the same event is a no-op.
INSERT_OUTBOX = (
    "INSERT OR IGNORE INTO webhook_outbox (delivery_id, event, build_id, payload, created_at)"
    " VALUES (?, ?, ?, ?, ?)"
)
# The PENDING row of each endpoint, beside the outbox row; never overwrites a state a
# worker already wrote (a delivery logged before the commit of a retried write).
INSERT_PENDING_DELIVERY = (
    "INSERT OR IGNORE INTO webhook_deliveries (delivery_id, endpoint, endpoint_label, state,"
    " attempts) VALUES (?, ?, ?, 'PENDING', 0)"
)
UPSERT_DELIVERY = (
    "INSERT INTO webhook_deliveries (delivery_id, endpoint, endpoint_label, state, attempts,"
    " last_status, last_error, last_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (delivery_id, endpoint) DO UPDATE SET endpoint_label = excluded.endpoint_label,"
    " state = excluded.state, attempts = excluded.attempts, last_status = excluded.last_status,"
    " last_error = excluded.last_error, last_attempt_at = excluded.last_attempt_at"
)

_UNFINISHED = ", ".join(f"'{state.value}'" for state in sorted(UNFINISHED_STATES))
# Every delivery not yet done (nor refused) at this endpoint, oldest first. The state
# condition repeats the webhook_deliveries_unfinished partial index's.
UNDELIVERED = (
    "SELECT o.delivery_id, o.event, o.build_id, o.payload, o.created_at, d.attempts"
    " FROM webhook_deliveries d"
    " JOIN webhook_outbox o ON o.delivery_id = d.delivery_id"
    f" WHERE d.endpoint = ? AND d.state IN ({_UNFINISHED})"
    " ORDER BY o.created_at, o.delivery_id"
)
# One outbox entry, as notification_of reads it.
OUTBOX_ENTRY = (
    "SELECT delivery_id, event, build_id, payload, created_at FROM webhook_outbox"
    " WHERE delivery_id = ?"
)
LISTING = (
    "SELECT o.delivery_id, o.event, o.build_id, o.created_at, d.endpoint, d.endpoint_label,"
    " d.state, d.attempts, d.last_status, d.last_error, d.last_attempt_at"
    " FROM webhook_outbox o LEFT JOIN webhook_deliveries d ON d.delivery_id = o.delivery_id"
    " ORDER BY o.created_at DESC, o.delivery_id DESC, d.endpoint_label LIMIT ?"
)


@dataclass(frozen=True)
class QueuedDelivery:
    """An outbox entry still to deliver at one endpoint."""

    notification: Notification
    # Requests already made for it at this endpoint (earlier runs included).
    attempts: int = 0

    @property
    def delivery_id(self) -> str:
        return self.notification.delivery_id


@dataclass(frozen=True)
class OutboxListing:
    """One line of `buildcontrol webhooks list`: an outbox entry and, once tried,
    where it stands at one endpoint (None: not tried anywhere yet)."""

    delivery_id: str
    event: str
    build_id: str
    created_at: float
    log: DeliveryLog | None


def outbox_row(entry: OutboxEntry) -> tuple[Any, ...]:
    notification = entry.notification
    return (
        entry.delivery_id,
        notification.event.value,
        notification.build_id,
        json.dumps(notification.data, separators=(",", ":")),
        notification.at,
    )


def notification_of(row: Sequence[Any]) -> Notification:
    """A notification from (delivery_id, event, build_id, payload, created_at)."""
    delivery_id, event, build_id, payload, created_at = tuple(row)[:5]
    subject = delivery_id.removesuffix("." + event)
    return Notification(WebhookEvent(event), build_id, subject, json.loads(payload), created_at)


def pending_delivery_rows(entry: OutboxEntry) -> list[tuple[Any, ...]]:
    return [(entry.delivery_id, e.key, e.label) for e in entry.endpoints]


def delivery_row(log: DeliveryLog) -> tuple[Any, ...]:
    return (
        log.delivery_id,
        log.endpoint,
        log.endpoint_label,
        log.state.value,
        log.attempts,
        log.last_status,
        log.last_error,
        log.last_attempt_at,
    )


def queued_deliveries(rows: Iterable[Sequence[Any]]) -> list[QueuedDelivery]:
    """The UNDELIVERED rows this version can read. One it cannot (an event a later
    version added, a payload not JSON) stays in the outbox, unsent, with an error in
    the log: failing the whole read would leave every other delivery unsent too."""
    queued = []
    for row in rows:
        try:
            queued.append(QueuedDelivery(notification_of(row), int(row[5])))
        except (ValueError, TypeError, KeyError) as error:
            log.error("webhook outbox entry %s cannot be read, left unsent: %r", row[0], error)
    return queued


async def undelivered(connection: aiosqlite.Connection, endpoint: str) -> list[QueuedDelivery]:
    return queued_deliveries(await connection.execute_fetchall(UNDELIVERED, (endpoint,)))


async def outbox_entry(
    connection: aiosqlite.Connection, delivery_id: str
) -> tuple[Notification, dict[str, int]] | None:
    """The entry's notification and the attempts made so far per endpoint key."""
    found = list(await connection.execute_fetchall(OUTBOX_ENTRY, (delivery_id,)))
    if not found:
        return None
    attempts = await connection.execute_fetchall(
        "SELECT endpoint, attempts FROM webhook_deliveries WHERE delivery_id = ?", (delivery_id,)
    )
    return notification_of(found[0]), {row[0]: int(row[1]) for row in attempts}


async def listing(connection: aiosqlite.Connection, limit: int) -> list[OutboxListing]:
    if limit <= 0:
        raise ValueError(f"limit must be positive, not {limit}")
    found = await connection.execute_fetchall(LISTING, (limit,))
    return [_listing_of(row) for row in found]


def _listing_of(row: Sequence[Any]) -> OutboxListing:
    log = None
    if row[4] is not None:
        log = DeliveryLog(
            delivery_id=row[0],
            endpoint=row[4],
            endpoint_label=row[5],
            state=DeliveryState(row[6]),
            attempts=int(row[7]),
            last_status=row[8],
            last_error=row[9],
            last_attempt_at=row[10],
        )
    return OutboxListing(row[0], row[1], row[2], row[3], log)
