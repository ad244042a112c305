"""SubmitBuildRequests of a given shape (jobs, stages, labels, command)."""

from __future__ import annotations

from buildcontrol_proto.v1 import build_control_pb2


def pipeline(
    jobs: int = 1,
    labels: dict[str, str] | None = None,
    stages: int = 1,
    command: str = "sleep 600",
    name: str = "test",
    **options: object,
) -> build_control_pb2.SubmitBuildRequest:
    return build_control_pb2.SubmitBuildRequest(
        pipeline=name,
        **options,  # type: ignore[arg-type]
        stages=[
            build_control_pb2.StageSpec(
                name=f"stage{s}",
                jobs=[
                    build_control_pb2.JobSpec(
                        name=f"job{j}",
                        labels=labels or {},
                        steps=[build_control_pb2.StepSpec(command=command)],
                    )
                    for j in range(jobs)
                ],
            )
            for s in range(stages)
        ],
    )
