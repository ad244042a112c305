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


@dataclass(frozen=True)
class JobStoppedReport:
    build_id: str
    job_id: str
    outcome: JobOutcome
    exit_code: int | None


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


@dataclass(frozen=True)
class DrainCommand:
    reason: str


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
