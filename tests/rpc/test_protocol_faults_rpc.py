"""Protocol faults over a real server, with a scripted agent peer: a job accepted
after the stop it ignored, a FORCED job whose agent may still run it, a suspect agent,
and results that must be acknowledged before an agent may forget them."""

from __future__ import annotations

import grpc
import pytest
from buildcontrol_proto.v1 import agent_pb2, build_control_pb2, build_pb2
from buildcontrol_server.domain.states import BuildStatus, JobStatus

from tests.support.agent_peer import AgentPeer
from tests.support.build_calls import get, listed, rest_of, store_snapshot, submit
from tests.support.build_watch import jobs_running
from tests.support.pipelines import pipeline
from tests.support.servers import Running

CANCELING = build_pb2.BUILD_STATUS_CANCELING
CANCELED = build_pb2.BUILD_STATUS_CANCELED


def cancel_request(build_id: str, **options: object) -> build_control_pb2.CancelRequest:
    return build_control_pb2.CancelRequest(build_id=build_id, **options)  # type: ignore[arg-type]


async def test_a_job_accepted_after_its_ignored_stop_gets_a_fresh_stop(server: Running) -> None:
    agent = AgentPeer(server.target, "late")
    await agent.connect()
    build = await submit(server)
    assign = (await agent.next("assign_job")).assign_job  # not accepted yet
    cancel = server.stub.Cancel(cancel_request(build.build_id, reason="late start"))
    assert (await cancel.read()).accepted.status == CANCELING
    ignored = (await agent.next("stop_job")).stop_job
    assert ignored.job_id == assign.job_id  # dropped: the agent does not run the job yet
    # Then it accepts the job late and starts its step, as if no stop had come.
    agent.send(job_accepted=agent_pb2.JobAccepted(build_id=build.build_id, job_id=assign.job_id))
    again = (await agent.next("stop_job")).stop_job
    assert again.job_id == assign.job_id and again.reason == "late start"
    agent.send(
        step_started=agent_pb2.StepStarted(
            build_id=build.build_id, job_id=assign.job_id, step_index=0
        )
    )
    assert (await agent.next("stop_job")).stop_job.job_id == assign.job_id
    agent.stopped(build.build_id, assign.job_id)
    finished = (await rest_of(cancel))[-1].finished
    assert finished.status == CANCELED
    assert [job.outcome for job in finished.jobs] == [build_pb2.JOB_OUTCOME_GRACEFUL]
    await agent.leave()


async def test_a_cleanup_step_starting_during_a_stop_gets_no_second_stop(server: Running) -> None:
    agent = AgentPeer(server.target, "cleaner")
    await agent.connect()
    request = build_control_pb2.SubmitBuildRequest(pipeline="cleanup")
    job_spec = request.stages.add(name="s").jobs.add(name="j")
    job_spec.steps.add(command="sleep 600")
    job_spec.steps.add(command="echo cleanup", run_on_cancel=True)
    build = (await server.stub.SubmitBuild(request)).build
    job = await agent.take_job()
    await jobs_running(server.stub, build.build_id, 1)
    cancel = server.stub.Cancel(cancel_request(build.build_id))
    await cancel.read()
    await agent.next("stop_job")
    agent.send(
        step_started=agent_pb2.StepStarted(build_id=build.build_id, job_id=job.job_id, step_index=1)
    )
    agent.send(
        step_finished=agent_pb2.StepFinished(
            build_id=build.build_id, job_id=job.job_id, step_index=1, exit_code=0
        )
    )
    agent.stopped(build.build_id, job.job_id)
    assert (await rest_of(cancel))[-1].finished.status == CANCELED
    got = await get(server, build.build_id)
    assert got.stages[0].jobs[0].steps[1].status == build_pb2.STEP_STATUS_SUCCEEDED
    assert agent.received.empty(), "a cleanup step is what the stop asked for"
    await agent.leave()


def stopped(build_id: str, job_id: str, report_id: str) -> agent_pb2.JobStopped:
    return agent_pb2.JobStopped(
        build_id=build_id,
        job_id=job_id,
        outcome=build_pb2.JOB_OUTCOME_GRACEFUL,
        exit_code=143,
        report_id=report_id,
    )


