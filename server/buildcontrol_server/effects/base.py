"""What the actors tell the side effects (audit, notifications). Calls never block and
never raise: a slow or broken webhook must not delay or fail a cancel."""

from __future__ import annotations

from typing import Protocol

from buildcontrol_server.domain.model import CancelRecord


class SideEffects(Protocol):
    def cancel_finished(self, record: CancelRecord) -> None:
        """A cancel reached its terminal state (committed). Returns at once."""


class NoSideEffects:
    def cancel_finished(self, record: CancelRecord) -> None:
        return None
