"""Protocol faults over a real server, with a scripted agent peer: a job accepted
after the stop it ignored, a FORCED job whose agent may still run it, a suspect agent,
and results that must be acknowledged before an agent may forget them."""

from __future__ import annotations

from buildcontrol.v1 import agent_pb2, build_control_pb2, build_pb2

from tests.rpc.conftest import Running
from tests.rpc.test_cancel_rpc import get, rest_of, submit
from tests.support.agent_peer import AgentPeer

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
