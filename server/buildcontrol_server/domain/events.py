"""Messages between the parts of the server, as plain data: what agents report, and
what cancel streams and watchers are told (what is sent to agents is in
agent_commands.py). rpc/convert.py turns them into protobuf messages and back."""

from __future__ import annotations

from dataclasses import dataclass

from buildcontrol_server.domain.model import Build, CancelInfo, Job
from buildcontrol_server.domain.states import BuildStatus, JobOutcome, JobStatus, StepStatus

# ---- agent → server ----------------------------------------------------------------


@dataclass(frozen=True)
class JobAcceptedReport:
    build_id: str
    job_id: str


@dataclass(frozen=True)
class StepStartedReport:
    build_id: str
    job_id: str
    step_index: int


@dataclass(frozen=True)
class StepFinishedReport:
    build_id: str
    job_id: str
    step_index: int
    exit_code: int


@dataclass(frozen=True)
class JobFinishedReport:
    build_id: str
    job_id: str
    succeeded: bool
    exit_code: int
    # The agent's id for this result, named back in ReportsCommitted ("" = none).
    report_id: str = ""


@dataclass(frozen=True)
class JobStoppedReport:
    build_id: str
    job_id: str
    outcome: JobOutcome
    exit_code: int | None
    report_id: str = ""  # as in JobFinishedReport


AgentReport = (
    JobAcceptedReport
    | StepStartedReport
    | StepFinishedReport
    | JobFinishedReport
    | JobStoppedReport
)


@dataclass(frozen=True)
class RunningJobClaim:
    """A job an agent says it runs (in its Hello)."""

    build_id: str
    job_id: str


@dataclass(frozen=True)
class AgentHello:
    agent_id: str
    labels: dict[str, str]
    capacity: int
    running: tuple[RunningJobClaim, ...]
    # Results re-sent from an earlier stream; applied before reconciling.
    earlier_reports: tuple[AgentReport, ...]
    # The agent's software version, as it says (shown by ListAgents).
    version: str = ""
    # The agent process's own id ("": an agent too old to send one).
    instance_id: str = ""
    # It takes several stops in one message (its Hello lists the feature).
    stop_batches: bool = False


# (The commands sent to agents live in agent_commands.py.)


def report_id_of(report: AgentReport) -> str:
    """The report's id if the agent wants it acknowledged ("" otherwise)."""
    if isinstance(report, (JobFinishedReport, JobStoppedReport)):
        return report.report_id
    return ""


# ---- server → cancel streams and watchers ------------------------------------------


@dataclass(frozen=True)
class JobResult:
    build_id: str
    job_id: str
    status: JobStatus
    outcome: JobOutcome | None


@dataclass(frozen=True)
class CancelAcceptedEvent:
    build_id: str
    status: BuildStatus
    cancel: CancelInfo
    jobs_stopping: int
    # This call found a cancel under way and joined it (its own reason was not used).
    joined: bool = False


@dataclass(frozen=True)
class CancelFinishedEvent:
    build_id: str
    status: BuildStatus
    cancel: CancelInfo | None
    jobs: tuple[JobResult, ...]


CancelEvent = CancelAcceptedEvent | JobResult | CancelFinishedEvent


def job_result(job: Job) -> JobResult:
    return JobResult(job.build_id, job.job_id, job.status, job.outcome)


def finished_event(build: Build) -> CancelFinishedEvent:
    """A cancel stream's last event: the build as it ended."""
    return CancelFinishedEvent(
        build.build_id, build.status, build.cancel, tuple(job_result(j) for j in build.jobs())
    )


@dataclass(frozen=True)
class BuildChangedEvent:
    build_id: str
    status: BuildStatus
    cancel: CancelInfo | None


@dataclass(frozen=True)
class JobChangedEvent:
    build_id: str
    job_id: str
    status: JobStatus
    outcome: JobOutcome | None
    agent_id: str | None


@dataclass(frozen=True)
class StepChangedEvent:
    build_id: str
    job_id: str
    step_index: int
    status: StepStatus
    exit_code: int | None


WatchChange = BuildChangedEvent | JobChangedEvent | StepChangedEvent
