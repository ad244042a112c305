"""A submitted pipeline: its validation and the new Build it becomes."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from buildcontrol_server.domain.errors import InvalidArgument
from buildcontrol_server.domain.model import Build, Job, Stage, Step

BUILD_ID_PATTERN = re.compile(r"^b[0-9a-f]{20}$")
MAX_JOB_TIMEOUT = 7 * 24 * 3600.0


# ---- limits ----------------------------------------------------------------------
@dataclass(frozen=True)
class Limits:
    """What one request may carry (`serve --max-*` flags). A breach is refused with
    INVALID_ARGUMENT naming the field and the bound, before anything is stored. The
    gRPC message size (`--max-message-bytes`) bounds the whole request besides."""

    max_stages: int = 50  # per build
    max_jobs: int = 1_000  # per build, all stages together
    max_steps: int = 10_000  # per build, all jobs together
    # Names of pipelines, stages, jobs, steps, concurrency groups and agents; also
    # label keys and values, and environment variable names.
    max_name_length: int = 200
    max_command_length: int = 65_536
    max_env_vars: int = 100  # per job
    max_env_value_length: int = 32_768
    max_labels: int = 32  # per job, and per agent
    max_reason_length: int = 1_024


DEFAULT_LIMITS = Limits()
# ---- end of limits ------------------------------------------------------------------


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
    # Secret environment variables (values masked in the job's log).
    secret_env: dict[str, str] = field(default_factory=dict)


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


def _check_name(value: str, where: str, limits: Limits) -> None:
    if not value.strip():
        raise InvalidArgument(where, "must not be empty")
    _check_text(value, where, limits.max_name_length)


def _check_text(value: str, where: str, most: int) -> None:
    """Text the server keeps: at most `most` characters, and no NUL, which
    PostgreSQL's text cannot hold (SQLite would keep it: the backends must agree, and
    a write that can never succeed must be refused as the caller's, not retried)."""
    if len(value) > most:
        raise InvalidArgument(where, f"longer than {most} characters")
    if "\0" in value:
        raise InvalidArgument(where, "contains NUL")


def check_name_filter(value: str, where: str, limits: Limits = DEFAULT_LIMITS) -> None:
    """A pipeline or concurrency group asked for (a listing, a CancelBuilds): as a
    name, or empty (no filter)."""
    _check_text(value, where, limits.max_name_length)


def _check_count(items: tuple[object, ...], where: str, most: int) -> None:
    if not items:
        raise InvalidArgument(where, "needs at least one")
    if len(items) > most:
        raise InvalidArgument(where, f"more than {most}")


def _check_total(total: int, what: str, most: int) -> None:
    if total > most:
        raise InvalidArgument(what, f"{total} in the build, more than {most}")


def check_labels(labels: dict[str, str], where: str, limits: Limits = DEFAULT_LIMITS) -> None:
    if len(labels) > limits.max_labels:
        raise InvalidArgument(where, f"more than {limits.max_labels} labels")
    for key, value in labels.items():
        _check_name(key, f"{where} key", limits)
        _check_text(value, f"{where}[{key[:50]!r}]", limits.max_name_length)


def _check_env(env: dict[str, str], where: str, limits: Limits) -> None:
    # The agent passes these to exec: a NUL or '=' in a name, or a NUL in a value,
    # would make the agent fail the job instead of the server refusing it here.
    if len(env) > limits.max_env_vars:
        raise InvalidArgument(where, f"more than {limits.max_env_vars} variables")
    for name, value in env.items():
        _check_name(name, f"{where} name", limits)
        if "=" in name:
            raise InvalidArgument(f"{where} name", f"{name[:50]!r} contains '='")
        _check_text(value, f"{where}[{name!r}]", limits.max_env_value_length)


def check_hello(agent_id: str, labels: dict[str, str], limits: Limits = DEFAULT_LIMITS) -> None:
    _check_name(agent_id, "hello.agent_id", limits)
    check_labels(labels, "hello.labels", limits)


def validate(spec: PipelineSpec, limits: Limits = DEFAULT_LIMITS) -> None:
    """Raise InvalidArgument naming the first field that is wrong."""
    _check_name(spec.pipeline, "pipeline", limits)
    _check_text(spec.concurrency_group, "concurrency_group", limits.max_name_length)
    if spec.cancel_in_progress and not spec.concurrency_group:
        raise InvalidArgument("cancel_in_progress", "needs a concurrency_group")
    _check_count(spec.stages, "stages", limits.max_stages)
    # Totals first: a build far too large is refused before any of it is walked.
    _check_total(sum(len(stage.jobs) for stage in spec.stages), "jobs", limits.max_jobs)
    steps = sum(len(job.steps) for stage in spec.stages for job in stage.jobs)
    _check_total(steps, "steps", limits.max_steps)
    for s, stage in enumerate(spec.stages):
        _check_name(stage.name, f"stages[{s}].name", limits)
        _check_count(stage.jobs, f"stages[{s}].jobs", limits.max_jobs)
        seen: set[str] = set()
        for j, job in enumerate(stage.jobs):
            where = f"stages[{s}].jobs[{j}]"
            _check_name(job.name, f"{where}.name", limits)
            if job.name in seen:
                raise InvalidArgument(f"{where}.name", f"{job.name!r} repeats in its stage")
            seen.add(job.name)
            if job.timeout is not None and not 0 < job.timeout <= MAX_JOB_TIMEOUT:
                raise InvalidArgument(f"{where}.timeout", "must be between 0 and 7 days")
            check_labels(job.labels, f"{where}.labels", limits)
            _check_env(job.env, f"{where}.env", limits)
            _check_env(job.secret_env, f"{where}.secret_env", limits)
            both = sorted(set(job.env) & set(job.secret_env))
            if both:
                raise InvalidArgument(f"{where}.secret_env", f"{both[0]!r} is in env too")
            if len(job.env) + len(job.secret_env) > limits.max_env_vars:
                raise InvalidArgument(f"{where}.env", f"more than {limits.max_env_vars} variables")
            _check_count(job.steps, f"{where}.steps", limits.max_steps)
            for k, step in enumerate(job.steps):
                command = f"{where}.steps[{k}].command"
                if not step.command.strip():
                    raise InvalidArgument(command, "must not be empty")
                _check_text(step.command, command, limits.max_command_length)
                _check_text(step.name, f"{where}.steps[{k}].name", limits.max_name_length)


def check_reason(reason: str, limits: Limits = DEFAULT_LIMITS) -> str:
    _check_text(reason, "reason", limits.max_reason_length)
    return reason


def check_requester(requested_by: str, limits: Limits = DEFAULT_LIMITS) -> None:
    """Who a cancel is recorded as (with authentication off, what the request says)."""
    _check_text(requested_by, "requested_by", limits.max_name_length)


def new_build(
    spec: PipelineSpec,
    now: float,
    limits: Limits = DEFAULT_LIMITS,
    submitted_by: str | None = None,
    pick_id: Callable[[float, str], str] | None = None,
) -> Build:
    """`pick_id(now, concurrency group)`: the new build's id (a replica picks one in a
    shard it owns); None: `new_build_id`."""
    validate(spec, limits)
    build_id = pick_id(now, spec.concurrency_group) if pick_id else new_build_id(now)
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
                    env={**job_spec.env, **job_spec.secret_env},
                    secret_env_names=tuple(sorted(job_spec.secret_env)),
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
        submitted_by=submitted_by,
    )
