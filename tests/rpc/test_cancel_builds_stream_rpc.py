"""CancelBuilds tells the caller what is committed as soon as it is (not only when
every build is terminal), and a shutdown answers cancels UNAVAILABLE, not CANCELLED."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from buildcontrol_proto.v1 import build_control_pb2, build_control_pb2_grpc, build_pb2
from buildcontrol_server.app import ServerApp

from tests.support.agent_peer import AgentPeer
from tests.support.build_calls import rest_of, settled, submit
from tests.support.pipelines import pipeline
from tests.support.servers import Running, settings_for
from tests.support.store_faults import StoreFaults

WAIT = 20.0
# The accepted summary needs no agent: it must come while every stop is unconfirmed.
ACCEPTED_WITHIN = 10.0


async def test_cancel_builds_streams_accepted_once_canceling_is_committed(
    server: Running,
) -> None:
    agent = AgentPeer(server.target, "a1", capacity=3)
    await agent.connect()
    running = [await submit(server, name="release") for _ in range(3)]
    for _ in running:
        await agent.take_job()
    await asyncio.gather(*(settled(server, b.build_id, 1) for b in running))
    queued = await submit(server, name="release", labels={"os": "none"})
    stream = server.stub.CancelBuilds(
        build_control_pb2.CancelBuildsRequest(pipeline="release", reason="bad tag"), timeout=WAIT
    )
    first = await asyncio.wait_for(stream.read(), ACCEPTED_WITHIN)
    assert first.WhichOneof("event") == "accepted"
    accepted = first.accepted
    assert (accepted.matched, accepted.committed, accepted.already_canceling) == (4, 4, 0)
    # Committed, not finished: the running builds wait for their agent's JobStopped.
    for build in running:
        stored = await server.app.store.get_build(build.build_id)
        assert stored is not None and stored.status.value == "CANCELING"
    ended = (await stream.read()).build
    assert (ended.build_id, ended.status) == (queued.build_id, build_pb2.BUILD_STATUS_CANCELED)
    for _ in running:
        stop = (await agent.next("stop_job")).stop_job
        agent.stopped(stop.build_id, stop.job_id)
    rest = await rest_of(stream)
    assert {m.build.build_id for m in rest[:-1]} == {b.build_id for b in running}
    assert (rest[-1].summary.matched, rest[-1].summary.canceled) == (4, 4)
    await agent.leave()


async def test_shutdown_answers_open_and_new_cancels_unavailable(tmp_path: Path) -> None:
    app = ServerApp(settings_for(tmp_path / "data", shutdown_grace=WAIT))
    endpoints = await app.start()
    target = f"127.0.0.1:{endpoints.grpc_port}"
    async with grpc.aio.insecure_channel(target) as channel:
        stub = build_control_pb2_grpc.BuildControlStub(channel)
        agent = AgentPeer(target, "a1")
        await agent.connect()
        build = (await stub.SubmitBuild(pipeline())).build
        await agent.take_job()
        other = (await stub.SubmitBuild(pipeline(labels={"os": "none"}))).build
        third = (await stub.SubmitBuild(pipeline(labels={"os": "none"}))).build
        # An agent that never confirms: the stream stays open into the shutdown.
        stream = stub.CancelBuilds(
            build_control_pb2.CancelBuildsRequest(
                ids=build_control_pb2.BuildIds(build_ids=[build.build_id])
            ),
            timeout=WAIT,
        )
        assert (await stream.read()).accepted.committed == 1
        # A cancel whose write is held is under way: the shutdown waits for it (up to
        # its grace), and gRPC still takes calls meanwhile, so the refusals below are
        # ours whatever the machine's speed.
        faults = StoreFaults(app.store)
        faults.hold_writes()
        under_way = stub.Cancel(
            build_control_pb2.CancelRequest(build_id=third.build_id), timeout=WAIT
        )
        await asyncio.wait_for(faults.holding.wait(), WAIT)
        stopping = asyncio.create_task(app.stop())
        await asyncio.sleep(0)  # one loop pass: the task runs up to its first await
        assert not app.control.cancel_streams.accepting
        for call in (
            stub.Cancel(build_control_pb2.CancelRequest(build_id=other.build_id), timeout=WAIT),
            stub.CancelBuilds(
                build_control_pb2.CancelBuildsRequest(pipeline=other.pipeline), timeout=WAIT
            ),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await call.read()
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert not stopping.done()
        faults.release()
        assert (await under_way.read()).WhichOneof("event") == "accepted"
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await rest_of(stream)
        assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "resumes after its restart" in (ended.value.details() or "")
        await agent.leave()
        await asyncio.wait_for(stopping, WAIT)
    restarted = ServerApp(settings_for(tmp_path / "data"))
    await restarted.start()
    try:
        kept = await restarted.store.get_build(build.build_id)
        untouched = await restarted.store.get_build(other.build_id)
        canceled = await restarted.store.get_build(third.build_id)
        assert kept is not None and kept.status.value == "CANCELING"
        assert untouched is not None and untouched.status.value == "QUEUED"
        assert canceled is not None and canceled.status.value == "CANCELED"
    finally:
        await restarted.stop()
