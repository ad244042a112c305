"""A build's owner assigns its jobs to agents another replica holds: a replica with
no agents runs its builds on the other's (the offer, the claim, the AssignJob through
the agent outbox), the agent's reports and output come back to the owner, a Cancel on
either replica stops the step, and two replicas assigning to one agent at once never
exceed its capacity."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from buildcontrol_proto.v1 import build_control_pb2, build_pb2

from tests.replicas.replicas import (
    StartTwo,
    Stub,
    cancel_events,
    get_build,
    job_ids,
    jobs_started_per_agent,
    query,
    stubs,
    submit,
    unrunnable,
    until_connected,
    until_value,
)
from tests.support.build_waits import all_steps_running, build_of, until_terminal
from tests.support.metrics_scrape import delta, scrape
from tests.support.processes import AgentProc, start_agent, step_pids, wait_gone

CANCELED = build_pb2.BUILD_STATUS_CANCELED
SUCCEEDED = build_pb2.BUILD_STATUS_SUCCEEDED
UNREADABLE = "buildcontrol_replica_rows_unreadable_total"


async def _log_until(stub: Stub, build_id: str, job_id: str, text: bytes) -> bytes:
    """The job's log as FollowJobLog streams it, until it holds `text`."""
    request = build_control_pb2.FollowJobLogRequest(build_id=build_id, job_id=job_id)
    seen = b""
    async for chunk in stub.FollowJobLog(request, timeout=30):
        seen += chunk.data
        if text in seen:
            return seen
    raise AssertionError(f"log of {job_id} ended without {text!r}: {seen!r}")


@pytest.mark.timeout(120)
async def test_builds_of_a_replica_without_agents_run_on_the_agent_of_the_other(
    tmp_path: Path, postgres_url: str, two_replicas: StartTwo, agents: list[AgentProc]
) -> None:
    a, b = await two_replicas(postgres_url)
    agents.append(await start_agent(a.target, "agent-a", tmp_path, "os=linux", 4))
    async with stubs(a, b) as (stub_a, stub_b):
        # Owned by b, which has no agent: they run on a's, and b learns each step.
        done = (await stub_b.SubmitBuild(build_of(1, "echo output-from-a", "across"))).build
        running = await submit(stub_b, 2, "echo started; sleep 600")
        await asyncio.gather(*(all_steps_running(stub_b, x) for x in running))
        finished = await until_terminal(stub_b, done.build_id)
        assert finished.status == SUCCEEDED
        [job] = finished.stages[0].jobs
        assert job.steps[0].status == build_pb2.STEP_STATUS_SUCCEEDED
        assert job.steps[0].exit_code == 0
        assert b"output-from-a" in await _log_until(
            stub_b, done.build_id, job.job_id, b"output-from-a"
        )
        jobs = await job_ids(stub_b, running)
        pids = {pid for job_id in jobs for pid in await step_pids(job_id)}
        # One cancel on the owner, one on the replica holding the agent.
        owner, holder = await asyncio.gather(
            cancel_events(stub_b, running[0]), cancel_events(stub_a, running[1])
        )
        for events in (owner, holder):
            kinds = [e.WhichOneof("event") for e in events]
            assert kinds == ["accepted", "job_stopped", "finished"]
            assert events[1].job_stopped.outcome in (
                build_pb2.JOB_OUTCOME_GRACEFUL,
                build_pb2.JOB_OUTCOME_KILLED,
            )
            assert events[-1].finished.status == CANCELED
        await wait_gone(pids, 30)
        for build_id in running:
            assert (await get_build(stub_b, build_id)).status == CANCELED
        listed = await stub_a.ListAgents(build_control_pb2.ListAgentsRequest())
        assert [(x.agent_id, list(x.job_ids)) for x in listed.agents] == [("agent-a", [])]
    started = jobs_started_per_agent(agents)
    assert started == {job_id: {"agent-a"} for job_id in [job.job_id, *jobs]}
    assert await query(postgres_url, "SELECT * FROM job_offers") == []


@pytest.mark.timeout(120)
async def test_two_replicas_assigning_to_one_agent_at_once_stay_within_its_capacity(
    tmp_path: Path, postgres_url: str, two_replicas: StartTwo, agents: list[AgentProc]
) -> None:
    a, b = await two_replicas(postgres_url)
    agent = await start_agent(a.target, "agent-a", tmp_path, "os=linux", 2)
    agents.append(agent)
    async with stubs(a, b) as (stub_a, stub_b):
        # a's own builds and b's offered ones compete for the agent's two slots.
        builds = [
            (await stub.SubmitBuild(build_of(1, "sleep 0.3", "capacity"))).build.build_id
            for _ in range(5)
            for stub in (stub_a, stub_b)
        ]
        for build_id in builds:
            assert (await until_terminal(stub_b, build_id)).status == SUCCEEDED
    log = agent.log.read_text()
    assert "exceeds capacity" not in log
    started = jobs_started_per_agent(agents)
    assert len(started) == len(builds)
    assert all(where == {"agent-a"} for where in started.values())


@pytest.mark.timeout(120)
async def test_an_offer_whose_labels_cannot_be_read_holds_no_other_offer_back(
    tmp_path: Path, postgres_url: str, two_replicas: StartTwo, agents: list[AgentProc]
) -> None:
    """An offer whose labels another version wrote in a shape this one cannot read is
    deleted with an error counted; the offers after it are still claimed (before, the
    claim round failed at it every time, and no job of b ran on a's agent)."""
    a, b = await two_replicas(postgres_url)
    async with stubs(a, b) as (_stub_a, stub_b):
        waiting = (await stub_b.SubmitBuild(unrunnable())).build.build_id
        [job_id] = await job_ids(stub_b, [waiting])
        await until_value(
            postgres_url, f"SELECT count(*) FROM job_offers WHERE job_id = '{job_id}'", 1
        )
        await query(
            postgres_url, f"UPDATE job_offers SET labels = 'not json' WHERE job_id = '{job_id}'"
        )
        before = await scrape(a.metrics_url)
        agents.append(await start_agent(a.target, "agent-a", tmp_path, "os=linux", 4))
        await until_connected(a, "agent-a")
        done = (await stub_b.SubmitBuild(build_of(1, "true", "across"))).build
        assert (await until_terminal(stub_b, done.build_id)).status == SUCCEEDED
        after = await scrape(a.metrics_url)
        assert (await get_build(stub_b, waiting)).status == build_pb2.BUILD_STATUS_QUEUED
    assert (
        delta(before, after, "buildcontrol_replica_rows_unreadable_total", table="job_offers") == 1
    )
