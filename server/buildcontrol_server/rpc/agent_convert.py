"""The one place the agent stream's protobuf messages become domain objects and back
(BuildControl's: convert.py)."""

from __future__ import annotations

from buildcontrol_proto.v1 import agent_pb2, build_pb2

from buildcontrol_server.domain.agent_commands import (
    AssignCommand,
    DrainCommand,
    ReportsCommittedCommand,
    StopCommand,
)
from buildcontrol_server.domain.errors import InvalidArgument
from buildcontrol_server.domain.events import (
    AgentHello,
    AgentReport,
    JobAcceptedReport,
    JobFinishedReport,
    JobStoppedReport,
    RunningJobClaim,
    StepFinishedReport,
    StepStartedReport,
)
from buildcontrol_server.domain.states import JobOutcome
from buildcontrol_server.rpc.convert import duration
from buildcontrol_server.version import version

# Longest report_id an agent may give a result (the reference agent's are ~40).
MAX_REPORT_ID_LENGTH = 200
_OUTCOME_FROM_AGENT = {
    build_pb2.JOB_OUTCOME_GRACEFUL: JobOutcome.GRACEFUL,
    build_pb2.JOB_OUTCOME_KILLED: JobOutcome.KILLED,
}

# An agent's self-reported version is shown, not trusted: bounded like a name.
MAX_VERSION_LENGTH = 100


def _stop_job(command: StopCommand) -> agent_pb2.StopJob:
    return _filled(agent_pb2.StopJob(), command)


def _filled(stop: agent_pb2.StopJob, command: StopCommand) -> agent_pb2.StopJob:
    """`stop` with `command`'s fields, set in place: a StopJobs batch fills its own
    entries, since building each StopJob apart and copying it in took twice as long
    (13 µs a stop; 10,000 of them in a mass cancel)."""
    stop.build_id = command.build_id
    stop.job_id = command.job_id
    stop.reason = command.reason
    stop.grace_period.FromNanoseconds(int(command.grace_period * 1e9))
    stop.deadline.FromNanoseconds(int(command.deadline * 1e9))
    stop.skip_cleanup = command.skip_cleanup
    stop.cleanup_timeout.FromNanoseconds(int(command.cleanup_timeout * 1e9))
    stop.requested_by = command.requested_by
    return stop


def stops_to_agent(commands: list[StopCommand]) -> agent_pb2.ConnectResponse:
    """One StopJob, or a StopJobs of several (only for an agent that takes them)."""
    if len(commands) == 1:
        return agent_pb2.ConnectResponse(stop_job=_stop_job(commands[0]))
    message = agent_pb2.ConnectResponse()
    stops = message.stop_jobs.stops
    for command in commands:
        _filled(stops.add(), command)
    return message


def to_agent(
    command: AssignCommand | StopCommand | DrainCommand | ReportsCommittedCommand,
) -> agent_pb2.ConnectResponse:
    match command:
        case StopCommand():
            return agent_pb2.ConnectResponse(stop_job=_stop_job(command))
        case AssignCommand():
            return agent_pb2.ConnectResponse(
                assign_job=agent_pb2.AssignJob(
                    build_id=command.build_id,
                    job_id=command.job_id,
                    name=command.name,
                    steps=[
                        agent_pb2.AssignedStep(
                            index=s.index,
                            name=s.name,
                            command=s.command,
                            run_on_cancel=s.run_on_cancel,
                        )
                        for s in command.steps
                    ],
                    env=command.env,
                    secret_env_names=command.secret_env_names,
                )
            )
        case DrainCommand():
            return agent_pb2.ConnectResponse(drain=agent_pb2.Drain(reason=command.reason))
        case ReportsCommittedCommand():
            return agent_pb2.ConnectResponse(
                reports_committed=agent_pb2.ReportsCommitted(report_ids=command.report_ids)
            )


def welcome(
    session_id: str, heartbeat_interval: float, stop_batches: bool
) -> agent_pb2.ConnectResponse:
    """`stop_batches`: the agent's Hello listed the feature; the Welcome lists it back."""
    return agent_pb2.ConnectResponse(
        welcome=agent_pb2.Welcome(
            session_id=session_id,
            heartbeat_interval=duration(heartbeat_interval),
            server_version=version(),
            features=[agent_pb2.AGENT_FEATURE_STOP_BATCHES] if stop_batches else [],
        )
    )


