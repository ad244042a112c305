"""What operators may ask of the webhooks (ListWebhookDeliveries, RedeliverWebhook):
read the outbox and its delivery log, and queue one delivery again."""

from __future__ import annotations

import re
from typing import Protocol

from buildcontrol_server.domain.errors import InvalidArgument
from buildcontrol_server.store.webhook_rows import OutboxListing

# A delivery id as the outbox makes it (domain/deliveries.py: "<subject>.<event>",
# the subject a build id or, for job.stopped, a job id "<build id>-j<n>").
DELIVERY_ID = re.compile(r"b[0-9a-f]{20}(-j[0-9]+)?\.[a-z]+(\.[a-z]+)*")


class DeliveryListing(Protocol):
    async def webhook_deliveries(self, limit: int) -> list[OutboxListing]: ...


class Redelivery(Protocol):
    async def redeliver(self, delivery_id: str) -> list[str]: ...


class WebhookAdmin:
    def __init__(self, store: DeliveryListing, notifier: Redelivery) -> None:
        self._store = store
        self._notifier = notifier

    async def deliveries(self, limit: int) -> list[OutboxListing]:
        return await self._store.webhook_deliveries(limit)

    async def redeliver(self, delivery_id: str) -> list[str]:
        """The endpoints it was queued for; NotFound for an id the outbox lacks."""
        if not DELIVERY_ID.fullmatch(delivery_id):
            raise InvalidArgument("delivery_id", "is not a delivery id (see webhooks list)")
        return await self._notifier.redeliver(delivery_id)
