"""A build's owner reaches an agent whose stream another replica holds: its stop goes
through the agent outbox, the agent's result comes back through the build inbox; an
agent that moved to another replica keeps its jobs past the owner's reconnect window,
one that is gone for good loses them and its outbox rows; a row whose job ended some
other way does not wait for a confirmation that never comes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path

import grpc
import pytest
from buildcontrol_proto.v1 import build_control_pb2, build_pb2
from buildcontrol_server.domain.agent_commands import StopCommand
from buildcontrol_server.replicas.agent_delivery import stop_body

from tests.replicas.replicas import (
    StartTwo,
    Stub,
    SwitchingProxy,
    cancel_events,
    get_build,
    job_ids,
    query,
    stubs,
    submit,
    until_value,
)
from tests.support.build_waits import all_steps_running
from tests.support.metrics_scrape import scrape
from tests.support.processes import (
    AgentProc,
    ServerProc,
    start_agent,
    step_pids,
    until,
    wait_gone,
)

LOST = "buildcontrol_agents_lost_total"


async def until_held_by(url: str, agent_id: str, replica: ServerProc) -> None:
    """Wait for `replica` to say, in agent_sessions, that it holds the agent's stream."""
    sql = (
        "SELECT r.name FROM agent_sessions s JOIN replicas r ON r.instance_id = s.instance_id"
        f" WHERE s.agent_id = '{agent_id}'"
    )
    for _ in range(600):
        if [row["name"] for row in await query(url, sql)] == [replica.target]:
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"{agent_id} never held by {replica.target}")


@pytest.mark.timeout(180)
async def test_a_stop_reaches_an_agent_whose_stream_another_replica_holds(
    tmp_path: Path, postgres_url: str, two_replicas: StartTwo, agents: list[AgentProc]
) -> None:
    # A long reconnect window: the owner must not take the agent for lost meanwhile.
    a, b = await two_replicas(postgres_url, "--reconnect-window", "120")
    proxy = SwitchingProxy(a.port)
    try:
        agents.append(await start_agent(await proxy.start(), "roamer", tmp_path, "os=linux", 2))
        async with stubs(a, b) as (stub_a, stub_b):
            [build_id] = await submit(stub_a, 1)  # owned by a, running on the roamer
            await all_steps_running(stub_a, build_id)
            [job_id] = await job_ids(stub_a, [build_id])
            pids = await step_pids(job_id)
            proxy.switch_to(b.port)  # the roamer reconnects: to b
            await until_held_by(postgres_url, "roamer", b)
            # Sent to b: b leaves it in a's inbox; a's stop goes through the agent
            # outbox to b, which holds the roamer; its JobStopped comes back to a.
            events = await cancel_events(stub_b, build_id)
            assert events[-1].finished.status == build_pb2.BUILD_STATUS_CANCELED
            await wait_gone(pids, 30)
            build = (
                await stub_a.GetBuild(build_control_pb2.GetBuildRequest(build_id=build_id))
            ).build
            [job] = build.stages[0].jobs
            # The agent's own word (not FORCED at the stop's deadline) reached the owner.
            assert job.outcome in (build_pb2.JOB_OUTCOME_GRACEFUL, build_pb2.JOB_OUTCOME_KILLED)
        # Confirmed by the agent: the outbox row is gone.
        assert await query(postgres_url, "SELECT * FROM agent_outbox") == []
    finally:
        await proxy.close()


