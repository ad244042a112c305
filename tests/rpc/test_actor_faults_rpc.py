"""Faults under a build's actor, through a real server: a re-sent report whose stream
dropped, a bug in the actor's loop, the store failing while timers fire or calls
arrive. In each the build still ends, and every failed write is UNAVAILABLE."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import grpc
import pytest
from buildcontrol_proto.v1 import agent_pb2, build_control_pb2, build_pb2
from buildcontrol_server.domain import lifecycle
from prometheus_client import REGISTRY

from tests.support.agent_peer import AgentPeer
from tests.support.build_calls import cancel, get, rest_of, submit, wait_status
from tests.support.pipelines import pipeline
from tests.support.servers import Running, running_server
from tests.support.store_faults import StoreFaults

WAIT = 20.0


def restarts() -> float:
    return REGISTRY.get_sample_value("buildcontrol_actor_restarts_total") or 0.0


def stopped_report(build_id: str, job_id: str) -> agent_pb2.JobStopped:
    return agent_pb2.JobStopped(
        build_id=build_id, job_id=job_id, outcome=build_pb2.JOB_OUTCOME_GRACEFUL, exit_code=143
    )


def watch_disconnects(server: Running) -> asyncio.Queue[str]:
    """Each agent stream the server has finished with (its reader cancelled)."""
    ended: asyncio.Queue[str] = asyncio.Queue()
    original = server.app.control.agent_disconnected

    def disconnected(session: Any) -> None:
        original(session)
        ended.put_nowait(session.agent_id)

    server.app.control.agent_disconnected = disconnected  # type: ignore[method-assign]
    return ended


async def job_running(server: Running, build_id: str, job_id: str) -> None:
    """Follow WatchBuild until the job is RUNNING (its agent's reports committed)."""
    request = build_control_pb2.WatchBuildRequest(build_id=build_id)
    async for event in server.stub.WatchBuild(request, timeout=WAIT):
        if event.WhichOneof("event") == "snapshot":
            jobs = [j for stage in event.snapshot.stages for j in stage.jobs]
            if any(j.job_id == job_id and j.status == build_pb2.JOB_STATUS_RUNNING for j in jobs):
                return
        elif event.WhichOneof("event") == "job_changed":
            changed = event.job_changed
            if changed.job_id == job_id and changed.status == build_pb2.JOB_STATUS_RUNNING:
                return


async def running_job(server: Running, agent: AgentPeer) -> tuple[str, str]:
    build = await submit(server, jobs=1)
    assign = await agent.take_job()
    await wait_status(server, build.build_id, build_pb2.BUILD_STATUS_RUNNING)
    return build.build_id, assign.job_id


async def test_a_resent_stop_whose_stream_dropped_after_welcome_still_ends_the_cancel(
    server: Running,
) -> None:
    faults = StoreFaults(server.app.store)
    ended = watch_disconnects(server)
    agent = AgentPeer(server.target, "a1", capacity=2)
    await agent.connect()
    build = await submit(server, jobs=2)
    jobs = sorted([(await agent.take_job()).job_id for _ in range(2)])
    await wait_status(server, build.build_id, build_pb2.BUILD_STATUS_RUNNING)
    stream = cancel(server, build.build_id)
    assert (await stream.read()).WhichOneof("event") == "accepted"
    for _ in jobs:
        await agent.next("stop_job")
    await agent.drop()
    assert await asyncio.wait_for(ended.get(), WAIT) == "a1"

    # The new stream's Hello re-sends the first job's JobStopped; its commit is held
    # while the stream drops right after the Welcome, which cancels the report's
    # future under the actor.
    faults.hold_writes()
    again = AgentPeer(server.target, "a1", capacity=2)
    hello = again.hello(running=[(build.build_id, jobs[1])])
    hello.stopped_jobs.append(stopped_report(build.build_id, jobs[0]))
    await again.connect(hello=hello)
    await asyncio.wait_for(faults.holding.wait(), WAIT)
    await again.drop()
    assert await asyncio.wait_for(ended.get(), WAIT) == "a1"
    faults.release()

    # The actor lives on: the second job's stop, reported on a third stream, ends it.
    third = AgentPeer(server.target, "a1", capacity=2)
    await third.connect(running=[(build.build_id, jobs[1])])
    third.stopped(build.build_id, jobs[1])
    finished = (await rest_of(stream))[-1].finished
    assert finished.status == build_pb2.BUILD_STATUS_CANCELED
    assert [j.outcome for j in finished.jobs] == [build_pb2.JOB_OUTCOME_GRACEFUL] * 2
    assert not server.app.hub.held("a1"), "both slots are free"
    await third.leave()


async def test_an_actor_whose_loop_raises_is_restarted_from_the_store_and_the_cancel_ends(
    server: Running, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real_apply = lifecycle.apply_report
    calls = 0

    def buggy_once(*args: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("injected bug in the report handler")
        return real_apply(*args)

    agent = AgentPeer(server.target, "a1", capacity=1)
    await agent.connect()
    build_id, job_id = await running_job(server, agent)
    stream = cancel(server, build_id)
    assert (await stream.read()).WhichOneof("event") == "accepted"
    await agent.next("stop_job")
    before = restarts()
    monkeypatch.setattr(lifecycle, "apply_report", buggy_once)
    agent.stopped(build_id, job_id)
    # The failed turn's report is answered UNAVAILABLE: the agent's stream ends so
    # that it reconnects and sends the result again.
    status, _ = await agent.ended()
    assert status is grpc.StatusCode.UNAVAILABLE
    assert restarts() == before + 1
    logged = [r for r in caplog.records if "loop failed" in r.getMessage()]
    assert logged and logged[0].exc_info is not None, "logged with its traceback"

    again = AgentPeer(server.target, "a1", capacity=1)
    hello = again.hello()
    hello.stopped_jobs.append(stopped_report(build_id, job_id))
    await again.connect(hello=hello)
    # The cancel's stream was kept across the restart and ends.
    finished = (await rest_of(stream))[-1].finished
    assert finished.status == build_pb2.BUILD_STATUS_CANCELED
    assert [j.outcome for j in finished.jobs] == [build_pb2.JOB_OUTCOME_GRACEFUL]
    assert not server.app.hub.held("a1"), "the slot is free again"
    await again.leave()


@pytest.mark.parametrize("reads_fail_too", [False, True], ids=["writes-fail", "store-down"])
async def test_a_stop_deadline_that_fires_while_the_store_fails_forces_the_job_once_it_heals(
    tmp_path: Path, reads_fail_too: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    async with running_server(
        tmp_path / "data", default_grace_period=0.1, stop_ack_timeout=0.3
    ) as server:
        faults = StoreFaults(server.app.store)
        agent = AgentPeer(server.target, "ignores-stops", capacity=1)
        await agent.connect()
        build_id, _ = await running_job(server, agent)
        stream = cancel(server, build_id)
        assert (await stream.read()).WhichOneof("event") == "accepted"
        before = restarts()
        faults.fail(reads=reads_fail_too)
        await agent.next("stop_job")  # ignored
        # The FORCED write at the deadline fails, and is tried again, and fails again.
        await faults.refusals(3)
        faults.heal()
        finished = (await rest_of(stream))[-1].finished
        assert finished.status == build_pb2.BUILD_STATUS_CANCELED
        assert [j.outcome for j in finished.jobs] == [build_pb2.JOB_OUTCOME_FORCED]
        if reads_fail_too:
            # The build could not be read back after the failed write: its actor
            # restarted from the store once the store was back.
            assert restarts() > before
        await agent.leave()


async def test_a_job_timeout_that_fires_while_the_store_fails_cancels_the_build_once_it_heals(
    tmp_path: Path,
) -> None:
    async with running_server(tmp_path / "data", job_timeout=1.0) as server:
        faults = StoreFaults(server.app.store)
        agent = AgentPeer(server.target, "a1", capacity=1)
        await agent.connect()
        build_id, job_id = await running_job(server, agent)
        faults.fail()
        await faults.refusals(2)  # the timeout's CANCELING write, then its retry
        faults.heal()
        stop = (await agent.next("stop_job")).stop_job
        assert stop.job_id == job_id and "timeout" in stop.reason
        agent.stopped(build_id, job_id)
        build = await wait_status(server, build_id, build_pb2.BUILD_STATUS_CANCELED)
        assert build.cancel.reason.startswith("timeout")
        await agent.leave()


async def test_a_cleanup_timeout_that_fires_while_the_store_fails_stops_the_job_once_it_heals(
    tmp_path: Path,
) -> None:
    async with running_server(tmp_path / "data", cleanup_timeout=1.0) as server:
        faults = StoreFaults(server.app.store)
        agent = AgentPeer(server.target, "a1", capacity=2)
        await agent.connect()
        request = pipeline(stages=2)
        request.stages[1].jobs[0].run_on_cancel = True
        build = (await server.stub.SubmitBuild(request)).build
        first = await agent.take_job()
        stream = cancel(server, build.build_id)
        assert (await stream.read()).WhichOneof("event") == "accepted"
        await agent.next("stop_job")
        agent.stopped(build.build_id, first.job_id)
        cleanup = await agent.take_job()  # runs, and runs past its cleanup timeout
        await job_running(server, build.build_id, cleanup.job_id)
        faults.fail()
        await faults.refusals(2)  # the cleanup timeout's stop, then its retry
        faults.heal()
        stop = (await agent.next("stop_job")).stop_job
        assert stop.job_id == cleanup.job_id and stop.skip_cleanup
        agent.stopped(build.build_id, cleanup.job_id)
        assert (await rest_of(stream))[-1].finished.status == build_pb2.BUILD_STATUS_CANCELED
        await agent.leave()


async def test_a_queue_timeout_that_fires_while_the_store_fails_cancels_the_build_once_it_heals(
    tmp_path: Path,
) -> None:
    async with running_server(tmp_path / "data", queue_timeout=1.0) as server:
        faults = StoreFaults(server.app.store)
        build = await submit(server, jobs=1, labels={"pool": "nobody"})
        faults.fail()
        await faults.refusals(2)
        faults.heal()
        done = await wait_status(server, build.build_id, build_pb2.BUILD_STATUS_CANCELED)
        assert done.cancel.reason.startswith("queue timeout")


async def test_every_call_whose_store_write_fails_answers_unavailable_and_changes_nothing(
    server: Running,
) -> None:
    faults = StoreFaults(server.app.store)
    queued = await submit(server, jobs=1, labels={"pool": "nobody"})
    faults.fail()
    with pytest.raises(grpc.aio.AioRpcError) as submitted:
        await server.stub.SubmitBuild(pipeline(name="refused"))
    assert submitted.value.code() is grpc.StatusCode.UNAVAILABLE
    with pytest.raises(grpc.aio.AioRpcError) as cancelled:
        await cancel(server, queued.build_id).read()
    assert cancelled.value.code() is grpc.StatusCode.UNAVAILABLE
    many = server.stub.CancelBuilds(
        build_control_pb2.CancelBuildsRequest(
            ids=build_control_pb2.BuildIds(build_ids=[queued.build_id]), reason="test"
        ),
        timeout=WAIT,
    )
    with pytest.raises(grpc.aio.AioRpcError) as batch:
        async for _ in many:
            pass
    assert batch.value.code() is grpc.StatusCode.UNAVAILABLE
    faults.heal()
    listed = await server.stub.ListBuilds(build_control_pb2.ListBuildsRequest(page_size=10))
    assert [b.build_id for b in listed.builds] == [queued.build_id], "nothing was submitted"
    assert (await get(server, queued.build_id)).status == build_pb2.BUILD_STATUS_QUEUED


async def test_an_actor_waiting_to_restart_on_a_store_that_stays_down_does_not_hold_up_shutdown(
    tmp_path: Path,
) -> None:
    async with asyncio.timeout(WAIT):
        async with running_server(
            tmp_path / "data", default_grace_period=0.1, stop_ack_timeout=0.3
        ) as server:
            faults = StoreFaults(server.app.store)
            agent = AgentPeer(server.target, "ignores-stops", capacity=1)
            await agent.connect()
            build_id, _ = await running_job(server, agent)
            stream = cancel(server, build_id)
            assert (await stream.read()).WhichOneof("event") == "accepted"
            faults.fail(reads=True)
            await agent.next("stop_job")  # ignored
            # The deadline's write fails, the build cannot be read back, and each
            # restart's read fails too: the actor waits longer and longer.
            await faults.refusals(4)
            actor = server.app.registry.get(build_id)
            assert actor is not None and actor.restarting
            stream.cancel()
            await agent.leave()
        # Shutdown ended the actor's wait instead of waiting out its backoff.
