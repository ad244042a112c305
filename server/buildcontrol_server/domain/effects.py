"""What applying one event asks of the world outside the domain."""

from __future__ import annotations

from dataclasses import dataclass, field

from buildcontrol_server.domain.model import ChangeSet, Job


@dataclass(frozen=True)
class StopCommand:
    """Tell `agent_id` to stop `job_id`: SIGTERM, `grace_period` s, then SIGKILL."""

    build_id: str
    job_id: str
    agent_id: str
    reason: str
    grace_period: float
    deadline: float
    # A forced stop: no cleanup steps, and SIGKILL at once even if already stopping.
    skip_cleanup: bool = False
    cleanup_timeout: float = 0.0
    # perf_counter() of the Cancel request that caused this stop, stamped by the actor
    # so the stream writer can measure delivery (observability/cancel_phases.py). None:
    # not measured (a stop re-sent on reconnect, or one the server made on its own).
    requested_at: float | None = None
    # Who asked for the cancel, for the stop line at the end of the job's log.
    requested_by: str = ""


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
