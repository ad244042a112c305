"""The BuildControl calls tests make of a `Running` server: submit, get, cancel, and
waiting on WatchBuild for a state (no polling)."""

from __future__ import annotations

from typing import Any

import grpc
from buildcontrol_proto.v1 import build_control_pb2, build_control_pb2_grpc, build_pb2

from tests.support.pipelines import pipeline
from tests.support.servers import Running

WAIT = 10.0
# The deadline of a Cancel stream opened with `cancel` (its stops included).
CANCEL_WAIT = 20.0


async def submit(server: Running, **kwargs: object) -> build_pb2.Build:
    response = await server.stub.SubmitBuild(pipeline(**kwargs))  # type: ignore[arg-type]
    return response.build


async def get(server: Running, build_id: str) -> build_pb2.Build:
    return (await server.stub.GetBuild(build_control_pb2.GetBuildRequest(build_id=build_id))).build


async def rest_of(stream: object) -> list[build_control_pb2.CancelResponse]:
    """The remaining messages of a stream that was already read with read()."""
    messages = []
    while (message := await stream.read()) is not grpc.aio.EOF:  # type: ignore[attr-defined]
        messages.append(message)
    return messages


async def wait_status(server: Running, build_id: str, status: int) -> build_pb2.Build:
    """Follow WatchBuild until the build has `status` (no polling)."""
    async for event in server.stub.WatchBuild(
        build_control_pb2.WatchBuildRequest(build_id=build_id), timeout=WAIT
    ):
        kind = event.WhichOneof("event")
        if (kind == "snapshot" and event.snapshot.status == status) or (
            kind == "build_changed" and event.build_changed.status == status
        ):
            break
    return await get(server, build_id)


async def store_snapshot(server: Running) -> tuple[int, list[str]]:
    builds = await server.app.store.list_builds(1000)
    return server.app.store.stats.writes, [
        f"{b.build_id}:{b.status.value}:{b.version}" for b in builds
    ]


async def settled(server: Running, build_id: str, jobs: int) -> None:
    """Wait until every job's first step shows RUNNING (all agent reports applied)."""
    await first_steps_running(server.stub, build_id, jobs)


async def first_steps_running(
    stub: build_control_pb2_grpc.BuildControlStub, build_id: str, jobs: int
) -> None:
    """Follow WatchBuild until the first step of `jobs` jobs is RUNNING (every report of
    AgentPeer.take_job applied), so a cancel after it does not race those reports."""
    watch = stub.WatchBuild(build_control_pb2.WatchBuildRequest(build_id=build_id), timeout=WAIT)
    snapshot = (await watch.read()).snapshot
    running = {
        j.job_id
        for s in snapshot.stages
        for j in s.jobs
        if j.steps[0].status == build_pb2.STEP_STATUS_RUNNING
    }
    while len(running) < jobs:
        event = await watch.read()
        change = event.step_changed
        if (
            event.WhichOneof("event") == "step_changed"
            and change.status == build_pb2.STEP_STATUS_RUNNING
        ):
            running.add(change.job_id)
    watch.cancel()


def cancel(server: Running, build_id: str, **options: object) -> Any:
    request = build_control_pb2.CancelRequest(build_id=build_id, reason="test", **options)  # type: ignore[arg-type]
    return server.stub.Cancel(request, timeout=CANCEL_WAIT)


async def listed(server: Running) -> dict[str, tuple[bool, list[str]]]:
    """agent id → (suspect, job ids counted on it), from ListAgents."""
    agents = (await server.stub.ListAgents(build_control_pb2.ListAgentsRequest())).agents
    return {a.agent_id: (a.suspect, list(a.job_ids)) for a in agents}


def cancel_request(build_id: str, **options: object) -> build_control_pb2.CancelRequest:
    return build_control_pb2.CancelRequest(build_id=build_id, **options)  # type: ignore[arg-type]
