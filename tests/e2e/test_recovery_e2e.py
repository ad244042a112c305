"""The server dies or restarts under load; nothing is lost and nothing keeps running."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import grpc
import pytest
from buildcontrol_proto.v1 import build_control_pb2, build_control_pb2_grpc, build_pb2

from tests.support.build_waits import all_steps_running, build_of, until_terminal
from tests.support.ports import free_port
from tests.support.processes import AgentProc, alive, job_pids, start_agent, start_server

Stub = build_control_pb2_grpc.BuildControlStub


def jobs_started_per_agent(agents: list[AgentProc]) -> dict[str, set[str]]:
    started: dict[str, set[str]] = {}
    for agent in agents:
        for job_id in re.findall(r"job (\S+) \(build \S+\) started", agent.log.read_text()):
            started.setdefault(job_id, set()).add(agent.agent_id)
    return started


# 200 step processes started, killed and looked for again: ~45 s on 2 loaded cores,
# too close to the default 60 s (PostgreSQL's first start in a session adds ~10 s).
@pytest.mark.timeout(180)
async def test_a_server_killed_mid_cancel_loses_no_accepted_cancel(
    tmp_path: Path, agents: list[AgentProc], store_flags: list[str]
) -> None:
    port = free_port()
    data = tmp_path / "data"
    flags = [*store_flags, "--reconnect-window", "30", "--default-grace", "2"]
    server = await start_server(data, *flags, port=port)
    for n in range(4):
        agents.append(await start_agent(server.target, f"agent-{n}", tmp_path, "os=linux", 50))
    channel = grpc.aio.insecure_channel(server.target)
    stub = Stub(channel)
    submitted = [
        (await stub.SubmitBuild(build_of(2, "sleep 600"))).build.build_id for _ in range(100)
    ]
    await asyncio.gather(*(all_steps_running(stub, b) for b in submitted))
    job_ids = {
        j.job_id
        for b in submitted
        for s in (await stub.GetBuild(build_control_pb2.GetBuildRequest(build_id=b))).build.stages
        for j in s.jobs
    }
    assert len(job_ids) == 200

    accepted: set[str] = set()
    enough = asyncio.Event()

    async def cancel(build_id: str) -> None:
        try:
            call = stub.Cancel(
                build_control_pb2.CancelRequest(build_id=build_id, reason="crash test")
            )
            first = await call.read()
            if first is not grpc.aio.EOF and first.WhichOneof("event") == "accepted":
                accepted.add(build_id)
                if len(accepted) >= 20:
                    enough.set()
            while await call.read() is not grpc.aio.EOF:
                pass
        except grpc.aio.AioRpcError:
            pass  # the server died under this call

    # Cancels go out a few at a time, so the kill lands while many are still in flight.
    in_flight = asyncio.Semaphore(4)

    async def paced(build_id: str) -> None:
        async with in_flight:
            if not enough.is_set():
                await cancel(build_id)

    tasks = [asyncio.create_task(paced(b)) for b in submitted]
    await asyncio.wait_for(enough.wait(), 60)
    await server.kill()
    await asyncio.gather(*tasks)
    await channel.close()
    assert len(accepted) >= 20

    server = await start_server(data, *flags, port=port)
    try:
        async with grpc.aio.insecure_channel(server.target) as channel:
            stub = Stub(channel)
            page = await stub.ListBuilds(build_control_pb2.ListBuildsRequest(page_size=1000))
            at_restart = {b.build_id: b.status for b in page.builds}
            # Accepted cancels were on disk before the kill: none may be RUNNING now.
            assert all(at_restart[b] != build_pb2.BUILD_STATUS_RUNNING for b in accepted)
            statuses = list(at_restart.values())
            canceling = statuses.count(build_pb2.BUILD_STATUS_CANCELING)
            canceled = statuses.count(build_pb2.BUILD_STATUS_CANCELED)
            print(
                f"accepted before kill: {len(accepted)}; at restart: {canceling} CANCELING, "
                f"{canceled} CANCELED"
            )
            # Every build still running gets its cancel (again): a user's retry.
            for build_id in submitted:
                if build_id not in accepted:
                    async for _ in stub.Cancel(
                        build_control_pb2.CancelRequest(build_id=build_id, reason="retry")
                    ):
                        pass
            finals = await asyncio.gather(*(until_terminal(stub, b) for b in submitted))
            for build in finals:
                assert build.status == build_pb2.BUILD_STATUS_CANCELED, build.build_id
                if build.build_id in accepted:
                    assert build.cancel.reason == "crash test"
            listed: list[str] = []
            token = ""
            while True:
                page = await stub.ListBuilds(
                    build_control_pb2.ListBuildsRequest(page_size=1000, page_token=token)
                )
                listed += [b.build_id for b in page.builds]
                if not (token := page.next_page_token):
                    break
            assert sorted(listed) == sorted(submitted), "no build missing or duplicated"
        started = jobs_started_per_agent(agents)
        assert all(len(on) == 1 for on in started.values()), "a job ran on two agents"
        leftovers = [pid for job in job_ids for pid in job_pids(job) if alive(pid)]
        assert leftovers == [], "step processes left running"
    finally:
        assert await server.stop() == 0


async def test_builds_finish_as_if_nothing_happened_after_a_server_restart(
    tmp_path: Path, agents: list[AgentProc], store_flags: list[str]
) -> None:
    port = free_port()
    data = tmp_path / "data"
    gate = tmp_path / "gate"
    server = await start_server(data, *store_flags, port=port)
    for n in range(2):
        agents.append(await start_agent(server.target, f"agent-{n}", tmp_path, "os=linux", 2))
    # Each step waits until the test opens the gate (a file), then succeeds.
    command = f"while [ ! -e {gate} ]; do sleep 0.05; done; echo done"
    async with grpc.aio.insecure_channel(server.target) as channel:
        stub = Stub(channel)
        builds = [(await stub.SubmitBuild(build_of(2, command))).build.build_id for _ in range(2)]
        await asyncio.gather(*(all_steps_running(stub, b) for b in builds))
    assert await server.stop() == 0  # a clean restart: agents are told to drain
    server = await start_server(data, *store_flags, port=port)
    try:
        gate.touch()
        async with grpc.aio.insecure_channel(server.target) as channel:
            stub = Stub(channel)
            finals = await asyncio.gather(*(until_terminal(stub, b) for b in builds))
        for build in finals:
            assert build.status == build_pb2.BUILD_STATUS_SUCCEEDED, build
            assert all(
                j.status == build_pb2.JOB_STATUS_SUCCEEDED for s in build.stages for j in s.jobs
            )
        started = jobs_started_per_agent(agents)
        assert len(started) == 4 and all(len(on) == 1 for on in started.values())
    finally:
        assert await server.stop() == 0
