"""The JSON objects of the webhook events: plain dicts of domain data, ready for
`json.dumps`. A `build.canceled` body carries the cancel record exactly as the audit
keeps it (store/audit_records.py writes the same dict); docs/webhooks.md shows each."""

from __future__ import annotations

from typing import Any

from buildcontrol_server.domain.model import Build, CancelEscalation, CancelRecord, Job
from buildcontrol_server.domain.states import JobStatus


def escalation_to_dict(escalation: CancelEscalation) -> dict[str, Any]:
    return {
        "requested_by": escalation.requested_by,
        "reason": escalation.reason,
        "requested_at": escalation.requested_at,
        "force": escalation.force,
    }


def record_to_dict(record: CancelRecord) -> dict[str, Any]:
    """The cancel record: `build.canceled`'s object, and the audit's row."""
    return {
        "build_id": record.build_id,
        "pipeline": record.pipeline,
        "status": record.status.value,
        "reason": record.reason,
        "requested_by": record.requested_by,
        "force": record.force,
        "grace_period": record.grace_period,
        "requested_at": record.requested_at,
        "finished_at": record.finished_at,
        "jobs": [
            {
                "job_id": job.job_id,
                "name": job.name,
                "status": job.status.value,
                "outcome": job.outcome.value if job.outcome is not None else None,
                "agent_id": job.agent_id,
            }
            for job in record.jobs
        ],
        # The first cancel is the fields above, as it was asked; these came after it.
        "escalations": [escalation_to_dict(e) for e in record.escalations],
    }


def cancel_to_dict(build: Build) -> dict[str, Any] | None:
    """The build's cancel as it was first asked, with its escalations; None: none."""
    cancel = build.cancel
    if cancel is None:
        return None
    return {
        "reason": cancel.reason,
        "requested_by": cancel.requested_by,
        "force": cancel.force,
        "grace_period": cancel.grace_period,
        "requested_at": cancel.requested_at,
        "escalations": [escalation_to_dict(e) for e in cancel.escalations],
    }


def _job_to_dict(job: Job) -> dict[str, Any]:
    return {
        "job_id": job.job_id,
        "name": job.name,
        "status": job.status.value,
        "outcome": job.outcome.value if job.outcome is not None else None,
        "agent_id": job.agent_id,
        "exit_code": job.exit_code,
        "finished_at": job.finished_at,
    }


def finished_build_to_dict(build: Build) -> dict[str, Any]:
    """`build.finished`'s object: the build at its end, every job, and its cancel."""
    return {
        "build_id": build.build_id,
        "pipeline": build.pipeline,
        "status": build.status.value,
        "created_at": build.created_at,
        "finished_at": build.finished_at,
        "concurrency_group": build.concurrency_group,
        "submitted_by": build.submitted_by,
        "jobs": [_job_to_dict(job) for job in build.jobs()],
        "cancel": cancel_to_dict(build),
    }


def accepted_cancel_to_dict(build: Build) -> dict[str, Any]:
    """`cancel.accepted`'s object: the cancel, and where the build stands after it."""
    cancel = cancel_to_dict(build)
    assert cancel is not None
    stopping = sum(1 for job in build.jobs() if job.status is JobStatus.STOPPING)
    return {
        "build_id": build.build_id,
        "pipeline": build.pipeline,
        # CANCELING, or CANCELED when nothing ran on an agent.
        "status": build.status.value,
        **cancel,
        "jobs_stopping": stopping,
    }


def stopped_job_to_dict(build: Build, job: Job) -> dict[str, Any]:
    """`job.stopped`'s object: the job, how it ended, and the cancel that stopped it."""
    cancel = build.cancel
    return {
        "build_id": build.build_id,
        "pipeline": build.pipeline,
        **_job_to_dict(job),
        "reason": cancel.reason if cancel is not None else None,
        "requested_by": cancel.requested_by if cancel is not None else None,
    }
