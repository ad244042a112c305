"""Every command the server sends to an agent, as plain data: assign a job, stop a
job, acknowledge results, drain. rpc/convert.py turns them into protobuf messages;
the actors hand them to the AgentLink (actors/agent_link.py)."""

from __future__ import annotations

from dataclasses import dataclass

from buildcontrol_server.domain.model import Job


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
class StopCommand:
    """Tell `agent_id` to stop `job_id`: SIGTERM, `grace_period` s, then SIGKILL."""

    build_id: str
    job_id: str
    agent_id: str
    reason: str
    grace_period: float
    deadline: float
    # A forced stop: no cleanup steps, and SIGKILL at once even if already stopping.
    skip_cleanup: bool = False
    cleanup_timeout: float = 0.0
    # perf_counter() of the Cancel request that caused this stop, stamped by the actor
    # so the stream writer can measure delivery (observability/cancel_phases.py). None:
    # not measured (a stop re-sent on reconnect, or one the server made on its own).
    requested_at: float | None = None
    # Who asked for the cancel, for the stop line at the end of the job's log.
    requested_by: str = ""


@dataclass(frozen=True)
class DrainCommand:
    reason: str


@dataclass(frozen=True)
class ReportsCommittedCommand:
    """Tell the agent these results (by report id) need no re-sending: stored, or
    never needed (their build is over or unknown, or the job is not the agent's)."""

    report_ids: tuple[str, ...]


AgentCommand = AssignCommand | StopCommand | DrainCommand | ReportsCommittedCommand


def assignment_of(job: Job) -> AssignCommand:
    return AssignCommand(
        build_id=job.build_id,
        job_id=job.job_id,
        name=job.name,
        steps=tuple(AssignedStep(s.index, s.name, s.command, s.run_on_cancel) for s in job.steps),
        env=dict(job.env),
        secret_env_names=job.secret_env_names,
    )
