"""Which events each webhook endpoint gets: `--webhook-event N=EVENT` (repeatable; N is
the endpoint's position, 0 for the first --webhook-url). An endpoint named by none
gets build.canceled only, as every endpoint did before events could be chosen; one
named gets exactly the events given for it (name build.canceled too to keep it).

An unknown event name is refused where it is read (flag, variable or config file:
exit 2, config_sources.py); a position with no endpoint when the settings are
checked together (Settings.webhook_subscriptions, also exit 2)."""

from __future__ import annotations

from collections.abc import Sequence

from buildcontrol_server.config_rules import Rule, RuleError
from buildcontrol_server.domain.deliveries import WebhookEvent

EVENT_NAMES = ", ".join(event.value for event in WebhookEvent)
WORDS = f"N=EVENT (N: the webhook's position, from 0; EVENT one of {EVENT_NAMES})"


class WebhookEventsError(ValueError):
    """A --webhook-event that names an endpoint that does not exist."""


def _choice(text: str) -> tuple[int, WebhookEvent]:
    index, sep, name = text.strip().partition("=")
    if not sep or not index.isdigit():
        raise RuleError(WORDS)
    try:
        return int(index), WebhookEvent(name.strip())
    except ValueError:
        raise RuleError(WORDS) from None


EVENT_CHOICE = Rule(WORDS, _choice, "N=EVENT")


def chosen_events(
    choices: Sequence[tuple[int, WebhookEvent]], endpoints: int
) -> dict[int, frozenset[WebhookEvent]]:
    """Endpoint position → the events chosen for it (positions not named: absent)."""
    chosen: dict[int, set[WebhookEvent]] = {}
    for position, event in choices:
        if position >= endpoints:
            raise WebhookEventsError(
                f"--webhook-event: webhook #{position} does not exist "
                f"({endpoints} --webhook-url configured)"
            )
        chosen.setdefault(position, set()).add(event)
    return {position: frozenset(events) for position, events in chosen.items()}
