"""Agents that do not stop: the cancel still ends, by its deadline, and a stop that
was force-escalated kills at once."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path

import grpc
from buildcontrol_proto.v1 import build_control_pb2, build_control_pb2_grpc, build_pb2

from tests.support.build_waits import one_job, running_step
from tests.support.processes import (
    AgentProc,
    ServerProc,
    start_agent,
    start_server,
    step_pids,
    wait_gone,
)

Stub = build_control_pb2_grpc.BuildControlStub


async def test_force_on_a_canceling_build_kills_a_term_ignoring_step_within_1_s(
    server: ServerProc, stub: Stub, agents: list[AgentProc], tmp_path: Path
) -> None:
    agents.append(await start_agent(server.target, "agent-1", tmp_path))
    build = (await stub.SubmitBuild(one_job("trap '' TERM; sleep 600"))).build
    job = (await running_step(stub, build.build_id)).stages[0].jobs[0]
    pids = await step_pids(job.job_id)
    gentle = stub.Cancel(
        build_control_pb2.CancelRequest(build_id=build.build_id, grace_period={"seconds": 60})
    )
    assert (await gentle.read()).accepted.status == build_pb2.BUILD_STATUS_CANCELING
    forced_at = time.monotonic()
    forced = [
        m
        async for m in stub.Cancel(
            build_control_pb2.CancelRequest(build_id=build.build_id, force=True)
        )
    ]
    await wait_gone(pids, within=1.0)
    assert time.monotonic() - forced_at < 1.0
    finished = forced[-1].finished
    assert finished.status == build_pb2.BUILD_STATUS_CANCELED
    assert [j.outcome for j in finished.jobs] == [build_pb2.JOB_OUTCOME_KILLED]


async def test_hung_and_ignoring_agents_are_forced_at_the_deadline(
    tmp_path: Path, agents: list[AgentProc]
) -> None:
    server = await start_server(
        tmp_path / "data", "--stop-ack-timeout", "1", "--default-grace", "1"
    )
    ignorer = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.support.ignoring_agent",
        server.target,
        "ignorer",
        "pool=ign",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        frozen = await start_agent(server.target, "frozen", tmp_path, "pool=frz", 1)
        agents.append(frozen)
        async with grpc.aio.insecure_channel(server.target) as channel:
            stub = Stub(channel)
            request = build_control_pb2.SubmitBuildRequest(
                pipeline="stuck",
                stages=[
                    build_control_pb2.StageSpec(
                        name="s",
                        jobs=[
                            build_control_pb2.JobSpec(
                                name="ign",
                                labels={"pool": "ign"},
                                steps=[build_control_pb2.StepSpec(command="sleep 600")],
                            ),
                            build_control_pb2.JobSpec(
                                name="frz",
                                labels={"pool": "frz"},
                                steps=[build_control_pb2.StepSpec(command="sleep 600")],
                            ),
                        ],
                    )
                ],
            )
            build = (await stub.SubmitBuild(request)).build
            assert ignorer.stdout is not None
            assert (await asyncio.wait_for(ignorer.stdout.readline(), 20)).startswith(b"took ")
            snapshot = (
                await stub.GetBuild(build_control_pb2.GetBuildRequest(build_id=build.build_id))
            ).build
            frz_job = next(j for j in snapshot.stages[0].jobs if j.name == "frz")
            frozen_pids = await step_pids(frz_job.job_id)
            frozen.process.send_signal(signal.SIGSTOP)
            started = time.monotonic()
            events = [
                m
                async for m in stub.Cancel(
                    build_control_pb2.CancelRequest(build_id=build.build_id), timeout=30
                )
            ]
            elapsed = time.monotonic() - started
            finished = events[-1].finished
            assert finished.status == build_pb2.BUILD_STATUS_CANCELED
            assert {j.outcome for j in finished.jobs} == {build_pb2.JOB_OUTCOME_FORCED}
            # grace 1 s + ack timeout 1 s: not stuck in CANCELING beyond its deadline
            assert 2.0 <= elapsed < 4.0, elapsed
            assert (await asyncio.wait_for(ignorer.stdout.readline(), 5)).startswith(
                b"ignored stop "
            )
            listed = (await stub.ListAgents(build_control_pb2.ListAgentsRequest())).agents
            assert {a.agent_id for a in listed if a.suspect} == {"ignorer", "frozen"}
            frozen.process.send_signal(signal.SIGCONT)
            # The stop waiting in its stream is handled now: the step's processes end.
            await wait_gone(frozen_pids, within=10.0)
    finally:
        ignorer.kill()
        await ignorer.wait()
        assert await server.stop() == 0