def _job_ref(build_id: str, job_id: str, where: str) -> None:
    if not build_id:
        raise InvalidArgument(f"{where}.build_id", "must not be empty")
    if not job_id:
        raise InvalidArgument(f"{where}.job_id", "must not be empty")


def _report_id(report_id: str, where: str) -> str:
    if len(report_id) > MAX_REPORT_ID_LENGTH:
        raise InvalidArgument(f"{where}.report_id", f"longer than {MAX_REPORT_ID_LENGTH}")
    return report_id


def _job_finished(message: agent_pb2.JobFinished, where: str) -> JobFinishedReport:
    _job_ref(message.build_id, message.job_id, where)
    return JobFinishedReport(
        message.build_id,
        message.job_id,
        message.succeeded,
        message.exit_code,
        _report_id(message.report_id, where),
    )


def _job_stopped(message: agent_pb2.JobStopped, where: str) -> JobStoppedReport:
    _job_ref(message.build_id, message.job_id, where)
    how = _OUTCOME_FROM_AGENT.get(message.outcome)
    if how is None:
        raise InvalidArgument(f"{where}.outcome", "must be GRACEFUL or KILLED")
    code = message.exit_code if message.HasField("exit_code") else None
    report_id = _report_id(message.report_id, where)
    return JobStoppedReport(message.build_id, message.job_id, how, code, report_id)


def hello(message: agent_pb2.Hello) -> AgentHello:
    if not message.agent_id:
        raise InvalidArgument("hello.agent_id", "must not be empty")
    if message.capacity < 1:
        raise InvalidArgument("hello.capacity", "must be at least 1")
    earlier: list[AgentReport] = [
        _job_finished(m, "hello.finished_jobs") for m in message.finished_jobs
    ]
    earlier += [_job_stopped(m, "hello.stopped_jobs") for m in message.stopped_jobs]
    for claim in message.running_jobs:
        _job_ref(claim.build_id, claim.job_id, "hello.running_jobs")
    return AgentHello(
        agent_id=message.agent_id,
        labels=dict(message.labels),
        capacity=message.capacity,
        running=tuple(RunningJobClaim(c.build_id, c.job_id) for c in message.running_jobs),
        earlier_reports=tuple(earlier),
        version=message.agent_version[:MAX_VERSION_LENGTH],
        instance_id=message.instance_id[:MAX_VERSION_LENGTH],
        stop_batches=agent_pb2.AGENT_FEATURE_STOP_BATCHES in message.features,
    )


def reports(message: agent_pb2.ConnectRequest) -> list[AgentReport]:
    """The reports a message carries, in order: none for a heartbeat, several for a
    JobsStopped, else one. Hello and Goodbye are handled by the stream itself."""
    if message.HasField("jobs_stopped"):
        stopped = message.jobs_stopped.stopped
        if not stopped:
            raise InvalidArgument("jobs_stopped.stopped", "must name at least one job")
        return [_job_stopped(m, "jobs_stopped.stopped") for m in stopped]
    one = _report(message)
    return [] if one is None else [one]


def _report(message: agent_pb2.ConnectRequest) -> AgentReport | None:
    kind = message.WhichOneof("event")
    match kind:
        case "job_accepted":
            m = message.job_accepted
            _job_ref(m.build_id, m.job_id, kind)
            return JobAcceptedReport(m.build_id, m.job_id)
        case "step_started":
            s = message.step_started
            _job_ref(s.build_id, s.job_id, kind)
            return StepStartedReport(s.build_id, s.job_id, s.step_index)
        case "step_finished":
            f = message.step_finished
            _job_ref(f.build_id, f.job_id, kind)
            return StepFinishedReport(f.build_id, f.job_id, f.step_index, f.exit_code)
        case "job_finished":
            return _job_finished(message.job_finished, kind)
        case "job_stopped":
            return _job_stopped(message.job_stopped, kind)
        case "heartbeat":
            return None
    raise InvalidArgument("event", f"{kind or 'nothing'} is not expected here")
