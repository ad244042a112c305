"""Which agent ids an agent token may connect as: its `agent_id`, read as a pattern.

A pattern is one or more alternatives separated by `|` (as in a shell `case`); in an
alternative `*` matches any run of characters (none too) and `%hostname` stands for the
name of the server's host; every other character matches itself. So `agent-1` is that
one id, `ci-*` every id that starts with `ci-`, and the first-start agent token's
`agent-*|%hostname|%hostname-*` accepts the ids of the README, the compose file and the
systemd unit (`agent-1`, `agent-2`, `%H`) and any agent started without `--agent-id` on
the server's machine (its default id is derived from the host name).

`%hostname` is expanded when a pattern is matched, not when it is written, so a tokens
file stays right when the machine (or the container) is renamed."""

from __future__ import annotations

import re
import socket
from collections.abc import Callable
from functools import lru_cache

HOSTNAME = "%hostname"
ALTERNATIVES = "|"
WILDCARD = "*"
# The first-start agent token: the documented example ids, and an agent on the
# server's host with its default id (the host name, maybe with a suffix).
BOOTSTRAP_PATTERN = ALTERNATIVES.join((f"agent-{WILDCARD}", HOSTNAME, f"{HOSTNAME}-{WILDCARD}"))


@lru_cache(maxsize=256)
def _compiled(pattern: str, hostname: str) -> re.Pattern[str]:
    alternatives = []
    for alternative in pattern.split(ALTERNATIVES):
        expanded = alternative.replace(HOSTNAME, hostname)
        alternatives.append(".*".join(re.escape(part) for part in expanded.split(WILDCARD)))
    return re.compile("|".join(f"(?:{alternative})" for alternative in alternatives))


def matches(pattern: str, agent_id: str, hostname: Callable[[], str] = socket.gethostname) -> bool:
    """True if `agent_id` is one of the ids `pattern` names."""
    if ALTERNATIVES not in pattern and WILDCARD not in pattern and HOSTNAME not in pattern:
        return pattern == agent_id  # the common case: one exact id
    return _compiled(pattern, hostname()).fullmatch(agent_id) is not None


def problem(pattern: str) -> str | None:
    """Why `pattern` cannot be a token's agent ids (an empty alternative would match
    only the empty id, which no agent has: a typo), or None."""
    if any(not alternative for alternative in pattern.split(ALTERNATIVES)):
        return f"agent id pattern {pattern[:200]!r} has an empty alternative"
    return None
