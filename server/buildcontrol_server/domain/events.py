"""Messages between the parts of the server, as plain data: what agents report, what is
sent to agents, and what cancel streams and watchers are told. rpc/convert.py turns
them into protobuf messages and back."""

from __future__ import annotations

from dataclasses import dataclass

from buildcontrol_server.domain.model import CancelInfo
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


# ---- server → agent ----------------------------------------------------------------


@dataclass(frozen=True)
class AssignedStep:
    index: int
    name: str
    command: str
    run_on_cancel: bool = False


@dataclass(frozen=True)
class AssignCommand:
    build_id: str
    job_id: str
    name: str
    steps: tuple[AssignedStep, ...]
    env: dict[str, str]
    # The env entries the agent masks as *** in the job's log.
    secret_env_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class DrainCommand:
    reason: str


@dataclass(frozen=True)
class ReportsCommittedCommand:
    """Tell the agent these results (by report id) need no re-sending: stored, or
    never needed (their build is over or unknown, or the job is not the agent's)."""

    report_ids: tuple[str, ...]


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
