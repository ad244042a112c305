"""How long finished builds, cancel audit records and webhook deliveries are kept, as
data: the policy an operator sets, and the cut-off times it means at one moment.

Pure: the clock is a parameter, so the same policy gives the same cut-offs in tests
and in the server. Nothing that is not terminal is ever past a policy: the store's
purge only considers builds in SUCCEEDED, FAILED or CANCELED.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from buildcontrol_server.domain.errors import InvalidArgument

DAY_SECONDS = 86_400.0

# Tables a purge deletes from, in the order their rows are reported.
PURGED_TABLES = (
    "builds",
    "jobs",
    "steps",
    "submit_requests",
    "cancel_audit",
    "webhook_outbox",
    "webhook_deliveries",
)


@dataclass(frozen=True)
class RetentionPolicy:
    """Days each kind of record is kept after it finished; None keeps it for ever."""

    # Finished builds (with their jobs, steps and submit keys), counted from finished_at.
    builds_days: float | None = 90.0
    # At most this many finished builds are kept (the oldest go first); None: no cap.
    builds_max: int | None = None
    # Cancel audit records, counted from the cancel's end. Only records whose build is
    # gone are deleted: a record outlives its build, never the other way round.
    audit_days: float | None = 365.0
    # Webhook outbox entries whose every delivery finished (delivered or rejected),
    # with their delivery log, counted from the event.
    deliveries_days: float | None = 30.0

    def __post_init__(self) -> None:
        for name in ("builds_days", "audit_days", "deliveries_days"):
            days = getattr(self, name)
            if days is not None and not days > 0:
                raise InvalidArgument(name, f"must be more than 0 days, not {days}")
        if self.builds_max is not None and self.builds_max < 1:
            raise InvalidArgument("builds_max", f"must be at least 1, not {self.builds_max}")

    def cutoffs(self, now: float) -> Cutoffs:
        return Cutoffs(
            builds_before=_before(now, self.builds_days),
            builds_max=self.builds_max,
            audit_before=_before(now, self.audit_days),
            deliveries_before=_before(now, self.deliveries_days),
        )


def _before(now: float, days: float | None) -> float | None:
    return None if days is None else now - days * DAY_SECONDS


@dataclass(frozen=True)
class Cutoffs:
    """What a purge deletes: records that finished strictly before these epoch times
    (None: none by time), and finished builds beyond the newest `builds_max`."""

    builds_before: float | None
    builds_max: int | None = None
    audit_before: float | None = None
    deliveries_before: float | None = None

    @classmethod
    def everything_before(cls, when: float) -> Cutoffs:
        """A manual purge: one date for builds, audit records and deliveries alike."""
        return cls(builds_before=when, audit_before=when, deliveries_before=when)


@dataclass
class PurgeCounts:
    """Rows deleted (or, in a dry run, that would be) per table."""

    rows: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PURGED_TABLES, 0))

    def add(self, other: dict[str, int]) -> None:
        for table, count in other.items():
            self.rows[table] = self.rows.get(table, 0) + count

    @property
    def total(self) -> int:
        return sum(self.rows.values())


@dataclass(frozen=True)
class PurgedBatch:
    """One purge transaction: the builds it deleted and the rows per table."""

    build_ids: tuple[str, ...]
    rows: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.rows.values())
