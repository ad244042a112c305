"""What crosses replicas as rows reads back as it was written: every agent report in
a build inbox row (the results in the body they had before progress reports came),
and an AssignJob in an agent outbox row."""

from __future__ import annotations

import json

import pytest
from buildcontrol_server.domain.agent_commands import AssignCommand, AssignedStep, StopCommand
from buildcontrol_server.domain.events import (
    AgentReport,
    JobAcceptedReport,
    JobFinishedReport,
    JobStoppedReport,
    StepFinishedReport,
    StepStartedReport,
)
from buildcontrol_server.domain.states import JobOutcome
from buildcontrol_server.replicas.agent_delivery import (
    ASSIGN_KIND,
    STOP_KIND,
    assign_body,
    command_of,
    stop_body,
)
from buildcontrol_server.replicas.report_rows import report_body, report_of

BUILD, JOB = "b0123456789abcdef0123", "b0123456789abcdef0123-j0"

REPORTS: list[AgentReport] = [
    JobAcceptedReport(BUILD, JOB),
    StepStartedReport(BUILD, JOB, 2),
    StepFinishedReport(BUILD, JOB, 2, 7),
    JobFinishedReport(BUILD, JOB, True, 0, "r1"),
    JobStoppedReport(BUILD, JOB, JobOutcome.KILLED, None, "r2"),
]


@pytest.mark.parametrize("report", REPORTS)
def test_every_report_reads_back_from_its_inbox_row(report: AgentReport) -> None:
    assert report_of(report_body("agent-a", report)) == ("agent-a", report)


def test_a_result_keeps_the_body_results_had_before_progress_reports() -> None:
    body = json.loads(report_body("agent-a", JobFinishedReport(BUILD, JOB, False, 3, "r9")))
    assert "type" not in body
    assert body == {
        "agent_id": "agent-a",
        "job_id": JOB,
        "report_id": "r9",
        "exit_code": 3,
        "succeeded": False,
        "build_id": BUILD,
    }


def test_an_inbox_report_of_an_unknown_type_is_refused() -> None:
    body = json.dumps({"agent_id": "a", "build_id": BUILD, "job_id": JOB, "type": "Nope"})
    with pytest.raises(ValueError, match="unknown type 'Nope'"):
        report_of(body)


def test_an_assign_job_and_a_stop_read_back_from_their_outbox_rows() -> None:
    assign = AssignCommand(
        BUILD,
        JOB,
        "compile",
        (AssignedStep(0, "make", "make -j2"), AssignedStep(1, "clean", "rm -rf out", True)),
        {"TOKEN": "s3cret", "MODE": "fast"},
        ("TOKEN",),
    )
    assert command_of(ASSIGN_KIND, assign_body(assign)) == assign
    stop = StopCommand(BUILD, JOB, "agent-a", "wrong branch", 5.0, 1e9, requested_at=None)
    assert command_of(STOP_KIND, stop_body(stop)) == stop
