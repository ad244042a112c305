"""What applying one event asks of the world outside the domain."""

from __future__ import annotations

from dataclasses import dataclass, field

# StopCommand lives in agent_commands.py; the name stays importable from here.
from buildcontrol_server.domain.agent_commands import StopCommand as StopCommand
from buildcontrol_server.domain.model import ChangeSet, Job


@dataclass
class Effects:
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
    # The event was a repeat of one already applied (a duplicate report, a second
    # cancel): nothing changed, and that is not an error.
    duplicate: bool = False

    def merge(self, later: Effects) -> None:
        """Add the effects of an event applied after this one (one commit for both)."""
        self.changes.merge(later.changes)
        self.stops += later.stops
        self.ready += later.ready
        self.released += later.released
        self.unconfirmed += later.unconfirmed
        self.finished_jobs += later.finished_jobs
