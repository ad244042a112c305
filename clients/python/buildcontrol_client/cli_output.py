"""How the CLI prints builds and stream events: one plain line per event, or JSON.

Text from the server (names, reasons, commands) is printed with control characters
escaped, so a crafted build name cannot move the cursor or recolor a terminal, and
piped output stays one event per line.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator

from buildcontrol_proto.v1 import build_control_pb2, build_pb2
from google.protobuf import json_format, message, timestamp_pb2
from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper


def to_json(msg: message.Message) -> str:
    """One line of canonical proto JSON (the same field names grpcurl shows). Fields at
    their default value are printed too (`"connected": false`), so a script can rely on
    every field being there."""
    as_dict = json_format.MessageToDict(msg, always_print_fields_with_no_presence=True)
    return json.dumps(as_dict, separators=(",", ":"))


def print_error(message: str) -> None:
    """One line on stderr: `error: CODE: message` (control characters escaped)."""
    print(f"error: {clean(message)}", file=sys.stderr, flush=True)


def clean(text: str) -> str:
    """`text` with control and other unprintable characters escaped."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


def build_status(value: int) -> str:
    return _enum_name(build_pb2.BuildStatus, value, "BUILD_STATUS_")


def job_status(value: int) -> str:
    return _enum_name(build_pb2.JobStatus, value, "JOB_STATUS_")


def step_status(value: int) -> str:
    return _enum_name(build_pb2.StepStatus, value, "STEP_STATUS_")


def job_outcome(value: int) -> str:
    return _enum_name(build_pb2.JobOutcome, value, "JOB_OUTCOME_")


def build_line(build: build_pb2.Build) -> str:
    """One line: id, pipeline, status, creation time."""
    parts = [build.build_id, clean(build.pipeline) or "-", build_status(build.status)]
    if build.HasField("created_at"):
        parts.append(_time(build.created_at))
    return " ".join(parts)


def build_details(build: build_pb2.Build) -> Iterator[str]:
    """The build, then each stage, job and step indented under it."""
    yield f"build {build_line(build)}"
    if build.HasField("cancel"):
        yield f"  cancel {_cancel_info(build.cancel)}"
    for index, stage in enumerate(build.stages):
        yield f"  stage {index} {clean(stage.name)}"
        for job in stage.jobs:
            line = f"    job {job.job_id} {clean(job.name)} {job_status(job.status)}"
            if job.outcome:
                line += f" outcome={job_outcome(job.outcome)}"
            if job.agent_id:
                line += f" agent={clean(job.agent_id)}"
            yield line
            for step in job.steps:
                line = f"      step {step.index} {step_status(step.status)}"
                if step.HasField("exit_code"):
                    line += f" exit={step.exit_code}"
                yield f"{line} {clean(step.name or step.command)}"


def watch_line(event: build_control_pb2.WatchBuildResponse) -> str:
    kind = event.WhichOneof("event")
    if kind == "snapshot":
        snapshot = event.snapshot
        jobs = sum(len(stage.jobs) for stage in snapshot.stages)
        return f"snapshot {build_line(snapshot)} jobs={jobs}"
    if kind == "build_changed":
        changed = event.build_changed
        line = f"build {changed.build_id} {build_status(changed.status)}"
        if changed.HasField("cancel"):
            line += f" {_cancel_info(changed.cancel)}"
        return line
    if kind == "job_changed":
        job = event.job_changed
        line = f"job {job.job_id} {job_status(job.status)}"
        if job.outcome:
            line += f" outcome={job_outcome(job.outcome)}"
        if job.agent_id:
            line += f" agent={clean(job.agent_id)}"
        return line
    if kind == "step_changed":
        step = event.step_changed
        line = f"step {step.job_id}[{step.step_index}] {step_status(step.status)}"
        if step.HasField("exit_code"):
            line += f" exit={step.exit_code}"
        return line
    return f"unknown event {kind}"


