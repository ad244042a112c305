"""The outcome of applying one event to a build: what changed (to commit) and what
that asks of the world outside the domain (stops to send, jobs to schedule, slots to
free). Not to be confused with effects/ (audit records and webhooks, which run after
a commit)."""

from __future__ import annotations

from dataclasses import dataclass, field

from buildcontrol_server.domain.agent_commands import StopCommand
from buildcontrol_server.domain.model import ChangeSet, Job


@dataclass
class Outcome:
    changes: ChangeSet = field(default_factory=ChangeSet)
    stops: list[StopCommand] = field(default_factory=list)
    ready: list[Job] = field(default_factory=list)
    released: list[tuple[str, str]] = field(default_factory=list)  # (agent_id, job_id)
    # Jobs finalized (FORCED) without their agent's word: its process may still run,
    # so the slot stays counted on the agent until it reports the job gone or comes
    # back without it. (agent_id, job_id); never also in `released`.
    unconfirmed: list[tuple[str, str]] = field(default_factory=list)
    # Jobs that became terminal in this event (for cancel streams and watchers).
    finished_jobs: list[Job] = field(default_factory=list)
    # A forced cancel escalated a cancel already under way.
    escalated: bool = False
    # The first cancel of the build was applied (not a repeat, not an escalation).
    cancel_accepted: bool = False
    # The event was a repeat of one already applied (a duplicate report, a second
    # cancel): nothing changed, and that is not an error.
    duplicate: bool = False

    def merge(self, later: Outcome) -> None:
        """Add the effects of an event applied after this one (one commit for both)."""
        self.changes.merge(later.changes)
        self.stops += later.stops
        self.ready += later.ready
        self.released += later.released
        self.unconfirmed += later.unconfirmed
        self.finished_jobs += later.finished_jobs
        self.cancel_accepted = self.cancel_accepted or later.cancel_accepted
