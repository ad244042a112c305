"""The cancel audit's rows: a CancelRecord as JSON, and the SQL that writes it.

The JSON is the record's one wire form: the `cancel_audit.record` column and the body
of a `build.canceled` webhook carry the same object, so what a receiver gets is what
the audit keeps. Floats round-trip exactly through JSON (Python writes `repr`), so a
record read back equals the one written.
"""

from __future__ import annotations

import json
from typing import Any

# The record's dict form is domain data (the webhooks' bodies carry it too); both
# stay importable from here.
from buildcontrol_server.domain.event_data import escalation_to_dict as escalation_to_dict
from buildcontrol_server.domain.event_data import record_to_dict as record_to_dict
from buildcontrol_server.domain.model import CancelEscalation, CancelRecord, JobEnding
from buildcontrol_server.domain.states import BuildStatus, JobOutcome, JobStatus

# OR IGNORE: the audit writer, the start-up sweep and a retry after an ambiguous
# failure may all write the same cancel; the first row stands, the rest are no-ops.
# written_at is the transaction's own clock (julianday → epoch seconds with
# fractions; unixepoch('subsec') needs SQLite 3.42, older than many distributions).
INSERT_AUDIT = (
    "INSERT OR IGNORE INTO cancel_audit (build_id, record, requested_at, finished_at,"
    " written_at) VALUES (?, ?, ?, ?, (julianday('now') - 2440587.5) * 86400.0)"
)


def escalation_from_dict(data: dict[str, Any]) -> CancelEscalation:
    return CancelEscalation(
        requested_by=data["requested_by"],
        reason=data["reason"],
        requested_at=float(data["requested_at"]),
        force=bool(data["force"]),
    )


def record_from_dict(data: dict[str, Any]) -> CancelRecord:
    return CancelRecord(
        build_id=data["build_id"],
        pipeline=data["pipeline"],
        reason=data["reason"],
        requested_by=data["requested_by"],
        force=bool(data["force"]),
        grace_period=float(data["grace_period"]),
        requested_at=float(data["requested_at"]),
        finished_at=float(data["finished_at"]),
        status=BuildStatus(data["status"]),
        jobs=tuple(
            JobEnding(
                job_id=job["job_id"],
                name=job["name"],
                status=JobStatus(job["status"]),
                outcome=JobOutcome(job["outcome"]) if job["outcome"] is not None else None,
                agent_id=job["agent_id"],
            )
            for job in data["jobs"]
        ),
        # Records written before escalations were kept have no such key.
        escalations=tuple(escalation_from_dict(e) for e in data.get("escalations", ())),
    )


def record_to_json(record: CancelRecord) -> str:
    return json.dumps(record_to_dict(record), separators=(",", ":"))


def record_from_json(text: str) -> CancelRecord:
    return record_from_dict(json.loads(text))


def audit_row(record: CancelRecord) -> tuple[Any, ...]:
    """The parameters of INSERT_AUDIT for one record."""
    return (record.build_id, record_to_json(record), record.requested_at, record.finished_at)