def cancel_line(event: build_control_pb2.CancelResponse) -> str:
    kind = event.WhichOneof("event")
    if kind == "accepted":
        accepted = event.accepted
        # A second caller learns that its reason and grace were not the ones used.
        verb = "joined" if accepted.joined else "accepted"
        return (
            f"{verb} {accepted.build_id} {build_status(accepted.status)}"
            f" jobs_stopping={accepted.jobs_stopping} {_cancel_info(accepted.cancel)}"
        )
    if kind == "job_stopped":
        return f"job-stopped {_job_result(event.job_stopped)}"
    if kind == "finished":
        finished = event.finished
        return (
            f"finished {finished.build_id} {build_status(finished.status)}"
            f" jobs={len(finished.jobs)} "
            + " ".join(f"[{_job_result(job)}]" for job in finished.jobs)
        ).rstrip()
    return f"unknown event {kind}"


def _job_result(result: build_control_pb2.JobCancelResult) -> str:
    line = f"{result.job_id} {job_status(result.status)}"
    if result.outcome:
        line += f" outcome={job_outcome(result.outcome)}"
    return line


def _cancel_info(info: build_pb2.CancelInfo) -> str:
    parts = [
        f"by={clean(info.requested_by) or '?'}",
        f"force={'yes' if info.force else 'no'}",
        f"grace={info.grace_period_seconds:g}s",
    ]
    if info.reason:
        parts.append(f"reason={json.dumps(info.reason)}")  # quoted: it may hold spaces
    for escalation in info.escalations:
        # Who forced a cancel under way, beside (not instead of) who asked first.
        text = f"escalated_by={clean(escalation.requested_by) or '?'}"
        if escalation.force:
            text += " escalated_force=yes"
        if escalation.reason:
            text += f" escalated_reason={json.dumps(escalation.reason)}"
        parts.append(text)
    return " ".join(parts)


def _time(stamp: timestamp_pb2.Timestamp) -> str:
    return stamp.ToJsonString()


def _enum_name(enum_type: EnumTypeWrapper, value: int, prefix: str) -> str:
    try:
        name: str = enum_type.Name(value)
    except ValueError:
        return str(value)  # a status newer than this client
    return name.removeprefix(prefix)


def batch_line(event: build_control_pb2.CancelBuildsResponse) -> str:
    """One line of CancelBuilds: what is committed, a build that ended, or the summary."""
    kind = event.WhichOneof("event")
    if kind == "accepted":
        accepted = event.accepted
        return (
            f"accepted matched={accepted.matched} committed={accepted.committed}"
            f" already_canceling={accepted.already_canceling}"
            f" not_cancelable={accepted.not_cancelable} not_found={accepted.not_found}"
        )
    if kind == "build":
        finished = event.build
        return (
            f"build {finished.build_id} {build_status(finished.status)} "
            + " ".join(f"[{_job_result(job)}]" for job in finished.jobs)
        ).rstrip()
    if kind == "summary":
        summary = event.summary
        return (
            f"summary matched={summary.matched} canceled={summary.canceled}"
            f" already_canceling={summary.already_canceling}"
            f" not_cancelable={summary.not_cancelable} not_found={summary.not_found}"
        )
    return f"unknown event {kind}"


def agent_line(agent: build_control_pb2.Agent) -> str:
    """id, connected or not, capacity, jobs, labels."""
    parts = [
        clean(agent.agent_id),
        "connected" if agent.connected else "disconnected",
        f"capacity={agent.capacity}",
        f"jobs={','.join(agent.job_ids) or '-'}",
    ]
    if agent.version:
        parts.append(f"version={clean(agent.version)}")
    if agent.suspect:
        parts.append("suspect")  # missed a stop deadline: hung, or ignoring stops
    if agent.labels:
        labels = ",".join(f"{key}={value}" for key, value in sorted(agent.labels.items()))
        parts.append(f"labels={clean(labels)}")
    return " ".join(parts)
