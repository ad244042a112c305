"""A job assigned across replicas when one of the two is SIGKILLed: the slot it took
on the agent is freed once the job ends, whether the dead replica owned the build
(the survivor takes the build over) or held the agent (the agent moves to the
survivor, which then counts the job). And an agent SIGKILLed and started again
without its jobs: the replica holding it tells the owner, whose job ends LOST."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import pytest
from buildcontrol_proto.v1 import build_control_pb2, build_pb2

from tests.replicas.replicas import (
    SHARDS,
    FailoverProxy,
    StartTwo,
    Stub,
    cancel_events,
    job_ids,
    stubs,
    submit,
    until_shares,
)
from tests.support.build_waits import all_steps_running, build_of, until_terminal
from tests.support.processes import AgentProc, job_pids, start_agent, wait_gone

CANCELED = build_pb2.BUILD_STATUS_CANCELED


async def _cancel_and_reuse(stub: Stub, build_id: str, pids: set[int]) -> None:
    """Cancel the build on `stub`'s replica; then the agent's one slot takes another
    build of that replica (it was freed), and no job is left listed on it."""
    events = await cancel_events(stub, build_id)
    assert events[-1].finished.status == CANCELED
    await wait_gone(pids, 30)
    reply = await stub.SubmitBuild(build_of(1, "true", "reuse"))
    assert (await until_terminal(stub, reply.build.build_id)).status == (
        build_pb2.BUILD_STATUS_SUCCEEDED
    )
    listed = await stub.ListAgents(build_control_pb2.ListAgentsRequest())
    assert [(x.agent_id, list(x.job_ids)) for x in listed.agents] == [("agent-a", [])]


@pytest.mark.timeout(120)
async def test_the_slot_of_a_job_whose_owner_was_sigkilled_is_freed(
    tmp_path: Path, postgres_url: str, two_replicas: StartTwo, agents: list[AgentProc]
) -> None:
    a, b = await two_replicas(postgres_url, "--replicas-lease", "2")
    agents.append(await start_agent(a.target, "agent-a", tmp_path, "os=linux", 1))
    async with stubs(a, b) as (stub_a, stub_b):
        [build_id] = await submit(stub_b, 1)  # owned by b, on a's agent
        await all_steps_running(stub_b, build_id)
        pids = job_pids((await job_ids(stub_b, [build_id]))[0])
        assert pids
        b.process.kill()
        await b.process.wait()
        await until_shares(postgres_url, {a.target: SHARDS})
        await _cancel_and_reuse(stub_a, build_id, pids)


@pytest.mark.timeout(120)
async def test_the_slot_of_a_job_whose_agents_replica_was_sigkilled_is_freed(
    tmp_path: Path, postgres_url: str, two_replicas: StartTwo, agents: list[AgentProc]
) -> None:
    a, b = await two_replicas(postgres_url, "--replicas-lease", "2")
    proxy = FailoverProxy([a.port, b.port])
    try:
        agents.append(await start_agent(await proxy.start(), "agent-a", tmp_path, "os=linux", 1))
        async with stubs(a, b) as (_stub_a, stub_b):
            [build_id] = await submit(stub_b, 1)  # owned by b, on the agent a holds
            await all_steps_running(stub_b, build_id)
            pids = job_pids((await job_ids(stub_b, [build_id]))[0])
            assert pids
            a.process.kill()  # the agent reconnects through the proxy: to b
            await a.process.wait()
            await _cancel_and_reuse(stub_b, build_id, pids)
    finally:
        await proxy.close()


@pytest.mark.timeout(120)
async def test_an_agent_restarted_without_its_job_ends_it_on_the_owner(
    tmp_path: Path, postgres_url: str, two_replicas: StartTwo, agents: list[AgentProc]
) -> None:
    a, b = await two_replicas(postgres_url)  # a reconnect window of 30 s
    agent = await start_agent(a.target, "agent-a", tmp_path, "os=linux", 1)
    agents.append(agent)
    pids: set[int] = set()
    try:
        async with stubs(a, b) as (_stub_a, stub_b):
            [build_id] = await submit(stub_b, 1)  # owned by b, on the agent a holds
            await all_steps_running(stub_b, build_id)
            pids = job_pids((await job_ids(stub_b, [build_id]))[0])
            assert pids
            agent.process.kill()
            await agent.process.wait()
            # Within the window, a new agent process (no work dir: it knows no job).
            agents.append(await start_agent(a.target, "agent-a", tmp_path, "os=linux", 1))
            build = await until_terminal(stub_b, build_id)
            assert build.status == build_pb2.BUILD_STATUS_FAILED
            assert build.stages[0].jobs[0].outcome == build_pb2.JOB_OUTCOME_LOST
            reply = await stub_b.SubmitBuild(build_of(1, "true", "reuse"))
            assert (await until_terminal(stub_b, reply.build.build_id)).status == (
                build_pb2.BUILD_STATUS_SUCCEEDED
            )
    finally:
        for pid in pids:  # the steps the SIGKILLed agent left
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