async def test_a_live_result_is_acknowledged_after_its_commit_and_a_repeat_again(
    server: Running,
) -> None:
    agent = AgentPeer(server.target, "acked")
    await agent.connect()
    build = await submit(server)
    job = await agent.take_job()
    agent.send(
        job_finished=agent_pb2.JobFinished(
            build_id=build.build_id, job_id=job.job_id, succeeded=True, report_id="r-1"
        )
    )
    acked = (await agent.next("reports_committed")).reports_committed
    assert list(acked.report_ids) == ["r-1"]
    # Committed before the acknowledgement was sent.
    stored = await server.app.store.get_build(build.build_id)
    assert stored is not None and stored.status is BuildStatus.SUCCEEDED
    # The build is over: a repeat (say, after a reconnect) is a no-op, acknowledged.
    agent.send(
        job_finished=agent_pb2.JobFinished(
            build_id=build.build_id, job_id=job.job_id, succeeded=False, report_id="r-1"
        )
    )
    assert list((await agent.next("reports_committed")).reports_committed.report_ids) == ["r-1"]
    assert (await get(server, build.build_id)).status == build_pb2.BUILD_STATUS_SUCCEEDED
    await agent.leave()


async def test_results_resent_in_a_hello_are_acknowledged_once_committed(server: Running) -> None:
    first = AgentPeer(server.target, "again")
    await first.connect()
    build = await submit(server, jobs=2)
    jobs = [await first.take_job() for _ in range(2)]
    cancel = server.stub.Cancel(cancel_request(build.build_id))
    await cancel.read()
    for _ in jobs:
        await first.next("stop_job")
    await first.drop()  # the JobStopped reports were never sent on this stream

    second = AgentPeer(server.target, "again")
    hello = second.hello()
    hello.stopped_jobs.extend(stopped(build.build_id, j.job_id, f"r-{j.job_id}") for j in jobs)
    hello.finished_jobs.append(  # a result without an id: applied, never acknowledged
        agent_pb2.JobFinished(build_id="b-unknown", job_id="j-unknown")
    )
    await second.connect(hello=hello)
    acked: set[str] = set()
    while len(acked) < 2:
        acked |= set((await second.next("reports_committed")).reports_committed.report_ids)
    assert acked == {f"r-{j.job_id}" for j in jobs}
    finished = (await rest_of(cancel))[-1].finished
    assert [j.outcome for j in finished.jobs] == [build_pb2.JOB_OUTCOME_GRACEFUL] * 2
    assert second.received.empty()
    await second.leave()


async def test_a_report_id_over_200_characters_is_invalid_and_changes_nothing(
    server: Running,
) -> None:
    agent = AgentPeer(server.target, "long-id")
    await agent.connect()
    build = await submit(server)
    job = (await agent.next("assign_job")).assign_job  # committed ASSIGNED before sent
    before = await server.app.store.get_build(build.build_id)
    agent.send(
        job_finished=agent_pb2.JobFinished(
            build_id=build.build_id, job_id=job.job_id, succeeded=True, report_id="r" * 201
        )
    )
    status, details = await agent.ended()
    assert status.name == "INVALID_ARGUMENT" and "job_finished.report_id" in details
    after = await server.app.store.get_build(build.build_id)
    assert after is not None and before is not None and after.version == before.version
    assert after.job(job.job_id).status is JobStatus.ASSIGNED  # type: ignore[union-attr]


async def forced_on(server: Running, agent: AgentPeer) -> tuple[str, str]:
    """A build whose job `agent` runs and never confirms stopping: FORCED at the
    deadline (grace 0 + stop_ack_timeout 2 s). Returns (build id, job id)."""
    build = await submit(server)
    job = await agent.take_job()
    await jobs_running(server.stub, build.build_id, 1)
    cancel = server.stub.Cancel(cancel_request(build.build_id, grace_period={"seconds": 0}))
    await cancel.read()
    await agent.next("stop_job")  # and ignores it
    finished = (await rest_of(cancel))[-1].finished
    assert [j.outcome for j in finished.jobs] == [build_pb2.JOB_OUTCOME_FORCED]
    return build.build_id, job.job_id


