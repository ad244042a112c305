"""An agent SIGKILLed while its steps run, restarted with the same id and work dir:
nothing of its jobs is left running, and the server records them as killed by the
agent's restart, not as lost while they ran on."""

from __future__ import annotations

import uuid
from pathlib import Path

import grpc
import pytest
from buildcontrol_proto.v1 import build_control_pb2, build_control_pb2_grpc, build_pb2

from tests.support.build_waits import until_terminal
from tests.support.processes import AgentProc, ServerProc, job_pids, start_agent, wait_gone
from tests.support.step_processes import Fifo, at_least

Stub = build_control_pb2_grpc.BuildControlStub


def steps_that_leave_processes(fifo: Path) -> build_control_pb2.SubmitBuildRequest:
    """A plain step, one with a background child, one whose child escapes with setsid;
    each says on the FIFO when all its processes run."""
    commands = [
        f"echo ready > {fifo}; sleep 600",
        f"sleep 600 & echo ready > {fifo}; wait",
        f"setsid -f sleep 600; echo ready > {fifo}; sleep 600",
    ]
    return build_control_pb2.SubmitBuildRequest(
        pipeline="restart",
        stages=[
            build_control_pb2.StageSpec(
                name="s",
                jobs=[
                    build_control_pb2.JobSpec(
                        name=f"j{n}",
                        labels={"os": "linux"},
                        steps=[build_control_pb2.StepSpec(command=command)],
                    )
                    for n, command in enumerate(commands)
                ],
            )
        ],
    )


@pytest.mark.parametrize("containment", ["cgroups", "process-groups"])
async def test_a_restarted_agent_kills_what_its_killed_predecessor_left_and_reports_it(
    containment: str,
    server: ServerProc,
    stub: Stub,
    agents: list[AgentProc],
    tmp_path: Path,
) -> None:
    work = tmp_path / "work"
    agent_id = f"restart-{uuid.uuid4().hex[:8]}"
    extra = ["--work-dir", str(work)]
    if containment == "process-groups":
        extra.append("--no-cgroups")
    fifo = Fifo(tmp_path / "ready")
    try:
        agents.append(await start_agent(server.target, agent_id, tmp_path, "os=linux", 3, *extra))
        build_id = (await stub.SubmitBuild(steps_that_leave_processes(fifo.path))).build.build_id
        for _ in range(3):
            assert await fifo.read_line(30) == "ready"
    finally:
        fifo.close()
    build = (await stub.GetBuild(build_control_pb2.GetBuildRequest(build_id=build_id))).build
    job_ids = [job.job_id for job in build.stages[0].jobs]
    minimum = {job_ids[0]: 1, job_ids[1]: 2, job_ids[2]: 2}
    pids = set()
    for job_id in job_ids:
        found = await at_least(job_id, minimum[job_id], within=5)
        assert len(found) >= minimum[job_id], (job_id, found)
        pids.update(found)

    agents[-1].process.kill()  # SIGKILL: no cleanup of any kind
    await agents[-1].process.wait()
    agents.append(await start_agent(server.target, agent_id, tmp_path, "os=linux", 3, *extra))

    await wait_gone(pids, within=20)
    final = await until_terminal(stub, build_id)
    assert all(not job_pids(job_id) for job_id in job_ids)
    assert final.status == build_pb2.BUILD_STATUS_FAILED
    jobs = final.stages[0].jobs
    assert [job.status for job in jobs] == [build_pb2.JOB_STATUS_FAILED] * 3
    assert [job.outcome for job in jobs] == [build_pb2.JOB_OUTCOME_KILLED] * 3
    log = agents[-1].log.read_text()
    assert log.count("agent restarted") == 3
    assert not list((work / ".running").glob("*.json"))


async def test_a_build_cancelled_while_its_agent_was_dead_ends_canceled_killed_on_restart(
    server: ServerProc, stub: Stub, agents: list[AgentProc], tmp_path: Path
) -> None:
    work = tmp_path / "work"
    agent_id = f"restart-{uuid.uuid4().hex[:8]}"
    fifo = Fifo(tmp_path / "ready")
    try:
        agents.append(
            await start_agent(server.target, agent_id, tmp_path, "os=linux", 3, "--work-dir",
                              str(work))
        )  # fmt: skip
        build_id = (await stub.SubmitBuild(steps_that_leave_processes(fifo.path))).build.build_id
        for _ in range(3):
            assert await fifo.read_line(30) == "ready"
    finally:
        fifo.close()
    build = (await stub.GetBuild(build_control_pb2.GetBuildRequest(build_id=build_id))).build
    job_ids = [job.job_id for job in build.stages[0].jobs]
    pids = {pid for job_id in job_ids for pid in await at_least(job_id, 1, within=5)}
    agents[-1].process.kill()
    await agents[-1].process.wait()

    cancel = stub.Cancel(build_control_pb2.CancelRequest(build_id=build_id, reason="test"))
    first = await cancel.read()
    assert first.WhichOneof("event") == "accepted"
    agents.append(
        await start_agent(server.target, agent_id, tmp_path, "os=linux", 3, "--work-dir",
                          str(work))
    )  # fmt: skip

    finished = None
    while finished is None:
        message = await cancel.read()
        assert message is not grpc.aio.EOF
        if message.WhichOneof("event") == "finished":
            finished = message.finished
    await wait_gone(pids, within=20)
    assert finished is not None and finished.status == build_pb2.BUILD_STATUS_CANCELED
    assert [job.outcome for job in finished.jobs] == [build_pb2.JOB_OUTCOME_KILLED] * 3
    assert all(not job_pids(job_id) for job_id in job_ids)
