"""A job assigned across replicas when one of the two is SIGKILLed: the slot it took
on the agent is freed once the job ends, whether the dead replica owned the build
(the survivor takes the build over) or held the agent (the agent moves to the
survivor, which then counts the job). An agent SIGKILLed and started again without
its jobs: the replica holding it tells the owner, whose job ends LOST; lost with its
replica, the owner finds it held nowhere. And a claim the owner refuses: the
claimer's check of the store frees the slot."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from buildcontrol_proto.v1 import build_control_pb2, build_pb2
from buildcontrol_server.replicas.leases import shard_of

from tests.replicas.replicas import (
    SHARDS,
    FailoverProxy,
    StartTwo,
    Stub,
    cancel_events,
    get_build,
    job_ids,
    query,
    stubs,
    submit,
    until_shares,
)
from tests.support.build_waits import all_steps_running, build_of, until_terminal
from tests.support.processes import AgentProc, start_agent, step_pids, until, wait_gone

CANCELED = build_pb2.BUILD_STATUS_CANCELED


async def _running_on_a(stub_b: Stub) -> tuple[str, set[int]]:
    """A build owned by b (which has no agent) running on a's agent: its id and its
    step's processes."""
    [build_id] = await submit(stub_b, 1)
    await all_steps_running(stub_b, build_id)
    pids = await step_pids((await job_ids(stub_b, [build_id]))[0])
    return build_id, pids


@contextlib.contextmanager
def _steps_killed_at_the_end(pids: set[int]) -> Iterator[None]:
    """The steps a SIGKILLed agent leaves behind (`pids`, filled in the block) are
    killed when it ends."""
    try:
        yield
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


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
        build_id, pids = await _running_on_a(stub_b)
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
            build_id, pids = await _running_on_a(stub_b)
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
    left: set[int] = set()
    with _steps_killed_at_the_end(left):
        async with stubs(a, b) as (_stub_a, stub_b):
            build_id, pids = await _running_on_a(stub_b)
            left |= pids
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


async def _group_owned_by(stub: Stub, command: str) -> tuple[str, str]:
    """A build running `command` in a concurrency group whose shard `stub`'s replica
    owns (the other replica refuses the group's builds), and the group's name."""
    for attempt in range(40):
        request = build_of(1, command, "grouped")
        request.concurrency_group = f"group-{attempt}"
        try:
            return (await stub.SubmitBuild(request)).build.build_id, request.concurrency_group
        except grpc.aio.AioRpcError as error:
            assert error.code() == grpc.StatusCode.UNAVAILABLE
    raise AssertionError("no concurrency group in a shard of this replica")


@pytest.mark.timeout(120)
async def test_a_claim_its_owner_refuses_frees_the_slot_it_took(
    tmp_path: Path, postgres_url: str, two_replicas: StartTwo, agents: list[AgentProc]
) -> None:
    a, b = await two_replicas(postgres_url)
    agents.append(await start_agent(a.target, "agent-a", tmp_path, "os=linux", 2))
    async with stubs(a, b) as (stub_a, stub_b):
        first, group = await _group_owned_by(stub_b, "sleep 600")
        await all_steps_running(stub_b, first)
        request = build_of(1, "true", "grouped")
        request.concurrency_group = group
        waiting = (await stub_b.SubmitBuild(request)).build  # its turn comes after `first`
        [job_id] = await job_ids(stub_b, [waiting.build_id])
        # An offer b does not make (the job is not scheduled yet), as a stale row would
        # be: a claims it, b refuses the assignment, a's check of the store frees the slot.
        await query(
            postgres_url,
            "INSERT INTO job_offers (job_id, build_id, shard, labels) VALUES"
            f" ('{job_id}', '{waiting.build_id}', {shard_of(waiting.build_id, SHARDS)},"
            """ '{"os": "linux"}') RETURNING id""",
        )
        refused = f"job {job_id} claimed for agent agent-a no longer waits here"
        await until(lambda: refused in (b.data_dir / "server.log").read_text(), 30, "refusal")
        # The slot is free again: the agent takes a build of b beside `first`.
        reuse = (await stub_b.SubmitBuild(build_of(1, "true", "reuse"))).build.build_id
        assert (await until_terminal(stub_b, reuse)).status == build_pb2.BUILD_STATUS_SUCCEEDED
        assert (await get_build(stub_b, waiting.build_id)).status == build_pb2.BUILD_STATUS_QUEUED
        await cancel_events(stub_a, first)
        assert (await until_terminal(stub_b, waiting.build_id)).status == (
            build_pb2.BUILD_STATUS_SUCCEEDED
        )
    started = f"job {job_id} (build {waiting.build_id}) started"
    assert agents[0].log.read_text().count(started) == 1  # once, when its turn came


@pytest.mark.timeout(120)
async def test_an_agent_lost_with_the_replica_holding_it_ends_its_job_on_the_owner(
    tmp_path: Path, postgres_url: str, two_replicas: StartTwo, agents: list[AgentProc]
) -> None:
    a, b = await two_replicas(postgres_url, "--reconnect-window", "2")
    agent = await start_agent(a.target, "agent-a", tmp_path, "os=linux", 1)
    agents.append(agent)
    left: set[int] = set()
    with _steps_killed_at_the_end(left):
        async with stubs(a, b) as (_stub_a, stub_b):
            build_id, pids = await _running_on_a(stub_b)
            left |= pids
            # The host of a and its agent goes: no replica tells b, which sees the
            # agent held nowhere (agent_sessions) for a reconnect window.
            agent.process.kill()
            a.process.kill()
            await asyncio.gather(agent.process.wait(), a.process.wait())
            build = await until_terminal(stub_b, build_id)
            assert build.status == build_pb2.BUILD_STATUS_FAILED
            assert build.stages[0].jobs[0].outcome == build_pb2.JOB_OUTCOME_LOST
        assert "agent agent-a lost with 1 job(s) held" in (b.data_dir / "server.log").read_text()