async def test_a_forced_job_keeps_its_slot_and_a_suspect_agent_gets_no_job_until_it_answers(
    server: Running,
) -> None:
    hung = AgentPeer(server.target, "hung", capacity=2)
    await hung.connect()
    build_id, job_id = await forced_on(server, hung)
    # The process may still run: its slot stays counted, and the agent is suspect.
    assert (await listed(server))["hung"] == (True, [job_id])

    fresh = AgentPeer(server.target, "fresh", capacity=1)
    await fresh.connect()
    second = await submit(server)
    # "hung" has a free slot (and more than "fresh" had on main), but it is suspect.
    assert (await fresh.next("assign_job")).assign_job.build_id == second.build_id
    third = await submit(server)  # no agent may take it now: "fresh" is full
    assert (await get(server, third.build_id)).status == build_pb2.BUILD_STATUS_QUEUED

    # A second StopJob may be there (a JobAccepted that reached the server after the
    # cancel gets a fresh stop); an AssignJob may not.
    waiting = [hung.received.get_nowait() for _ in range(hung.received.qsize())]
    assert [m for m in waiting if m.HasField("assign_job")] == [], "a suspect agent got a job"
    hung.stopped(build_id, job_id)  # at last: the job is gone
    assert (await hung.next("assign_job")).assign_job.build_id == third.build_id
    assert (await listed(server))["hung"][0] is False
    # The late JobStopped changed nothing of the finished build, and was acknowledged.
    assert (await get(server, build_id)).stages[0].jobs[0].outcome == (build_pb2.JOB_OUTCOME_FORCED)
    await fresh.leave()
    await hung.leave()


async def test_a_forced_job_claimed_on_reconnect_is_stopped_and_held_until_reported_gone(
    server: Running,
) -> None:
    first = AgentPeer(server.target, "back", capacity=1)
    await first.connect()
    build_id, job_id = await forced_on(server, first)
    await first.drop()

    # Back, still running it: it must stop, and its slot stays counted meanwhile.
    again = AgentPeer(server.target, "back", capacity=1)
    await again.connect(running=[(build_id, job_id)])
    assert (await again.next("stop_job")).stop_job.job_id == job_id
    assert (await listed(server))["back"] == (False, [job_id])  # a reconnect answers
    await again.drop()

    # Back without it: the slot is free, and the agent gets work again.
    last = AgentPeer(server.target, "back", capacity=1)
    await last.connect()
    queued = await submit(server)
    assign = (await last.next("assign_job")).assign_job  # capacity 1: the slot was freed
    assert assign.build_id == queued.build_id
    assert (await listed(server))["back"] == (False, [assign.job_id])
    await last.leave()


async def test_a_draining_server_refuses_submits_cancels_and_agent_streams_changing_nothing(
    server: Running,
) -> None:
    build = await submit(server)
    before = await store_snapshot(server)
    server.app.control.begin_drain()

    with pytest.raises(grpc.aio.AioRpcError) as submitted:
        await server.stub.SubmitBuild(pipeline())
    assert submitted.value.code() == grpc.StatusCode.UNAVAILABLE
    with pytest.raises(grpc.aio.AioRpcError) as canceled:
        await server.stub.Cancel(cancel_request(build.build_id)).read()
    assert canceled.value.code() == grpc.StatusCode.UNAVAILABLE
    cancel_many = build_control_pb2.CancelBuildsRequest(pipeline="test")
    with pytest.raises(grpc.aio.AioRpcError) as canceled_many:
        await server.stub.CancelBuilds(cancel_many).read()
    assert canceled_many.value.code() == grpc.StatusCode.UNAVAILABLE
    status, _ = await AgentPeer(server.target, "late-comer").refused()
    assert status == grpc.StatusCode.UNAVAILABLE

    assert await store_snapshot(server) == before
    assert (await get(server, build.build_id)).status == build_pb2.BUILD_STATUS_QUEUED
