"""Realistic builds and change sets for the store tests, made by the domain's own
functions (submission and lifecycle), so the store is tested on what actors write."""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path

from buildcontrol_server.domain import cancellation, lifecycle
from buildcontrol_server.domain.cancellation import StopTimes
from buildcontrol_server.domain.model import Build, CancelInfo, ChangeSet
from buildcontrol_server.domain.states import BuildStatus
from buildcontrol_server.domain.submission import (
    JobSpec,
    PipelineSpec,
    StageSpec,
    StepSpec,
    new_build,
)
from buildcontrol_server.store.base import BuildStore

# Build ids carry the creation time in milliseconds: distinct `now`s sort builds.
T0 = 1_700_000_000.0
STOP_TIMES = StopTimes(ack_timeout=30, cleanup_timeout=60)


def two_stage_spec(pipeline: str = "web") -> PipelineSpec:
    return PipelineSpec(
        pipeline=pipeline,
        stages=(
            StageSpec(
                "build",
                (
                    JobSpec(
                        "compile",
                        (StepSpec("make deps", name="deps"), StepSpec("make -j4")),
                        labels={"os": "linux", "arch": "amd64"},
                        env={"CC": "clang", "EMPTY": ""},
                    ),
                    JobSpec("lint", (StepSpec("ruff check ."),), labels={"os": "linux"}),
                ),
            ),
            StageSpec("test", (JobSpec("unit", (StepSpec("pytest -q"), StepSpec("coverage"))),)),
        ),
    )


def wide_spec(jobs: int, steps: int, pipeline: str = "wide") -> PipelineSpec:
    return PipelineSpec(
        pipeline=pipeline,
        stages=(
            StageSpec(
                "all",
                tuple(
                    JobSpec(f"job{j}", tuple(StepSpec(f"echo {j}.{k}") for k in range(steps)))
                    for j in range(jobs)
                ),
            ),
        ),
    )


def submitted(spec: PipelineSpec | None = None, now: float = T0) -> tuple[Build, ChangeSet]:
    build = new_build(spec or two_stage_spec(), now)
    return build, ChangeSet(new_build=build)


def cancel_info(now: float = T0 + 10, force: bool = False) -> CancelInfo:
    return CancelInfo(
        reason="superseded by a newer push",
        requested_by="alice@example.com",
        force=force,
        grace_period=7.5,
        requested_at=now,
    )


def canceled(spec: PipelineSpec | None = None, now: float = T0) -> tuple[Build, list[ChangeSet]]:
    """A build cancelled while QUEUED (CANCELED at once: nothing ran), and the change
    sets that store it: its submission, then its cancel."""
    build, _ = submitted(spec, now)
    # A copy: the cancel below bumps the build's versions, the insert must not see it.
    insert = ChangeSet(new_build=copy.deepcopy(build))
    cancel = cancellation.cancel(build, cancel_info(now + 5), STOP_TIMES, now + 5).changes
    assert build.status is BuildStatus.CANCELED
    return build, [insert, cancel]


async def commit_canceled(store: BuildStore, count: int, start: float = T0) -> list[Build]:
    """Store `count` CANCELED builds (2 jobs of 2 steps each), without audit rows."""
    builds = []
    for n in range(count):
        build, change_sets = canceled(wide_spec(2, 2), now=start + n)
        for changes in change_sets:
            await store.commit(changes)
        builds.append(build)
    return builds


def start_first_job(build: Build, agent_id: str = "agent-1", now: float = T0 + 1) -> ChangeSet:
    """Assign the first ready job, accept it and start its first step: one change set."""
    job = lifecycle.ready_jobs(build)[0]
    changes = lifecycle.assign_job(build, job.job_id, agent_id, now).changes
    changes.merge(lifecycle.job_accepted(build, job.job_id, agent_id, now).changes)
    changes.merge(lifecycle.step_started(build, job.job_id, agent_id, 0, now).changes)
    return changes


def file_digest(path: str | Path) -> str:
    return hashlib.sha256(read_file(path)).hexdigest()


def read_file(path: str | Path) -> bytes:
    return Path(path).read_bytes()


def write_file(path: str | Path, data: bytes) -> None:
    Path(path).write_bytes(data)


async def prefill(store: BuildStore, count: int) -> list[Build]:
    """`count` builds CANCELED in 2023 (2 jobs x 2 steps each), straight into the store
    as the actors would have written them."""
    builds: list[Build] = []
    for start in range(0, count, 200):
        made = [
            canceled(wide_spec(2, 2), now=T0 + n) for n in range(start, min(count, start + 200))
        ]
        for errors in (
            await store.commit_all([insert for _, (insert, _) in made]),
            await store.commit_all([cancel for _, (_, cancel) in made]),
        ):
            assert errors == [None] * len(made)
        builds += [build for build, _ in made]
    return builds
