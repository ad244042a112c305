"""What the actors tell the side effects (audit, notifications). Calls never block and
never raise: a slow or broken webhook must not delay or fail a cancel."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from buildcontrol_server.domain.deliveries import Notification
from buildcontrol_server.domain.model import CancelRecord


class SideEffects(Protocol):
    def cancel_finished(self, record: CancelRecord) -> None:
        """A cancel reached its terminal state (committed). Returns at once."""

    def notifications_committed(self, notifications: Sequence[Notification]) -> None:
        """Webhook notifications whose outbox rows just committed (with the change
        that caused them). Returns at once."""


class NoSideEffects:
    def cancel_finished(self, record: CancelRecord) -> None:
        return None

    def notifications_committed(self, notifications: Sequence[Notification]) -> None:
        return None
