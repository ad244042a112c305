"""The one place protobuf messages of BuildControl become domain objects and back
(the agent stream's messages: agent_convert.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from buildcontrol_proto.v1 import build_control_pb2, build_pb2
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from buildcontrol_server.actors.agent_views import AgentView
from buildcontrol_server.actors.bulk_cancel import (
    CancelBuildsAccepted,
    CancelBuildsEvent,
    CancelBuildsSummary,
)
from buildcontrol_server.actors.selection import BuildSelector
from buildcontrol_server.domain.errors import InvalidArgument
from buildcontrol_server.domain.events import (
    BuildChangedEvent,
    CancelAcceptedEvent,
    CancelEvent,
    CancelFinishedEvent,
    JobChangedEvent,
    JobResult,
    StepChangedEvent,
    WatchChange,
)
from buildcontrol_server.domain.model import Build, CancelInfo, Job, Step
from buildcontrol_server.domain.states import BuildStatus, JobOutcome, JobStatus, StepStatus
from buildcontrol_server.domain.submission import JobSpec, PipelineSpec, StageSpec, StepSpec
from buildcontrol_server.rpc.durations import seconds_of

# Proto enum values are ints at run time; the generated stubs type them as their own
# enum classes, hence Any.
_BUILD_STATUS: dict[BuildStatus, Any] = {
    s: build_pb2.BuildStatus.Value(f"BUILD_STATUS_{s.value}") for s in BuildStatus
}
_JOB_STATUS: dict[JobStatus, Any] = {
    s: build_pb2.JobStatus.Value(f"JOB_STATUS_{s.value}") for s in JobStatus
}
_STEP_STATUS: dict[StepStatus, Any] = {
    s: build_pb2.StepStatus.Value(f"STEP_STATUS_{s.value}") for s in StepStatus
}
_OUTCOME: dict[JobOutcome, Any] = {
    o: build_pb2.JobOutcome.Value(f"JOB_OUTCOME_{o.value}") for o in JobOutcome
}


def timestamp(epoch: float | None) -> Timestamp | None:
    if epoch is None:
        return None
    stamp = Timestamp()
    stamp.FromNanoseconds(int(epoch * 1e9))
    return stamp


def duration(seconds: float) -> Duration:
    value = Duration()
    value.FromNanoseconds(int(seconds * 1e9))
    return value


def build_status(status: BuildStatus) -> Any:
    return _BUILD_STATUS[status]


def outcome(value: JobOutcome | None) -> Any:
    return build_pb2.JOB_OUTCOME_UNSPECIFIED if value is None else _OUTCOME[value]


# ---- builds -------------------------------------------------------------------------


def cancel_info(info: CancelInfo | None) -> build_pb2.CancelInfo | None:
    if info is None:
        return None
    return build_pb2.CancelInfo(
        reason=info.reason,
        requested_by=info.requested_by,
        force=info.force,
        grace_period_seconds=info.grace_period,
        requested_at=timestamp(info.requested_at),
        escalations=[
            build_pb2.CancelEscalation(
                requested_by=e.requested_by,
                reason=e.reason,
                requested_at=timestamp(e.requested_at),
                force=e.force,
            )
            for e in info.escalations
        ],
    )


def step(value: Step) -> build_pb2.Step:
    return build_pb2.Step(
        index=value.index,
        name=value.name,
        command=value.command,
        status=_STEP_STATUS[value.status],
        exit_code=value.exit_code,
        run_on_cancel=value.run_on_cancel,
    )


def job(value: Job) -> build_pb2.Job:
    return build_pb2.Job(
        job_id=value.job_id,
        name=value.name,
        stage_index=value.stage_index,
        labels=value.labels,
        status=_JOB_STATUS[value.status],
        outcome=outcome(value.outcome),
        agent_id=value.agent_id or "",
        steps=[step(s) for s in value.steps],
        finished_at=timestamp(value.finished_at),
        run_on_cancel=value.run_on_cancel,
    )


def build(value: Build) -> build_pb2.Build:
    return build_pb2.Build(
        build_id=value.build_id,
        pipeline=value.pipeline,
        status=_BUILD_STATUS[value.status],
        stages=[
            build_pb2.Stage(name=stage.name, jobs=[job(j) for j in stage.jobs])
            for stage in value.stages
        ],
        cancel=cancel_info(value.cancel),
        created_at=timestamp(value.created_at),
        finished_at=timestamp(value.finished_at),
        concurrency_group=value.concurrency_group or "",
    )


def _job_spec(j: build_control_pb2.JobSpec, where: str) -> JobSpec:
    return JobSpec(
        name=j.name,
        labels=dict(j.labels),
        env=dict(j.env),
        secret_env=dict(j.secret_env),
        steps=tuple(
            StepSpec(command=s.command, name=s.name, run_on_cancel=s.run_on_cancel) for s in j.steps
        ),
        run_on_cancel=j.run_on_cancel,
        timeout=(
            seconds_of(j.timeout, f"{where}.timeout", positive=True)
            if j.HasField("timeout")
            else None
        ),
    )


def pipeline_spec(request: build_control_pb2.SubmitBuildRequest) -> PipelineSpec:
    return PipelineSpec(
        pipeline=request.pipeline,
        stages=tuple(
            StageSpec(
                name=stage.name,
                jobs=tuple(
                    _job_spec(j, f"stages[{s}].jobs[{n}]") for n, j in enumerate(stage.jobs)
                ),
            )
            for s, stage in enumerate(request.stages)
        ),
        concurrency_group=request.concurrency_group,
        cancel_in_progress=request.cancel_in_progress,
    )


def grace_period(
    request: build_control_pb2.CancelRequest | build_control_pb2.CancelBuildsRequest,
) -> float | None:
    if not request.HasField("grace_period"):
        return None
    seconds = seconds_of(request.grace_period, "grace_period")
    if not 0 <= seconds <= 3600:
        raise InvalidArgument("grace_period", "must be between 0 and 3600 seconds")
    return seconds


# ---- events to clients --------------------------------------------------------------


def job_result(value: JobResult) -> build_control_pb2.JobCancelResult:
    return build_control_pb2.JobCancelResult(
        build_id=value.build_id,
        job_id=value.job_id,
        status=_JOB_STATUS[value.status],
        outcome=outcome(value.outcome),
    )


def cancel_finished(event: CancelFinishedEvent) -> build_control_pb2.CancelFinished:
    return build_control_pb2.CancelFinished(
        build_id=event.build_id,
        status=_BUILD_STATUS[event.status],
        cancel=cancel_info(event.cancel),
        jobs=[job_result(j) for j in event.jobs],
    )


# A CancelFinishedBatch holds at most so many builds and about so many bytes (a build
# of many jobs is large; the default receive limit of a gRPC client is 4 MiB).
BUILDS_PER_BATCH = 1000
BATCH_BYTES = 1024 * 1024


def cancel_builds_response(event: CancelBuildsEvent) -> build_control_pb2.CancelBuildsResponse:
    if isinstance(event, CancelBuildsSummary):
        return build_control_pb2.CancelBuildsResponse(summary=summary(event))
    if isinstance(event, CancelBuildsAccepted):
        return build_control_pb2.CancelBuildsResponse(accepted=accepted(event))
    return build_control_pb2.CancelBuildsResponse(build=cancel_finished(event))


def cancel_builds_batched(
    events: list[CancelBuildsEvent],
) -> Iterator[build_control_pb2.CancelBuildsResponse]:
    """`events` (in order) as messages of a batch_builds stream: the builds' ends that
    follow each other as one `builds` message each (BUILDS_PER_BATCH, BATCH_BYTES)."""
    batch = build_control_pb2.CancelFinishedBatch()
    size = 0
    for event in events:
        if isinstance(event, CancelFinishedEvent):
            finished = cancel_finished(event)
            bytes_ = finished.ByteSize()
            if batch.builds and (
                len(batch.builds) >= BUILDS_PER_BATCH or size + bytes_ > BATCH_BYTES
            ):
                yield build_control_pb2.CancelBuildsResponse(builds=batch)
                batch, size = build_control_pb2.CancelFinishedBatch(), 0
            batch.builds.append(finished)
            size += bytes_
            continue
        if batch.builds:
            yield build_control_pb2.CancelBuildsResponse(builds=batch)
            batch, size = build_control_pb2.CancelFinishedBatch(), 0
        yield cancel_builds_response(event)
    if batch.builds:
        yield build_control_pb2.CancelBuildsResponse(builds=batch)


def selector(request: build_control_pb2.CancelBuildsRequest) -> BuildSelector:
    match request.WhichOneof("selector"):
        case "ids":
            return BuildSelector(build_ids=list(request.ids.build_ids))
        case "pipeline":
            return BuildSelector(pipeline=request.pipeline)
        case "concurrency_group":
            return BuildSelector(concurrency_group=request.concurrency_group)
    raise InvalidArgument("selector", "give ids, a pipeline or a concurrency_group")


def summary(value: CancelBuildsSummary) -> build_control_pb2.CancelBuildsSummary:
    return build_control_pb2.CancelBuildsSummary(
        matched=value.matched,
        canceled=value.canceled,
        already_canceling=value.already_canceling,
        not_cancelable=value.not_cancelable,
        not_found=value.not_found,
    )


def accepted(value: CancelBuildsAccepted) -> build_control_pb2.CancelBuildsAccepted:
    return build_control_pb2.CancelBuildsAccepted(
        matched=value.matched,
        committed=value.committed,
        already_canceling=value.already_canceling,
        not_cancelable=value.not_cancelable,
        not_found=value.not_found,
    )


def agent(view: AgentView) -> build_control_pb2.Agent:
    return build_control_pb2.Agent(
        agent_id=view.agent_id,
        labels=view.labels,
        capacity=view.capacity,
        job_ids=view.job_ids,
        connected=view.connected,
        suspect=view.suspect,
        version=view.version,
    )


def cancel_event(event: CancelEvent) -> build_control_pb2.CancelResponse:
    match event:
        case CancelAcceptedEvent():
            return build_control_pb2.CancelResponse(
                accepted=build_control_pb2.CancelAccepted(
                    build_id=event.build_id,
                    status=_BUILD_STATUS[event.status],
                    cancel=cancel_info(event.cancel),
                    jobs_stopping=event.jobs_stopping,
                    joined=event.joined,
                )
            )
        case JobResult():
            return build_control_pb2.CancelResponse(job_stopped=job_result(event))
        case CancelFinishedEvent():
            return build_control_pb2.CancelResponse(finished=cancel_finished(event))


def watch_change(event: WatchChange) -> build_control_pb2.WatchBuildResponse:
    match event:
        case BuildChangedEvent():
            return build_control_pb2.WatchBuildResponse(
                build_changed=build_control_pb2.BuildChanged(
                    build_id=event.build_id,
                    status=_BUILD_STATUS[event.status],
                    cancel=cancel_info(event.cancel),
                )
            )
        case JobChangedEvent():
            return build_control_pb2.WatchBuildResponse(
                job_changed=build_control_pb2.JobChanged(
                    build_id=event.build_id,
                    job_id=event.job_id,
                    status=_JOB_STATUS[event.status],
                    outcome=outcome(event.outcome),
                    agent_id=event.agent_id or "",
                )
            )
        case StepChangedEvent():
            return build_control_pb2.WatchBuildResponse(
                step_changed=build_control_pb2.StepChanged(
                    build_id=event.build_id,
                    job_id=event.job_id,
                    step_index=event.step_index,
                    status=_STEP_STATUS[event.status],
                    exit_code=event.exit_code,
                )
            )
