"""One webhook request: the body, the headers (with the delivery's idempotency key),
the POST with its bounds, and what the answer means for the delivery."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from enum import Enum

import httpx
from prometheus_client import Histogram

from buildcontrol_server.domain.deliveries import CANCELED_EVENT, Notification, WebhookEvent
from buildcontrol_server.effects.webhook_signing import SIGNATURE_HEADER

log = logging.getLogger(__name__)

EVENT = CANCELED_EVENT
# The idempotency key: the same for every retry and every redelivery of one event,
# so a receiver that saw it already can answer 2xx and do nothing.
DELIVERY_HEADER = "x-buildcontrol-delivery"
# The event's name (build.canceled, build.finished, ...), also the body's "event".
EVENT_HEADER = "x-buildcontrol-event"
# The headers of every request; EVENT_HEADER is the one for build.canceled here, each
# request sets its own event's.
HEADERS = {
    "content-type": "application/json",
    "user-agent": "buildcontrol-webhooks",
    EVENT_HEADER: EVENT,
}
# The key of the event's object in the body (docs/webhooks.md): build.canceled's
# "record" is as it was before there were other events.
DATA_KEYS = {
    WebhookEvent.BUILD_CANCELED: "record",
    WebhookEvent.BUILD_FINISHED: "build",
    WebhookEvent.CANCEL_ACCEPTED: "cancel",
    WebhookEvent.JOB_STOPPED: "job",
}
# Read at most this much of a response body: enough for the connection to be reused
# after a normal reply, and a receiver cannot make us buffer megabytes.
MAX_RESPONSE_BYTES = 64 * 1024


class Result(Enum):
    DELIVERED = "delivered"
    REJECTED = "rejected"  # 4xx other than 429: the receiver refused; retrying won't help
    FAILED = "failed"  # timeout, connection error, 5xx, 429: worth another try


@dataclass(frozen=True)
class Answer:
    result: Result
    # The HTTP status, when an answer came.
    status: int | None = None
    # Seconds of a 429/503 Retry-After.
    retry_after: float | None = None
    # Why the request failed (an exception's type name; never the URL).
    error: str | None = None


def payload(notification: Notification) -> bytes:
    """The request body: the event's name, its build, and its object."""
    body = {
        "event": notification.event.value,
        "build_id": notification.build_id,
        DATA_KEYS[notification.event]: notification.data,
    }
    return json.dumps(body, separators=(",", ":")).encode()


async def post(
    client: httpx.AsyncClient,
    url: str,
    body: bytes,
    notification: Notification,
    label: str,
    seconds: Histogram,
    timeout: float,  # noqa: ASYNC109 - the per-request bound, passed to asyncio.timeout
    signature: str | None = None,
) -> Answer:
    """POST `body` once; never raises for the receiver's troubles (those are answers).
    `signature`: the endpoint's signature header value of `body`, if it has a secret."""
    started = time.perf_counter()
    headers = {
        **HEADERS,
        EVENT_HEADER: notification.event.value,
        DELIVERY_HEADER: notification.delivery_id,
    }
    if signature is not None:
        headers[SIGNATURE_HEADER] = signature
    try:
        async with (
            asyncio.timeout(timeout),
            client.stream("POST", url, content=body, headers=headers) as reply,
        ):
            received = 0
            async for chunk in reply.aiter_raw():
                received += len(chunk)
                if received >= MAX_RESPONSE_BYTES:
                    break
    except (TimeoutError, httpx.HTTPError) as error:
        log.info("webhook %s: request failed: %s", label, type(error).__name__)
        return Answer(Result.FAILED, error=type(error).__name__)
    finally:
        seconds.observe(time.perf_counter() - started)
    status = reply.status_code
    if 200 <= status < 300:
        return Answer(Result.DELIVERED, status)
    if status == 429 or status >= 500:
        log.info("webhook %s: answered %d", label, status)
        return Answer(Result.FAILED, status, _retry_after(reply.headers.get("retry-after")))
    return Answer(Result.REJECTED, status)


def _retry_after(value: str | None) -> float | None:
    """Seconds of a Retry-After header (the HTTP-date form is ignored: rare here)."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def error_of(answer: Answer | None) -> str | None:
    """What the delivery log says went wrong with `answer` (None: delivered)."""
    if answer is None:
        return "breaker open: not sent"
    if answer.error is not None:
        return answer.error
    if answer.result is Result.DELIVERED:
        return None
    return f"HTTP {answer.status}"
