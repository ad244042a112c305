"""Housekeeping.Purge on a real server, on every backend: the dry run counts and
deletes nothing; a purge before a date deletes exactly the builds finished before it
and keeps every live one; bad input changes nothing; a purge during cancels loses
none of them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
import pytest
from buildcontrol_proto.v1 import (
    build_control_pb2,
    build_pb2,
    housekeeping_pb2,
    housekeeping_pb2_grpc,
)

from tests.support.agent_peer import AgentPeer
from tests.support.pipelines import pipeline
from tests.support.servers import Running, running_server
from tests.support.store_samples import prefill

WAIT = 30.0


async def last_message(stream: Any) -> build_control_pb2.CancelResponse:
    last = None
    while (message := await stream.read()) is not grpc.aio.EOF:
        last = message
    assert last is not None
    return last


def stub(server: Running) -> housekeeping_pb2_grpc.HousekeepingStub:
    return housekeeping_pb2_grpc.HousekeepingStub(server.channel)


def rows(response: housekeeping_pb2.PurgeResponse) -> dict[str, int]:
    return {t.table: t.rows for t in response.tables if t.rows}


def before(epoch_seconds: float) -> housekeeping_pb2.PurgeRequest:
    request = housekeeping_pb2.PurgeRequest()
    request.before.FromNanoseconds(int(epoch_seconds * 1e9))
    return request


async def test_a_dry_run_counts_what_would_go_and_deletes_nothing(
    stored_server: Running,
) -> None:
    server = stored_server
    await prefill(server.app.store, 3)
    live = await server.stub.SubmitBuild(pipeline(labels={"os": "plan9"}), timeout=WAIT)
    request = before(time.time())
    request.dry_run = True
    sizes = (await server.app.store.retention.sizes()).rows

    response = await stub(server).Purge(request, timeout=WAIT)

    assert response.dry_run
    assert rows(response) == {"builds": 3, "jobs": 6, "steps": 12}
    assert (await server.app.store.retention.sizes()).rows == sizes
    assert len(await server.app.store.list_builds(10)) == 4
    assert (await server.app.store.get_build(live.build.build_id)) is not None


async def test_a_purge_before_a_date_deletes_the_builds_finished_before_it_only(
    stored_server: Running,
) -> None:
    server = stored_server
    old = await prefill(server.app.store, 5)
    live = await server.stub.SubmitBuild(pipeline(labels={"os": "plan9"}), timeout=WAIT)
    cutoff = time.time()
    recent = await server.stub.SubmitBuild(pipeline(labels={"os": "plan9"}), timeout=WAIT)
    async for _ in server.stub.Cancel(
        build_control_pb2.CancelRequest(build_id=recent.build.build_id), timeout=WAIT
    ):
        pass

    response = await stub(server).Purge(before(cutoff), timeout=WAIT)

    assert rows(response)["builds"] == 5
    assert response.builds_before.ToNanoseconds() == int(cutoff * 1e9)
    for build in old:
        assert await server.app.store.get_build(build.build_id) is None
    kept = {b.build_id: b.status.value for b in await server.app.store.list_builds(10)}
    assert kept == {live.build.build_id: "QUEUED", recent.build.build_id: "CANCELED"}
    with pytest.raises(grpc.aio.AioRpcError) as gone:
        await server.stub.GetBuild(
            build_control_pb2.GetBuildRequest(build_id=old[0].build_id), timeout=WAIT
        )
    assert gone.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    "seconds, nanos, field",
    [(int(time.time()) + 3600, 0, "before"), (int(time.time()), -1, "before")],
)
async def test_a_purge_of_a_bad_time_is_refused_and_changes_nothing(
    server: Running, seconds: int, nanos: int, field: str
) -> None:
    await prefill(server.app.store, 2)
    sizes = (await server.app.store.retention.sizes()).rows
    request = housekeeping_pb2.PurgeRequest()
    request.before.seconds, request.before.nanos = seconds, nanos
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub(server).Purge(request, timeout=WAIT)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (refused.value.details() or "").startswith(field)
    assert (await server.app.store.retention.sizes()).rows == sizes


async def test_a_purge_during_cancels_loses_none_of_them(stored_server: Running) -> None:
    server = stored_server
    # 4,200 rows: 9 purge transactions of at most 500.
    await prefill(server.app.store, 600)
    agent = AgentPeer(server.target, "a1", capacity=6)
    await agent.connect()
    running = [
        (await server.stub.SubmitBuild(pipeline(), timeout=WAIT)).build.build_id for _ in range(6)
    ]
    jobs = {(await agent.take_job()).build_id: None for _ in running}
    queued = [
        (
            await server.stub.SubmitBuild(pipeline(labels={"os": "plan9"}), timeout=WAIT)
        ).build.build_id
        for _ in range(6)
    ]
    assert set(jobs) == set(running)
    cutoff = time.time()
    # The purge stops after its first transaction until every cancel is accepted
    # (CANCELING committed); the cancels then end during the purge's later batches.
    accepted = asyncio.Event()
    first_batch = asyncio.Event()

    async def hold_first_batch(build_ids: Sequence[str]) -> None:
        if not first_batch.is_set():
            first_batch.set()
            await asyncio.wait_for(accepted.wait(), WAIT)

    server.app.housekeeper.on_builds_deleted = hold_first_batch
    purge = asyncio.ensure_future(stub(server).Purge(before(cutoff), timeout=4 * WAIT))
    await asyncio.wait_for(first_batch.wait(), WAIT)
    streams = [
        server.stub.Cancel(build_control_pb2.CancelRequest(build_id=b, reason="purge"))
        for b in running + queued
    ]
    for stream in streams:
        assert (await stream.read()).WhichOneof("event") == "accepted"
    accepted.set()
    for _ in running:
        stop = (await agent.next("stop_job")).stop_job
        agent.stopped(stop.build_id, stop.job_id)
    finals = [await last_message(stream) for stream in streams]

    response = await purge
    assert rows(response)["builds"] == 600
    assert all(m.finished.status == build_pb2.BUILD_STATUS_CANCELED for m in finals)
    for build_id in running + queued:
        stored = await server.app.store.get_build(build_id)
        assert stored is not None and stored.status.value == "CANCELED", build_id
    assert (await server.app.store.retention.sizes()).rows["builds"] == 12
    await agent.leave()


async def test_the_server_purges_past_its_policy_by_itself_every_interval(
    tmp_path: Path,
) -> None:
    async with running_server(
        tmp_path / "data", housekeeping_interval=0.5, housekeeping_pause=0.0
    ) as server:
        old = await prefill(server.app.store, 10)
        live = await server.stub.SubmitBuild(pipeline(labels={"os": "plan9"}), timeout=WAIT)
        deleted: list[str] = []
        all_gone = asyncio.Event()

        async def delete_logs(build_ids: Sequence[str]) -> None:
            deleted.extend(build_ids)
            if len(deleted) == len(old):
                all_gone.set()

        server.app.housekeeper.on_builds_deleted = delete_logs
        await asyncio.wait_for(all_gone.wait(), WAIT)
        assert sorted(deleted) == sorted(b.build_id for b in old)
        [kept] = await server.app.store.list_builds(10)
        assert kept.build_id == live.build.build_id
