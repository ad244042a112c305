"""The part of the build store the webhook notifier uses."""

from __future__ import annotations

from typing import Protocol

from buildcontrol_server.domain.deliveries import Notification
from buildcontrol_server.domain.model import ChangeSet
from buildcontrol_server.store.webhook_rows import QueuedDelivery


class DeliveryStore(Protocol):
    """The part of BuildStore the notifier uses (small, so tests can wrap it)."""

    async def commit(self, changes: ChangeSet) -> None: ...

    async def undelivered_webhooks(self, endpoint: str) -> list[QueuedDelivery]: ...

    async def webhook_outbox_entry(
        self, delivery_id: str
    ) -> tuple[Notification, dict[str, int]] | None: ...
