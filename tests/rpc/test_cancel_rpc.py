"""Cancel over a real server and real channels, with a scripted agent peer."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from buildcontrol_proto.v1 import build_control_pb2, build_pb2
from buildcontrol_server import metrics

from tests.support.agent_peer import AgentPeer
from tests.support.build_calls import get, rest_of, store_snapshot, submit, wait_status
from tests.support.build_watch import jobs_running
from tests.support.servers import Running

WAIT = 10.0


async def cancel_all(
    server: Running, build_id: str, **kwargs: object
) -> list[build_control_pb2.CancelResponse]:
    request = build_control_pb2.CancelRequest(build_id=build_id, **kwargs)  # type: ignore[arg-type]
    return [m async for m in server.stub.Cancel(request, timeout=WAIT)]


async def last_message(stream: object) -> build_control_pb2.CancelResponse:
    return (await rest_of(stream))[-1]


async def test_cancel_of_running_build_pushes_stop_and_ends_canceled(server: Running) -> None:
    agent = AgentPeer(server.target, "a1")
    await agent.connect()
    build = await submit(server, jobs=2)
    first = await agent.take_job()
    second = await agent.take_job()
    stream = server.stub.Cancel(
        build_control_pb2.CancelRequest(build_id=build.build_id, reason="wrong branch"),
        timeout=WAIT,
    )
    accepted = await stream.read()
    assert accepted.WhichOneof("event") == "accepted"
    assert accepted.accepted.status == build_pb2.BUILD_STATUS_CANCELING
    assert accepted.accepted.jobs_stopping == 2
    # CANCELING is persisted before the first message
    stored = await server.app.store.get_build(build.build_id)
    assert stored is not None and stored.status.value == "CANCELING"
    stops = {(await agent.next("stop_job")).stop_job.job_id for _ in range(2)}
    assert stops == {first.job_id, second.job_id}
    agent.stopped(build.build_id, first.job_id)
    agent.stopped(build.build_id, second.job_id, graceful=False)
    rest = await rest_of(stream)
    assert [m.WhichOneof("event") for m in rest] == ["job_stopped", "job_stopped", "finished"]
    finished = rest[-1].finished
    assert finished.status == build_pb2.BUILD_STATUS_CANCELED
    assert {j.job_id: j.outcome for j in finished.jobs} == {
        first.job_id: build_pb2.JOB_OUTCOME_GRACEFUL,
        second.job_id: build_pb2.JOB_OUTCOME_KILLED,
    }
    final = await get(server, build.build_id)
    assert final.status == build_pb2.BUILD_STATUS_CANCELED
    assert final.cancel.reason == "wrong branch"
    await agent.leave()


async def test_closing_the_cancel_stream_early_never_aborts_the_cancel(server: Running) -> None:
    agent = AgentPeer(server.target, "a1")
    await agent.connect()
    build = await submit(server)
    job = await agent.take_job()
    stream = server.stub.Cancel(build_control_pb2.CancelRequest(build_id=build.build_id))
    first = await stream.read()
    assert first.WhichOneof("event") == "accepted"
    stream.cancel()  # the client goes away right after ACCEPTED
    stop = (await agent.next("stop_job")).stop_job
    assert stop.job_id == job.job_id
    agent.stopped(build.build_id, job.job_id)
    final = await wait_status(server, build.build_id, build_pb2.BUILD_STATUS_CANCELED)
    assert final.stages[0].jobs[0].outcome == build_pb2.JOB_OUTCOME_GRACEFUL
    await agent.leave()


async def test_cancel_of_queued_build_needs_no_agent(server: Running) -> None:
    build = await submit(server, labels={"os": "plan9"}, jobs=2)
    events = await cancel_all(server, build.build_id, reason="nobody can run it")
    kinds = [m.WhichOneof("event") for m in events]
    assert kinds == ["accepted", "job_stopped", "job_stopped", "finished"]
    assert events[0].accepted.status == build_pb2.BUILD_STATUS_CANCELED
    assert events[-1].finished.status == build_pb2.BUILD_STATUS_CANCELED
    assert {j.outcome for j in events[-1].finished.jobs} == {build_pb2.JOB_OUTCOME_NEVER_STARTED}


async def test_cancel_of_a_canceled_build_returns_its_terminal_state(server: Running) -> None:
    build = await submit(server, labels={"os": "plan9"})
    first = await cancel_all(server, build.build_id, reason="one")
    again = await cancel_all(server, build.build_id, reason="two")
    assert [m.WhichOneof("event") for m in again] == ["finished"]
    assert again[0].finished == first[-1].finished
    assert again[0].finished.cancel.reason == "one"


async def test_cancel_of_a_succeeded_build_is_failed_precondition(server: Running) -> None:
    agent = AgentPeer(server.target, "a1")
    await agent.connect()
    build = await submit(server)
    job = await agent.take_job()
    agent.finished(build.build_id, job.job_id)
    await wait_status(server, build.build_id, build_pb2.BUILD_STATUS_SUCCEEDED)
    before = await store_snapshot(server)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await cancel_all(server, build.build_id)
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "SUCCEEDED" in (raised.value.details() or "")
    assert await store_snapshot(server) == before
    await agent.leave()


@pytest.mark.parametrize(
    ("build_id", "code", "says"),
    [
        ("", grpc.StatusCode.INVALID_ARGUMENT, "build_id: must not be empty"),
        ("not-an-id", grpc.StatusCode.INVALID_ARGUMENT, "build_id:"),
        ("b" + "z" * 20, grpc.StatusCode.INVALID_ARGUMENT, "build_id:"),
        ("b" + "0" * 20, grpc.StatusCode.NOT_FOUND, "does not exist"),
    ],
)
async def test_bad_build_ids_get_exact_statuses_and_change_nothing(
    server: Running, build_id: str, code: grpc.StatusCode, says: str
) -> None:
    await submit(server, labels={"os": "plan9"})
    before = await store_snapshot(server)
    for call in (
        lambda: cancel_all(server, build_id),
        lambda: get(server, build_id),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call()
        assert raised.value.code() == code
        assert says in (raised.value.details() or "")
    assert await store_snapshot(server) == before


async def test_a_reason_over_1024_characters_is_refused(server: Running) -> None:
    build = await submit(server, labels={"os": "plan9"})
    before = await store_snapshot(server)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await cancel_all(server, build.build_id, reason="x" * 1025)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "reason" in (raised.value.details() or "")
    assert await store_snapshot(server) == before


async def test_stop_is_sent_again_when_the_agent_reconnects(server: Running) -> None:
    agent = AgentPeer(server.target, "a1")
    await agent.connect()
    build = await submit(server)
    job = await agent.take_job()
    await agent.drop()
    # cancel while the agent is away: no stream to push to
    stream = server.stub.Cancel(build_control_pb2.CancelRequest(build_id=build.build_id))
    assert (await stream.read()).WhichOneof("event") == "accepted"
    reconnects = metrics.AGENT_RECONNECTS._value.get()
    back = AgentPeer(server.target, "a1")
    await back.connect(running=[(build.build_id, job.job_id)])
    assert metrics.AGENT_RECONNECTS._value.get() == reconnects + 1
    stop = (await back.next("stop_job")).stop_job
    assert stop.job_id == job.job_id
    back.stopped(build.build_id, job.job_id)
    rest = await rest_of(stream)
    assert rest[-1].finished.status == build_pb2.BUILD_STATUS_CANCELED
    await back.leave()


async def test_concurrent_cancels_make_one_transition_and_one_stop_per_job(
    server: Running,
) -> None:
    agent = AgentPeer(server.target, "a1")
    await agent.connect()
    build = await submit(server, jobs=2)
    jobs = [await agent.take_job(), await agent.take_job()]
    await jobs_running(server.stub, build.build_id, 2)
    accepted_before = metrics.CANCELS.labels(result="accepted")._value.get()
    joined_before = metrics.CANCELS.labels(result="joined")._value.get()
    streams = [
        server.stub.Cancel(build_control_pb2.CancelRequest(build_id=build.build_id), timeout=WAIT)
        for _ in range(20)
    ]
    firsts = await asyncio.gather(*(s.read() for s in streams))
    assert {f.WhichOneof("event") for f in firsts} == {"accepted"}
    stops = [(await agent.next("stop_job")).stop_job.job_id for _ in range(2)]
    assert sorted(stops) == sorted(j.job_id for j in jobs)
    # exactly one CANCELING transition; the 19 others joined it
    assert metrics.CANCELS.labels(result="accepted")._value.get() == accepted_before + 1
    assert metrics.CANCELS.labels(result="joined")._value.get() == joined_before + 19
    for job in jobs:
        agent.stopped(build.build_id, job.job_id)
    lasts = await asyncio.gather(*(last_message(s) for s in streams))
    assert len({last.SerializeToString(deterministic=True) for last in lasts}) == 1
    assert agent.received.empty()  # no second StopJob
    await agent.leave()


async def test_hello_reconciliation_stops_every_job_the_agent_must_not_run(
    server: Running,
) -> None:
    owner = AgentPeer(server.target, "a1", capacity=2)
    await owner.connect()
    mine = await submit(server)
    done = await submit(server)
    my_job = await owner.take_job()
    done_job = await owner.take_job()
    if done_job.build_id != done.build_id:
        my_job, done_job = done_job, my_job
    owner.finished(done.build_id, done_job.job_id)
    await wait_status(server, done.build_id, build_pb2.BUILD_STATUS_SUCCEEDED)
    theirs = await submit(server, labels={"pool": "b"})
    other = AgentPeer(server.target, "a2", labels={"pool": "b"})
    await other.connect()
    their_job = await other.take_job()
    await owner.drop()
    back = AgentPeer(server.target, "a1", capacity=2)
    claims = [
        (mine.build_id, my_job.job_id),  # still its own: resumed
        (done.build_id, done_job.job_id),  # finished
        (theirs.build_id, their_job.job_id),  # assigned to a2
        ("b" + "0" * 20, "b" + "0" * 20 + "-j0"),  # unknown
    ]
    await back.connect(running=claims)
    stopped = {(await back.next("stop_job")).stop_job.job_id for _ in range(3)}
    assert stopped == {done_job.job_id, their_job.job_id, "b" + "0" * 20 + "-j0"}
    # its own job goes on: finishing it succeeds the build
    back.finished(mine.build_id, my_job.job_id)
    final = await wait_status(server, mine.build_id, build_pb2.BUILD_STATUS_SUCCEEDED)
    assert final.stages[0].jobs[0].agent_id == "a1"
    assert back.received.empty()
    await back.leave()
    await other.leave()


async def test_jobs_of_an_agent_that_never_returns_end_after_the_reconnect_window(
    server: Running,
) -> None:
    agent = AgentPeer(server.target, "a1", capacity=2)
    await agent.connect()
    running = await submit(server)
    stopping = await submit(server)
    held = {(await agent.take_job()).build_id for _ in range(2)}
    assert held == {running.build_id, stopping.build_id}
    stream = server.stub.Cancel(
        build_control_pb2.CancelRequest(build_id=stopping.build_id, grace_period={"seconds": 3600})
    )
    assert (await stream.read()).WhichOneof("event") == "accepted"
    await agent.drop()  # gone for good; the window is 2 s in these tests
    lost = await wait_status(server, running.build_id, build_pb2.BUILD_STATUS_FAILED)
    assert lost.stages[0].jobs[0].status == build_pb2.JOB_STATUS_FAILED
    assert lost.stages[0].jobs[0].outcome == build_pb2.JOB_OUTCOME_LOST
    rest = await rest_of(stream)
    assert rest[-1].finished.status == build_pb2.BUILD_STATUS_CANCELED
    assert [j.outcome for j in rest[-1].finished.jobs] == [build_pb2.JOB_OUTCOME_FORCED]
