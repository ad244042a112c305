"""The side effects of committed changes, as the actors see them (effects/base.py):
the webhook notifications whose outbox rows just committed go to the notifier, and
return; and the start and stop of what runs them (the audit's start-up sweep, the
webhook notifier). A cancel's audit record is not one of them: it commits with the
CANCELED write (domain/cancellation.py `record_audit`).

Handing over only queues, so it costs microseconds on the actor's turn. It must never
raise into the actor (the change is committed; nothing here may undo or delay it),
so an exception is logged with its traceback and counted.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

from buildcontrol_server import metrics
from buildcontrol_server.domain.deliveries import Notification

log = logging.getLogger(__name__)


class Audit(Protocol):
    async def start(self) -> None: ...


class Notifier(Protocol):
    def notify(self, notification: Notification) -> None: ...
    async def start(self) -> None: ...
    async def stop(self, timeout: float) -> None: ...  # noqa: ASYNC109


class SideEffectsRunner:
    """Implements effects.base.SideEffects with an AuditLog and a WebhookNotifier."""

    def __init__(self, audit: Audit, notifier: Notifier) -> None:
        self.audit = audit
        self.notifier = notifier

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

    # The bound is the API (shutdown gives the webhooks their share of it).
    async def stop(self, timeout: float) -> None:  # noqa: ASYNC109
        """Flush the webhooks within `timeout` seconds. Call it after the actors stopped
        (nothing new comes in) and before the store closes (deliveries write to it).
        A failure is logged, not raised: the store still has to close."""
        try:
            await self.notifier.stop(timeout)
        except Exception:
            log.exception("stopping the webhooks failed")