@pytest.mark.timeout(180)
async def test_an_agent_that_moved_keeps_its_jobs_and_one_gone_for_good_loses_them(
    tmp_path: Path, postgres_url: str, two_replicas: StartTwo, agents: list[AgentProc]
) -> None:
    a, b = await two_replicas(postgres_url, "--reconnect-window", "2")
    proxy = SwitchingProxy(a.port)
    pids: set[int] = set()
    try:
        roamer = await start_agent(await proxy.start(), "roamer", tmp_path, "os=linux", 2)
        agents.append(roamer)
        async with grpc.aio.insecure_channel(a.target) as channel_a:
            stub_a = Stub(channel_a)
            [build_id] = await submit(stub_a, 1)  # owned by a, running on the roamer
            await all_steps_running(stub_a, build_id)
            [job_id] = await job_ids(stub_a, [build_id])
            pids = await step_pids(job_id)
            proxy.switch_to(b.port)
            await until_held_by(postgres_url, "roamer", b)
            # a's reconnect window passes: a finds the roamer on b and lets its job run.
            moved = "agent roamer did not come back here but is connected to replica"
            await until(lambda: moved in _log(a), 30, "a to find the roamer on b")
            build = await get_build(stub_a, build_id)
            assert build.status == build_pb2.BUILD_STATUS_RUNNING
            assert build.stages[0].jobs[0].status == build_pb2.JOB_STATUS_RUNNING
            # Moved is not lost: a's count of lost agents stays as it was (the hub's
            # window passed, but no build was told).
            assert (await scrape(a.metrics_url)).value(LOST) == 0
            await _gone_for_good(postgres_url, stub_a, roamer, build_id)
            assert (await scrape(a.metrics_url)).value(LOST) == 1
    finally:
        await proxy.close()
        for pid in pids:  # the steps of the killed roamer
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.timeout(120)
async def test_a_stop_row_of_a_job_that_ended_another_way_goes_at_the_next_read(
    tmp_path: Path, postgres_url: str, two_replicas: StartTwo, agents: list[AgentProc]
) -> None:
    """The rows no JobStopped will confirm: a stop the owner left while the agent was
    between two streams, whose result then came to the owner directly (its stream was
    back there), or one re-sent by an actor restarted from the store after the result
    was forwarded; and one of a job no longer in the database."""
    a, _ = await two_replicas(postgres_url)
    agents.append(await start_agent(a.target, "steady", tmp_path, "os=linux", 2))
    async with grpc.aio.insecure_channel(a.target) as channel_a:
        stub_a = Stub(channel_a)
        ended, running = await submit(stub_a, 2)  # owned by a, on the agent a holds
        for build_id in (ended, running):
            await all_steps_running(stub_a, build_id)
        events = await cancel_events(stub_a, ended)  # the direct path: no row
        assert events[-1].finished.status == build_pb2.BUILD_STATUS_CANCELED
        [ended_job, running_job] = await job_ids(stub_a, [ended, running])
        for build_id, job_id in ((ended, ended_job), (ended, f"{ended}-gone")):
            stop = StopCommand(build_id, job_id, "steady", "late", 10.0, 0.0)
            await query(
                postgres_url,
                "INSERT INTO agent_outbox (agent_id, build_id, job_id, body, kind) VALUES"
                f" ('steady', '{build_id}', '{job_id}', '{stop_body(stop)}', 'stop')",
            )
        await until_value(postgres_url, "SELECT count(*) FROM agent_outbox", 0, within=10)
        # Nothing else changed: the ended build is as it was, the other one still runs.
        assert (await get_build(stub_a, ended)).status == build_pb2.BUILD_STATUS_CANCELED
        build = await get_build(stub_a, running)
        assert build.stages[0].jobs[0].status == build_pb2.JOB_STATUS_RUNNING
        assert await step_pids(running_job)


async def _gone_for_good(url: str, stub_a: Stub, roamer: AgentProc, build_id: str) -> None:
    """The roamer freezes, a cancel's stop waits for it in the outbox, then it dies:
    once no replica holds it for a reconnect window, its job ends (FORCED: it was
    stopping) and its outbox row goes."""
    roamer.process.send_signal(signal.SIGSTOP)
    request = build_control_pb2.CancelRequest(build_id=build_id, reason="gone")
    request.grace_period.FromSeconds(600)  # no stop deadline before the agent is lost
    stream = stub_a.Cancel(request, timeout=60)
    assert (await stream.read()).WhichOneof("event") == "accepted"
    waiting = "SELECT count(*) FROM agent_outbox WHERE agent_id = 'roamer'"
    await until_value(url, waiting, 1)
    roamer.process.kill()
    await roamer.process.wait()
    last = await stream.read()
    while (event := await stream.read()) != grpc.aio.EOF:
        last = event
    assert last.finished.status == build_pb2.BUILD_STATUS_CANCELED
    build = await get_build(stub_a, build_id)
    assert build.stages[0].jobs[0].outcome == build_pb2.JOB_OUTCOME_FORCED
    assert await query(url, "SELECT * FROM agent_outbox") == []


def _log(replica: ServerProc) -> str:
    return (replica.data_dir / "server.log").read_text()
