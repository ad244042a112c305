"""Waiting on a build's state through WatchBuild (events, not polling)."""

from __future__ import annotations

from buildcontrol_proto.v1 import build_control_pb2, build_control_pb2_grpc, build_pb2

WAIT = 20.0


async def jobs_running(
    stub: build_control_pb2_grpc.BuildControlStub, build_id: str, count: int
) -> None:
    """Return once `count` jobs of the build are RUNNING as the server sees them: the
    agent's JobAccepted/StepStarted are applied (a cancel after this finds them
    started, and gets no second StopJob for a late start)."""
    running: set[str] = set()
    request = build_control_pb2.WatchBuildRequest(build_id=build_id)
    async for event in stub.WatchBuild(request, timeout=WAIT):
        kind = event.WhichOneof("event")
        if kind == "snapshot":
            jobs = [j for stage in event.snapshot.stages for j in stage.jobs]
            running = {j.job_id for j in jobs if j.status == build_pb2.JOB_STATUS_RUNNING}
        elif kind == "job_changed":
            changed = event.job_changed
            if changed.status == build_pb2.JOB_STATUS_RUNNING:
                running.add(changed.job_id)
            else:
                running.discard(changed.job_id)
        if len(running) >= count:
            return
    raise AssertionError(f"build {build_id} ended before {count} job(s) ran")
