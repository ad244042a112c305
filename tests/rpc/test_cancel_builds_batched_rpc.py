"""CancelBuilds with batch_builds: the builds' ends come as `builds` messages holding
what was ready together, the same ends in the same order as the one-per-message
stream, and nothing else about the call changes."""

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

WAIT = 20.0


def _request(pipeline: str, batched: bool) -> build_control_pb2.CancelBuildsRequest:
    return build_control_pb2.CancelBuildsRequest(
        pipeline=pipeline, reason="bad tag", batch_builds=batched
    )


async def _messages(server: Running, pipeline: str, batched: bool) -> list[object]:
    stream = server.stub.CancelBuilds(_request(pipeline, batched), timeout=WAIT)
    return await rest_of(stream)


async def test_ends_ready_together_come_as_one_message(server: Running) -> None:
    queued = [await submit(server, name="nightly", labels={"os": "none"}) for _ in range(20)]
    messages = await _messages(server, "nightly", batched=True)
    kinds = [m.WhichOneof("event") for m in messages]  # type: ignore[attr-defined]
    # Queued builds end CANCELED with their CANCELING commit: all 20 are ready at once.
    assert kinds == ["accepted", "builds", "summary"]
    ended = messages[1].builds.builds  # type: ignore[attr-defined]
    assert [b.build_id for b in ended] == [b.build_id for b in queued]
    assert {b.status for b in ended} == {build_pb2.BUILD_STATUS_CANCELED}
    summary = messages[2].summary  # type: ignore[attr-defined]
    assert (summary.matched, summary.canceled, summary.not_cancelable) == (20, 20, 0)
    for build in queued:
        stored = await server.app.store.get_build(build.build_id)
        assert stored is not None and stored.status.value == "CANCELED"


async def test_batched_and_unbatched_streams_tell_the_same_ends(server: Running) -> None:
    """Two pipelines alike, one cancelled each way: the same builds end, with the
    same content (jobs, outcomes, cancel), and the same summary."""
    agent = AgentPeer(server.target, "a1", capacity=4)
    await agent.connect()
    running: dict[str, list[build_pb2.Build]] = {"one": [], "many": []}
    for name in running:
        for _ in range(2):
            build = await submit(server, name=name)
            await agent.take_job()
            running[name].append(build)
        await submit(server, name=name, labels={"os": "none"})  # stays queued
    await asyncio.gather(
        *(settled(server, b.build_id, 1) for builds in running.values() for b in builds)
    )
    streams = {
        name: server.stub.CancelBuilds(_request(name, name == "many"), timeout=WAIT)
        for name in running
    }
    for stream in streams.values():
        assert (await stream.read()).WhichOneof("event") == "accepted"
    for _ in range(4):
        stop = (await agent.next("stop_job")).stop_job
        agent.stopped(stop.build_id, stop.job_id)
    told = {name: await rest_of(stream) for name, stream in streams.items()}
    assert {m.WhichOneof("event") for m in told["one"]} == {"build", "summary"}
    assert {m.WhichOneof("event") for m in told["many"]} == {"builds", "summary"}
    one = [m.build for m in told["one"] if m.HasField("build")]
    many = [b for m in told["many"] if m.HasField("builds") for b in m.builds.builds]
    assert len(one) == len(many) == 3

    def shape(ends: list[build_control_pb2.CancelFinished]) -> list[tuple[object, ...]]:
        return sorted(
            (e.status, e.cancel.reason, tuple((j.status, j.outcome) for j in e.jobs)) for e in ends
        )

    assert shape(one) == shape(many)
    assert told["one"][-1].summary == told["many"][-1].summary
    await agent.leave()


async def test_a_shutdown_ends_an_open_batched_stream_unavailable(tmp_path: Path) -> None:
    """The stream's end goes through the read-ahead of its runs: the caller still gets
    UNAVAILABLE (retry after the restart), and the committed cancel survives it."""
    app = ServerApp(settings_for(tmp_path / "data"))
    endpoints = await app.start()
    target = f"127.0.0.1:{endpoints.grpc_port}"
    async with grpc.aio.insecure_channel(target) as channel:
        stub = build_control_pb2_grpc.BuildControlStub(channel)
        agent = AgentPeer(target, "a1")
        await agent.connect()
        build = (await stub.SubmitBuild(pipeline(name="held"))).build
        await agent.take_job()
        queued = (await stub.SubmitBuild(pipeline(name="held", labels={"os": "none"}))).build
        # The agent never confirms its stop: the stream stays open into the shutdown.
        stream = stub.CancelBuilds(_request("held", batched=True), timeout=WAIT)
        assert (await stream.read()).accepted.committed == 2
        ended = await stream.read()
        assert [b.build_id for b in ended.builds.builds] == [queued.build_id]
        await app.stop()
        with pytest.raises(grpc.aio.AioRpcError) as cut:
            await rest_of(stream)
        assert cut.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "resumes after its restart" in (cut.value.details() or "")
        await agent.leave()
    restarted = ServerApp(settings_for(tmp_path / "data"))
    await restarted.start()
    try:
        kept = await restarted.store.get_build(build.build_id)
        assert kept is not None and kept.status.value == "CANCELING"
    finally:
        await restarted.stop()
