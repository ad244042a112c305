"""An agent's report as a build inbox row's body, and back: how the replica holding an
agent's stream hands the owner of a build what the agent said about its job.

Results (JobFinished, JobStopped) keep the body they have had since the inbox
carried them (no "type" key); the progress reports a job assigned across replicas
adds (JobAccepted, StepStarted, StepFinished) name their type."""

from __future__ import annotations

import json

from buildcontrol_server.domain.events import (
    AgentReport,
    JobAcceptedReport,
    JobFinishedReport,
    JobStoppedReport,
    StepFinishedReport,
    StepStartedReport,
)
from buildcontrol_server.domain.states import JobOutcome

# An agent's result: what confirms a stop (agent_delivery.py).
JobResultReport = JobFinishedReport | JobStoppedReport
# What a job reports before its result.
ProgressReport = JobAcceptedReport | StepStartedReport | StepFinishedReport

RESULT_KIND = "result"
PROGRESS_KIND = "report"


def report_body(agent_id: str, report: AgentReport) -> str:
    if isinstance(report, (JobFinishedReport, JobStoppedReport)):
        return result_body(agent_id, report)
    fields: dict[str, object] = {"agent_id": agent_id, "build_id": report.build_id}
    fields["job_id"] = report.job_id
    fields["type"] = type(report).__name__
    if isinstance(report, (StepStartedReport, StepFinishedReport)):
        fields["step_index"] = report.step_index
    if isinstance(report, StepFinishedReport):
        fields["exit_code"] = report.exit_code
    return json.dumps(fields)


def report_of(body: str) -> tuple[str, AgentReport]:
    fields = json.loads(body)
    kind = fields.get("type")
    if kind is None:
        return result_of(body)
    agent_id, build_id = str(fields["agent_id"]), str(fields["build_id"])
    job_id = str(fields["job_id"])
    if kind == JobAcceptedReport.__name__:
        return agent_id, JobAcceptedReport(build_id, job_id)
    if kind == StepStartedReport.__name__:
        return agent_id, StepStartedReport(build_id, job_id, int(fields["step_index"]))
    if kind == StepFinishedReport.__name__:
        index, exit_code = int(fields["step_index"]), int(fields["exit_code"])
        return agent_id, StepFinishedReport(build_id, job_id, index, exit_code)
    raise ValueError(f"an inbox report of unknown type {kind!r}")


def result_body(agent_id: str, report: JobResultReport) -> str:
    fields: dict[str, object] = {"agent_id": agent_id, "job_id": report.job_id}
    fields["report_id"] = report.report_id
    fields["exit_code"] = report.exit_code
    if isinstance(report, JobStoppedReport):
        fields["outcome"] = report.outcome.value
    else:
        fields["succeeded"] = report.succeeded
    fields["build_id"] = report.build_id
    return json.dumps(fields)


def result_of(body: str) -> tuple[str, JobResultReport]:
    fields = json.loads(body)
    build_id, job_id = str(fields["build_id"]), str(fields["job_id"])
    exit_code = fields["exit_code"]
    report: JobResultReport
    if "outcome" in fields:
        outcome = JobOutcome(fields["outcome"])
        report = JobStoppedReport(build_id, job_id, outcome, exit_code, fields["report_id"])
    else:
        succeeded = bool(fields["succeeded"])
        report = JobFinishedReport(build_id, job_id, succeeded, exit_code, fields["report_id"])
    return str(fields["agent_id"]), report
