"""Defects the fault-injection walks (tests/faults) found, each pinned by an example."""

from __future__ import annotations

from buildcontrol_proto.v1 import build_control_pb2, build_pb2

from tests.rpc.conftest import Running
from tests.support.agent_peer import AgentPeer

WAIT = 10.0


def two_stages() -> build_control_pb2.SubmitBuildRequest:
    """Stage one runs on pool a; stage two needs pool b, which no agent offers."""
    return build_control_pb2.SubmitBuildRequest(
        pipeline="two-stages",
        stages=[
            build_control_pb2.StageSpec(
                name=f"stage{n}",
                jobs=[
                    build_control_pb2.JobSpec(
                        name=f"job{n}",
                        labels={"pool": pool},
                        steps=[build_control_pb2.StepSpec(command="true")],
                    )
                ],
            )
            for n, pool in enumerate(("a", "b"))
        ],
    )


async def stage_one_done(server: Running, build_id: str) -> None:
    """Follow WatchBuild until the first job SUCCEEDED."""
    async for event in server.stub.WatchBuild(
        build_control_pb2.WatchBuildRequest(build_id=build_id), timeout=WAIT
    ):
        kind = event.WhichOneof("event")
        if kind == "snapshot":
            statuses = [j.status for s in event.snapshot.stages for j in s.jobs]
        elif kind == "job_changed":
            statuses = [event.job_changed.status]
        else:
            continue
        if build_pb2.JOB_STATUS_SUCCEEDED in statuses:
            return


async def test_cancel_of_running_build_with_nothing_on_an_agent_ends_canceled(
    server: Running,
) -> None:
    """A RUNNING build whose next stage waits for an agent has nothing to stop: the
    cancel used to compute RUNNING -> CANCELED, a move the state table forbids, and
    was refused FAILED_PRECONDITION, so the build could never be cancelled."""
    agent = AgentPeer(server.target, "a1", {"pool": "a"})
    await agent.connect()
    build = (await server.stub.SubmitBuild(two_stages())).build
    assign = await agent.take_job()
    agent.finished(assign.build_id, assign.job_id)
    await stage_one_done(server, build.build_id)

    request = build_control_pb2.CancelRequest(build_id=build.build_id, reason="not needed")
    events = [m async for m in server.stub.Cancel(request, timeout=WAIT)]

    assert events[0].WhichOneof("event") == "accepted"
    assert events[-1].finished.status == build_pb2.BUILD_STATUS_CANCELED
    stored = (
        await server.stub.GetBuild(build_control_pb2.GetBuildRequest(build_id=build.build_id))
    ).build
    assert stored.status == build_pb2.BUILD_STATUS_CANCELED
    assert [j.status for s in stored.stages for j in s.jobs] == [
        build_pb2.JOB_STATUS_SUCCEEDED,
        build_pb2.JOB_STATUS_CANCELED,
    ]
    assert stored.stages[1].jobs[0].outcome == build_pb2.JOB_OUTCOME_NEVER_STARTED
    await agent.leave()
