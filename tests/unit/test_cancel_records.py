"""The cancel record in the domain: an escalation is kept beside the first cancel, and
a cancel's webhook notification joins exactly the change set that ends it."""

from __future__ import annotations

from buildcontrol_server.domain import cancellation, lifecycle
from buildcontrol_server.domain.deliveries import endpoints_of
from buildcontrol_server.domain.model import CancelEscalation, CancelInfo, CancelRecord
from buildcontrol_server.domain.notifications import canceled
from buildcontrol_server.domain.states import BuildStatus, JobOutcome

from tests.unit.lifecycle_samples import INFO, NOW, TIMES, make_build, run_job

ENDPOINTS = endpoints_of(["http://127.0.0.1:1/hook"])
FORCE = CancelInfo("hung", "bob", True, 0.0, NOW + 5)


def test_a_forced_cancel_on_a_cancel_under_way_is_recorded_beside_the_first() -> None:
    build = make_build([1])
    job = build.stages[0].jobs[0]
    run_job(build, job.job_id)
    cancellation.cancel(build, INFO, TIMES, NOW)
    fx = cancellation.cancel(build, FORCE, TIMES, NOW + 5)
    assert fx.escalated and [stop.grace_period for stop in fx.stops] == [0.0]
    assert build.cancel is not None
    assert (build.cancel.requested_by, build.cancel.force, build.cancel.grace_period) == (
        "tester",
        False,
        10.0,
    )
    assert build.cancel.escalations == (CancelEscalation("bob", "hung", NOW + 5, force=True),)
    assert build.cancel.forced and not cancellation.cleanup_runs(build)
    # Already forced: a third cancel, forced or not, joins it and adds nothing.
    assert cancellation.cancel(build, FORCE, TIMES, NOW + 6).duplicate
    assert len(build.cancel.escalations) == 1
    lifecycle.job_stopped(build, job.job_id, "a1", JobOutcome.KILLED, None, NOW + 7)
    record = CancelRecord.of(build)
    assert (record.requested_by, record.force, record.escalations) == (
        "tester",
        False,
        build.cancel.escalations,
    )


def test_the_notification_joins_only_the_change_set_that_ends_the_cancel() -> None:
    build = make_build([1])
    job = build.stages[0].jobs[0]
    run_job(build, job.job_id)
    canceling = cancellation.cancel(build, INFO, TIMES, NOW).changes
    cancellation.queue_notification(build, canceling, ENDPOINTS)
    assert canceling.outbox == []  # CANCELING: nothing to tell yet
    ending = lifecycle.job_stopped(build, job.job_id, "a1", JobOutcome.GRACEFUL, 0, NOW).changes
    assert build.status is BuildStatus.CANCELED
    cancellation.queue_notification(build, ending, ())
    assert ending.outbox == []  # no endpoint configured: no outbox row
    cancellation.queue_notification(build, ending, ENDPOINTS)
    cancellation.queue_notification(build, ending, ENDPOINTS)  # once, however often asked
    [entry] = ending.outbox
    assert entry.endpoints == ENDPOINTS and entry.notification == canceled(CancelRecord.of(build))
    assert entry.delivery_id == f"{build.build_id}.build.canceled"


def test_the_audit_record_joins_only_the_change_set_that_ends_the_cancel() -> None:
    build = make_build([1])
    job = build.stages[0].jobs[0]
    run_job(build, job.job_id)
    canceling = cancellation.cancel(build, INFO, TIMES, NOW).changes
    cancellation.record_audit(build, canceling)
    assert canceling.audit == []  # CANCELING: the cancel has not ended
    ending = lifecycle.job_stopped(build, job.job_id, "a1", JobOutcome.GRACEFUL, 0, NOW).changes
    assert build.status is BuildStatus.CANCELED
    cancellation.record_audit(build, ending)
    cancellation.record_audit(build, ending)  # once, however often asked
    assert ending.audit == [CancelRecord.of(build)]


def test_a_build_that_ends_otherwise_gets_no_audit_record() -> None:
    build = make_build([1])
    job = build.stages[0].jobs[0]
    run_job(build, job.job_id)
    ending = lifecycle.job_finished(build, job.job_id, "a1", True, 0, NOW).changes
    assert build.status is BuildStatus.SUCCEEDED
    cancellation.record_audit(build, ending)
    assert ending.audit == []
