"""Builds of a given shape and jobs brought to RUNNING, for the lifecycle tests."""

from __future__ import annotations

from buildcontrol_server.domain import lifecycle
from buildcontrol_server.domain.cancellation import StopTimes
from buildcontrol_server.domain.model import Build, CancelInfo
from buildcontrol_server.domain.submission import (
    JobSpec,
    PipelineSpec,
    StageSpec,
    StepSpec,
    new_build,
)

NOW = 1_700_000_000.0
INFO = CancelInfo("stop", "tester", False, 10.0, NOW)
TIMES = StopTimes(ack_timeout=5.0, cleanup_timeout=60.0)


def make_build(stages: list[int], steps: int = 2) -> Build:
    spec = PipelineSpec(
        "p",
        tuple(
            StageSpec(
                f"s{s}",
                tuple(
                    JobSpec(f"j{j}", tuple(StepSpec(f"echo {k}") for k in range(steps)))
                    for j in range(jobs)
                ),
            )
            for s, jobs in enumerate(stages)
        ),
    )
    return new_build(spec, NOW)


def run_job(build: Build, job_id: str, agent: str = "a1") -> None:
    lifecycle.assign_job(build, job_id, agent, NOW)
    lifecycle.job_accepted(build, job_id, agent, NOW)
    lifecycle.step_started(build, job_id, agent, 0, NOW)
