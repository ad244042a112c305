"""What the actors tell the side effects (webhook notifications). Calls never block
and never raise: a slow or broken webhook must not delay or fail a cancel."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from buildcontrol_server.domain.deliveries import Notification


class SideEffects(Protocol):
    def notifications_committed(self, notifications: Sequence[Notification]) -> None:
        """Webhook notifications whose outbox rows just committed (with the change
        that caused them). Returns at once."""


class NoSideEffects:
    def notifications_committed(self, notifications: Sequence[Notification]) -> None:
        return None
