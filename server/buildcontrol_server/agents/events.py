"""What the hub of agent sessions tells the rest of the server, as typed events.

The hub is made first and knows nothing of the actors or the scheduler; they subscribe
to these events instead of handing the hub callbacks to call (docs/architecture.md:
the arrows point down, events go up)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AgentLost:
    """`agent_id` did not come back within its reconnect window; it held `jobs`
    ({job_id: build_id}), which its builds must now end."""

    agent_id: str
    jobs: dict[str, str]


@dataclass(frozen=True)
class SlotFree:
    """A job slot may have become free (a release, a connect, an agent no longer
    suspect): the scheduler should look for work to hand out."""


AgentEvent = AgentLost | SlotFree
AgentEventHandler = Callable[[AgentEvent], None]

SLOT_FREE = SlotFree()


class AgentEvents:
    """The subscribers of the hub's events, told in the order they subscribed."""

    def __init__(self) -> None:
        self._handlers: list[AgentEventHandler] = []

    def subscribe(self, handler: AgentEventHandler) -> None:
        self._handlers.append(handler)

    def publish(self, event: AgentEvent) -> None:
        for handler in self._handlers:
            handler(event)
