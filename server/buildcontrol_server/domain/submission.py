"""A submitted pipeline: its validation and the new Build it becomes."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field

from buildcontrol_server.domain.errors import InvalidArgument
from buildcontrol_server.domain.model import Build, Job, Stage, Step

BUILD_ID_PATTERN = re.compile(r"^b[0-9a-f]{20}$")
MAX_NAME_LENGTH = 200
MAX_COMMAND_LENGTH = 65_536
MAX_REASON_LENGTH = 1_024
MAX_STAGES = 50
MAX_JOBS_PER_STAGE = 200
MAX_STEPS_PER_JOB = 200


MAX_JOB_TIMEOUT = 7 * 24 * 3600.0


@dataclass(frozen=True)
class StepSpec:
    command: str
    name: str = ""
    run_on_cancel: bool = False


@dataclass(frozen=True)
class JobSpec:
    name: str
    steps: tuple[StepSpec, ...]
    labels: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    run_on_cancel: bool = False
    timeout: float | None = None


@dataclass(frozen=True)
class StageSpec:
    name: str
    jobs: tuple[JobSpec, ...]


@dataclass(frozen=True)
class PipelineSpec:
    pipeline: str
    stages: tuple[StageSpec, ...]
    concurrency_group: str = ""
    cancel_in_progress: bool = False


def new_build_id(now: float) -> str:
    """`b` + 12 hex digits of milliseconds + 8 random: unique, and sorts by creation."""
    return f"b{int(now * 1000):012x}{secrets.token_hex(4)}"


def check_build_id(build_id: str, field_name: str = "build_id") -> str:
    if not build_id:
        raise InvalidArgument(field_name, "must not be empty")
    if not BUILD_ID_PATTERN.fullmatch(build_id):
        raise InvalidArgument(
            field_name, f"{build_id[:64]!r} is not a build id (b + 20 hex digits)"
        )
    return build_id


def _check_name(value: str, where: str) -> None:
    if not value.strip():
        raise InvalidArgument(where, "must not be empty")
    if len(value) > MAX_NAME_LENGTH:
        raise InvalidArgument(where, f"longer than {MAX_NAME_LENGTH} characters")


def _check_count(items: tuple[object, ...], where: str, most: int) -> None:
    if not items:
        raise InvalidArgument(where, "needs at least one")
    if len(items) > most:
        raise InvalidArgument(where, f"more than {most}")


def validate(spec: PipelineSpec) -> None:
    """Raise InvalidArgument naming the first field that is wrong."""
    _check_name(spec.pipeline, "pipeline")
    if len(spec.concurrency_group) > MAX_NAME_LENGTH:
        raise InvalidArgument("concurrency_group", f"longer than {MAX_NAME_LENGTH} characters")
    if spec.cancel_in_progress and not spec.concurrency_group:
        raise InvalidArgument("cancel_in_progress", "needs a concurrency_group")
    _check_count(spec.stages, "stages", MAX_STAGES)
    for s, stage in enumerate(spec.stages):
        _check_name(stage.name, f"stages[{s}].name")
        _check_count(stage.jobs, f"stages[{s}].jobs", MAX_JOBS_PER_STAGE)
        seen: set[str] = set()
        for j, job in enumerate(stage.jobs):
            where = f"stages[{s}].jobs[{j}]"
            _check_name(job.name, f"{where}.name")
            if job.name in seen:
                raise InvalidArgument(f"{where}.name", f"{job.name!r} repeats in its stage")
            seen.add(job.name)
            if job.timeout is not None and not 0 < job.timeout <= MAX_JOB_TIMEOUT:
                raise InvalidArgument(f"{where}.timeout", "must be between 0 and 7 days")
            _check_count(job.steps, f"{where}.steps", MAX_STEPS_PER_JOB)
            for k, step in enumerate(job.steps):
                if not step.command.strip():
                    raise InvalidArgument(f"{where}.steps[{k}].command", "must not be empty")
                if len(step.command) > MAX_COMMAND_LENGTH:
                    raise InvalidArgument(
                        f"{where}.steps[{k}].command", f"longer than {MAX_COMMAND_LENGTH}"
                    )


def check_reason(reason: str) -> str:
    if len(reason) > MAX_REASON_LENGTH:
        raise InvalidArgument("reason", f"longer than {MAX_REASON_LENGTH} characters")
    return reason


def new_build(spec: PipelineSpec, now: float) -> Build:
    validate(spec)
    build_id = new_build_id(now)
    stages: list[Stage] = []
    number = 0
    for s, stage_spec in enumerate(spec.stages):
        jobs: list[Job] = []
        for job_spec in stage_spec.jobs:
            job_id = f"{build_id}-j{number}"
            number += 1
            steps = [
                Step(
                    job_id=job_id,
                    index=k,
                    name=step.name or step.command,
                    command=step.command,
                    run_on_cancel=step.run_on_cancel,
                )
                for k, step in enumerate(job_spec.steps)
            ]
            jobs.append(
                Job(
                    job_id=job_id,
                    build_id=build_id,
                    stage_index=s,
                    name=job_spec.name,
                    labels=dict(job_spec.labels),
                    env=dict(job_spec.env),
                    steps=steps,
                    run_on_cancel=job_spec.run_on_cancel,
                    timeout=job_spec.timeout,
                )
            )
        stages.append(Stage(name=stage_spec.name, jobs=jobs))
    return Build(
        build_id=build_id,
        pipeline=spec.pipeline,
        stages=stages,
        created_at=now,
        concurrency_group=spec.concurrency_group or None,
        cancel_in_progress=spec.cancel_in_progress,
    )
