"""What the invariant auditor (observability/invariants.py) reads of one actor."""

from __future__ import annotations

from dataclasses import dataclass

from buildcontrol_server.domain.model import Build


@dataclass(frozen=True)
class ActorFacts:
    """What the invariant auditor checks of one actor, taken inside its turn."""

    build: Build
    stop_armed: frozenset[str]  # jobs with a stop deadline armed
    stop_sent: dict[str, str]  # job_id → session id its latest StopJob was handed to
