"""What each event does to a build (domain/lifecycle.py), without any I/O."""

from __future__ import annotations

import contextlib

import pytest
from buildcontrol_server.domain import cancellation, lifecycle
from buildcontrol_server.domain.errors import DomainError, FailedPrecondition, PermissionDenied
from buildcontrol_server.domain.events import (
    JobAcceptedReport,
    StepFinishedReport,
    StepStartedReport,
)
from buildcontrol_server.domain.model import Build, CancelInfo
from buildcontrol_server.domain.states import (
    BuildStatus,
    IllegalTransition,
    JobOutcome,
    JobStatus,
    StepStatus,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.lifecycle_samples import INFO, NOW, TIMES, make_build, run_job


def test_only_the_first_stage_is_ready_at_first() -> None:
    build = make_build([2, 1])
    assert [j.job_id for j in lifecycle.ready_jobs(build)] == [
        j.job_id for j in build.stages[0].jobs
    ]


def test_stages_run_in_order_and_the_build_succeeds() -> None:
    build = make_build([2, 1])
    for job in build.stages[0].jobs:
        run_job(build, job.job_id)
    assert build.status is BuildStatus.RUNNING
    first = build.stages[0].jobs[0]
    fx = lifecycle.job_finished(build, first.job_id, "a1", True, 0, NOW)
    assert fx.ready == []  # the stage still runs
    fx = lifecycle.job_finished(build, build.stages[0].jobs[1].job_id, "a1", True, 0, NOW)
    assert fx.ready == build.stages[1].jobs
    last = build.stages[1].jobs[0]
    run_job(build, last.job_id)
    lifecycle.step_finished(build, last.job_id, "a1", 0, 0, NOW)
    lifecycle.step_started(build, last.job_id, "a1", 1, NOW)
    lifecycle.job_finished(build, last.job_id, "a1", True, 0, NOW)
    assert build.status is BuildStatus.SUCCEEDED
    assert all(s.status is StepStatus.SUCCEEDED for s in last.steps)


def test_a_failed_job_skips_later_stages_and_fails_the_build() -> None:
    build = make_build([1, 2])
    job = build.stages[0].jobs[0]
    run_job(build, job.job_id)
    lifecycle.step_finished(build, job.job_id, "a1", 0, 3, NOW)
    lifecycle.job_finished(build, job.job_id, "a1", False, 3, NOW)
    assert build.status is BuildStatus.FAILED
    assert [s.status for s in job.steps] == [StepStatus.FAILED, StepStatus.SKIPPED]
    assert {j.status for j in build.stages[1].jobs} == {JobStatus.SKIPPED}


def test_assigning_a_job_that_is_not_ready_is_refused() -> None:
    build = make_build([1, 1])
    with pytest.raises(FailedPrecondition):
        lifecycle.assign_job(build, build.stages[1].jobs[0].job_id, "a1", NOW)


def test_cancel_of_queued_build_needs_no_agent() -> None:
    build = make_build([2])
    fx = cancellation.cancel(build, INFO, TIMES, NOW)
    assert build.status is BuildStatus.CANCELED
    assert fx.stops == []
    assert {j.outcome for j in build.jobs()} == {JobOutcome.NEVER_STARTED}
    assert {s.status for j in build.jobs() for s in j.steps} == {StepStatus.CANCELED}


def test_cancel_of_running_build_stops_agents_and_ends_after_the_last_stop() -> None:
    build = make_build([3])
    a, b, c = build.stages[0].jobs
    run_job(build, a.job_id, "a1")
    lifecycle.assign_job(build, b.job_id, "a2", NOW)
    fx = cancellation.cancel(build, INFO, TIMES, NOW)
    assert build.status is BuildStatus.CANCELING
    assert {(s.job_id, s.agent_id) for s in fx.stops} == {(a.job_id, "a1"), (b.job_id, "a2")}
    assert all(s.deadline == NOW + 10.0 + 5.0 for s in fx.stops)
    assert c.status is JobStatus.CANCELED and c.outcome is JobOutcome.NEVER_STARTED
    assert a.steps[0].status is StepStatus.STOPPING
    lifecycle.job_stopped(build, a.job_id, "a1", JobOutcome.GRACEFUL, 143, NOW)
    assert build.status is BuildStatus.CANCELING
    fx = lifecycle.job_stopped(build, b.job_id, "a2", JobOutcome.KILLED, None, NOW)
    assert build.status is BuildStatus.CANCELED
    assert a.steps[0].status is StepStatus.CANCELED
    assert (a.outcome, b.outcome) == (JobOutcome.GRACEFUL, JobOutcome.KILLED)


def test_the_whole_cancel_is_one_change_set_with_each_entity_once() -> None:
    build = make_build([20], steps=5)
    for job in build.jobs():
        run_job(build, job.job_id)
    fx = cancellation.cancel(build, INFO, TIMES, NOW)
    assert len(fx.changes.builds) == 1
    assert len(fx.changes.jobs) == 20
    assert len(fx.changes.steps) == 100
    assert all(entity.version == old + 1 for entity, old in fx.changes.jobs.values())


def test_a_second_cancel_joins_the_first() -> None:
    build = make_build([1])
    run_job(build, build.jobs()[0].job_id)
    cancellation.cancel(build, INFO, TIMES, NOW)
    again = cancellation.cancel(build, CancelInfo("other", "x", False, 0, NOW), TIMES, NOW)
    assert again.duplicate and again.changes.empty and again.stops == []
    assert build.cancel == INFO


def test_cancel_of_a_finished_build_is_refused() -> None:
    build = make_build([1])
    job = build.jobs()[0]
    run_job(build, job.job_id)
    lifecycle.job_finished(build, job.job_id, "a1", True, 0, NOW)
    with pytest.raises(FailedPrecondition):
        cancellation.cancel(build, INFO, TIMES, NOW)
    assert build.status is BuildStatus.SUCCEEDED


def test_success_reported_after_the_cancel_is_still_canceled() -> None:
    build = make_build([1])
    job = build.jobs()[0]
    run_job(build, job.job_id)
    cancellation.cancel(build, INFO, TIMES, NOW)
    lifecycle.job_finished(build, job.job_id, "a1", True, 0, NOW)
    assert job.status is JobStatus.CANCELED
    assert build.status is BuildStatus.CANCELED


def test_the_deadline_forces_jobs_whose_agent_never_confirmed() -> None:
    build = make_build([2])
    for job in build.jobs():
        run_job(build, job.job_id)
    cancellation.cancel(build, INFO, TIMES, NOW)
    lifecycle.job_stopped(build, build.jobs()[0].job_id, "a1", JobOutcome.GRACEFUL, 0, NOW)
    cancellation.stop_overdue(build, {build.jobs()[1].job_id}, NOW + 15)
    assert build.jobs()[1].outcome is JobOutcome.FORCED
    assert build.status is BuildStatus.CANCELED


def test_a_job_forced_at_its_deadline_keeps_its_slot_and_one_stopped_frees_it() -> None:
    build = make_build([2])
    for job in build.jobs():
        run_job(build, job.job_id)
    cancellation.cancel(build, INFO, TIMES, NOW)
    confirmed, silent = build.jobs()
    fx = lifecycle.job_stopped(build, confirmed.job_id, "a1", JobOutcome.GRACEFUL, 0, NOW)
    assert fx.released == [("a1", confirmed.job_id)] and fx.unconfirmed == []
    fx = cancellation.stop_overdue(build, {silent.job_id}, NOW + 15)
    # The agent never said the job is gone: its slot stays counted.
    assert fx.released == [] and fx.unconfirmed == [("a1", silent.job_id)]


def test_a_stopping_job_reported_alive_gets_a_fresh_stop_from_now() -> None:
    build = make_build([1], steps=2)
    job = build.jobs()[0]
    lifecycle.assign_job(build, job.job_id, "a1", NOW)
    cancellation.cancel(build, INFO, TIMES, NOW)  # STOPPING before the agent took it
    later = NOW + 3
    accepted = JobAcceptedReport(build.build_id, job.job_id)
    fx = lifecycle.apply_report(build, "a1", accepted, later, TIMES)
    assert [(s.job_id, s.deadline) for s in fx.stops] == [
        (job.job_id, later + INFO.grace_period + TIMES.ack_timeout)
    ]
    started = StepStartedReport(build.build_id, job.job_id, 0)
    assert len(lifecycle.apply_report(build, "a1", started, later, TIMES).stops) == 1
    finished = StepFinishedReport(build.build_id, job.job_id, 0, 0)
    assert lifecycle.apply_report(build, "a1", finished, later, TIMES).stops == []
    assert job.status is JobStatus.STOPPING


def test_a_lost_agent_fails_its_running_jobs_and_forces_its_stopping_ones() -> None:
    build = make_build([2])
    a, b = build.jobs()
    run_job(build, a.job_id, "a1")
    run_job(build, b.job_id, "a2")
    lifecycle.agent_lost(build, "a1", frozenset(), NOW)
    assert a.status is JobStatus.FAILED and a.outcome is JobOutcome.LOST
    assert build.status is BuildStatus.RUNNING  # b still runs
    lifecycle.job_finished(build, b.job_id, "a2", True, 0, NOW)
    assert build.status is BuildStatus.FAILED


def test_an_agent_cannot_report_on_another_agents_job() -> None:
    build = make_build([1])
    job = build.jobs()[0]
    run_job(build, job.job_id, "a1")
    with pytest.raises(PermissionDenied):
        lifecycle.job_finished(build, job.job_id, "a2", True, 0, NOW)
    assert job.status is JobStatus.RUNNING


def test_an_agent_stopping_a_job_on_its_own_fails_it() -> None:
    build = make_build([1])
    job = build.jobs()[0]
    run_job(build, job.job_id)
    lifecycle.job_stopped(build, job.job_id, "a1", JobOutcome.GRACEFUL, 143, NOW)
    assert job.status is JobStatus.FAILED and build.status is BuildStatus.FAILED


def test_a_job_an_agent_killed_on_restart_fails_killed_not_lost() -> None:
    build = make_build([1])
    job = build.jobs()[0]
    run_job(build, job.job_id)
    lifecycle.job_stopped(build, job.job_id, "a1", JobOutcome.KILLED, None, NOW)
    assert job.status is JobStatus.FAILED and job.outcome is JobOutcome.KILLED
    assert build.status is BuildStatus.FAILED


# ---- property: random event sequences never break the invariants ----------------

EVENTS = st.lists(
    st.tuples(
        st.sampled_from(
            [
                "assign",
                "accept",
                "start",
                "step_ok",
                "ok",
                "fail",
                "stopped",
                "cancel",
                "deadline",
                "lost",
                "reconnect",
            ]
        ),
        st.integers(0, 3),  # job
        st.sampled_from(["a1", "a2"]),
        st.integers(0, 2),  # step
    ),
    max_size=40,
)


def apply(build: Build, event: tuple[str, int, str, int]) -> None:
    kind, j, agent, k = event
    jobs = build.jobs()
    job_id = jobs[j % len(jobs)].job_id
    actions = {
        "assign": lambda: lifecycle.assign_job(build, job_id, agent, NOW),
        "accept": lambda: lifecycle.job_accepted(build, job_id, agent, NOW),
        "start": lambda: lifecycle.step_started(build, job_id, agent, k, NOW),
        "step_ok": lambda: lifecycle.step_finished(build, job_id, agent, k, 0, NOW),
        "ok": lambda: lifecycle.job_finished(build, job_id, agent, True, 0, NOW),
        "fail": lambda: lifecycle.job_finished(build, job_id, agent, False, 1, NOW),
        "stopped": lambda: lifecycle.job_stopped(build, job_id, agent, JobOutcome.KILLED, 9, NOW),
        "cancel": lambda: cancellation.cancel(build, INFO, TIMES, NOW),
        "deadline": lambda: cancellation.stop_overdue(build, {job_id}, NOW),
        "lost": lambda: lifecycle.agent_lost(build, agent, frozenset(), NOW),
        "reconnect": lambda: lifecycle.agent_lost(build, agent, frozenset({job_id}), NOW),
    }
    actions[kind]()


@settings(max_examples=500, deadline=None)
@given(stages=st.lists(st.integers(1, 2), min_size=1, max_size=2), events=EVENTS)
def test_random_event_sequences_keep_the_build_consistent(
    stages: list[int], events: list[tuple[str, int, str, int]]
) -> None:
    build = make_build(stages, steps=3)
    terminal_seen: BuildStatus | None = None
    for event in events:
        # Refused events change nothing that matters below.
        with contextlib.suppress(DomainError, IllegalTransition):
            apply(build, event)
        if terminal_seen is not None:
            assert build.status is terminal_seen, "a terminal build changed"
        if build.terminal:
            terminal_seen = build.status
            assert all(job.terminal for job in build.jobs())
        if build.status is BuildStatus.SUCCEEDED:
            assert all(job.status is JobStatus.SUCCEEDED for job in build.jobs())
        if build.status is BuildStatus.CANCELED:
            assert all(job.status is not JobStatus.STOPPING for job in build.jobs())
        for job in build.jobs():
            if job.status is JobStatus.CANCELED:
                assert job.outcome is not None
            if job.terminal:
                assert all(step.terminal for step in job.steps), job
