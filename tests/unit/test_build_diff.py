"""A replica that does not own a build follows it by reading it again after each
NOTIFY: the events between two committed copies are what its WatchBuild sends."""

from __future__ import annotations

import copy

from buildcontrol_server.domain import cancellation, lifecycle
from buildcontrol_server.domain.events import BuildChangedEvent, JobChangedEvent, StepChangedEvent
from buildcontrol_server.domain.states import BuildStatus, JobStatus, StepStatus
from buildcontrol_server.replicas.build_diff import changes_between

from tests.support.store_samples import STOP_TIMES, T0, cancel_info, submitted, wide_spec


def test_an_unchanged_build_gives_no_event() -> None:
    build, _ = submitted(wide_spec(2, 2))
    assert list(changes_between(build, copy.deepcopy(build))) == []


def test_a_started_step_gives_its_step_then_its_job_then_the_build() -> None:
    before, _ = submitted(wide_spec(1, 2))
    after = copy.deepcopy(before)
    job = lifecycle.ready_jobs(after)[0]
    lifecycle.assign_job(after, job.job_id, "agent-1", T0 + 1)
    lifecycle.job_accepted(after, job.job_id, "agent-1", T0 + 1)
    lifecycle.step_started(after, job.job_id, "agent-1", 0, T0 + 1)

    changes = list(changes_between(before, after))

    assert changes == [
        StepChangedEvent(after.build_id, job.job_id, 0, StepStatus.RUNNING, None),
        JobChangedEvent(after.build_id, job.job_id, JobStatus.RUNNING, None, "agent-1"),
        BuildChangedEvent(after.build_id, BuildStatus.RUNNING, None),
    ]


def test_a_cancel_of_a_queued_build_ends_with_the_terminal_build() -> None:
    before, _ = submitted(wide_spec(2, 1))
    after = copy.deepcopy(before)
    cancellation.cancel(after, cancel_info(), STOP_TIMES, T0 + 10)

    changes = list(changes_between(before, after))

    assert changes[-1] == BuildChangedEvent(after.build_id, BuildStatus.CANCELED, after.cancel)
    assert {type(change) for change in changes[:-1]} <= {StepChangedEvent, JobChangedEvent}
