"""The side effects of committed changes, as the actors see them (effects/base.py):
a finished cancel's record to the audit log, the webhook notifications whose outbox
rows just committed to the notifier, and return.

Both only queue, so each call costs microseconds on the actor's turn. It must never
raise into the actor (the change is committed; nothing here may undo or delay it),
so an exception from either is logged with its traceback and counted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Protocol

from buildcontrol_server import metrics
from buildcontrol_server.domain.deliveries import Notification
from buildcontrol_server.domain.model import CancelRecord

log = logging.getLogger(__name__)


class Audit(Protocol):
    def record(self, record: CancelRecord) -> None: ...
    async def start(self) -> None: ...
    async def stop(self, timeout: float) -> None: ...  # noqa: ASYNC109


class Notifier(Protocol):
    def notify(self, notification: Notification) -> None: ...
    async def start(self) -> None: ...
    async def stop(self, timeout: float) -> None: ...  # noqa: ASYNC109


class SideEffectsRunner:
    """Implements effects.base.SideEffects with an AuditLog and a WebhookNotifier."""

    def __init__(self, audit: Audit, notifier: Notifier) -> None:
        self.audit = audit
        self.notifier = notifier

    def cancel_finished(self, record: CancelRecord) -> None:
        try:
            self.audit.record(record)
        except Exception:
            metrics.SIDE_EFFECT_ERRORS.labels(effect="audit").inc()
            log.exception("audit of build %s could not be queued", record.build_id)

    def notifications_committed(self, notifications: Sequence[Notification]) -> None:
        for notification in notifications:
            try:
                self.notifier.notify(notification)
            except Exception:
                metrics.SIDE_EFFECT_ERRORS.labels(effect="webhooks").inc()
                log.exception("webhook %s could not be queued", notification.delivery_id)

    async def start(self) -> None:
        """The audit first: its sweep completes the audit before anything new comes."""
        await self.audit.start()
        await self.notifier.start()

    # Shutdown gives each part the same bound, at the same time: the whole stop takes
    # at most `timeout` (plus the ms of cancelling), never the sum.
    async def stop(self, timeout: float) -> None:  # noqa: ASYNC109
        """Flush the audit and the webhooks, both within `timeout` seconds. Call it after
        the actors stopped (nothing new comes in) and before the store closes (the
        audit writes to it)."""
        results = await asyncio.gather(
            self.audit.stop(timeout), self.notifier.stop(timeout), return_exceptions=True
        )
        for name, result in zip(("audit", "webhooks"), results, strict=True):
            if isinstance(result, Exception):
                log.error("stopping the %s failed", name, exc_info=result)
            elif isinstance(result, BaseException):
                raise result  # cancellation and interrupts are not ours to absorb
