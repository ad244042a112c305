"""Two `buildcontrol serve --replicas on` processes on one PostgreSQL schema, with real
agents running real steps: they share the shards, each runs the builds submitted to
it, a dead replica's shards are taken over and its cancels finish, a paused one
(a zombie) commits nothing, a stopped one hands its shards over at once."""

from __future__ import annotations

import asyncio
import re
import signal
import time
from pathlib import Path

import grpc
import pytest
from buildcontrol_proto.v1 import build_control_pb2, build_pb2

from tests.replicas.replicas import (
    SHARDS,
    Accepted,
    FailoverProxy,
    StartTwo,
    Stub,
    agent_on_each,
    cancel,
    cancel_events,
    cancels_across,
    job_ids,
    jobs_started_per_agent,
    running_on_both,
    start_replica,
    stubs,
    submit,
    unrunnable,
    until_shares,
)
from tests.support.build_waits import all_steps_running, build_of, until_terminal
from tests.support.processes import (
    AgentProc,
    ServerProc,
    start_agent,
    start_server,
    step_pids,
    wait_gone,
)


@pytest.mark.timeout(180)
async def test_two_replicas_share_the_shards_and_each_runs_the_builds_submitted_to_it(
    tmp_path: Path, postgres_url: str, two_replicas: StartTwo, agents: list[AgentProc]
) -> None:
    a, b = await two_replicas(postgres_url)
    await agent_on_each(tmp_path, agents, a, b)
    async with stubs(a, b) as (stub_a, stub_b):
        on_a, on_b = await submit(stub_a, 3), await submit(stub_b, 3)
        await asyncio.gather(
            *(all_steps_running(stub_a, x) for x in on_a),
            *(all_steps_running(stub_b, x) for x in on_b),
        )
        jobs_a, jobs_b = await job_ids(stub_a, on_a), await job_ids(stub_b, on_b)
        # Each replica ran its own builds on the agent connected to it.
        started = jobs_started_per_agent(agents)
        assert {job: started[job] for job in jobs_a} == {job: {"agent-a"} for job in jobs_a}
        assert {job: started[job] for job in jobs_b} == {job: {"agent-b"} for job in jobs_b}
        # Any replica answers for any build: the other one reads it from the database.
        seen = (await stub_b.GetBuild(build_control_pb2.GetBuildRequest(build_id=on_a[0]))).build
        assert seen.status == build_pb2.BUILD_STATUS_RUNNING
        pids = {pid for job in jobs_a + jobs_b for pid in await step_pids(job)}
        # Each cancel goes to the replica that neither owns the build nor holds the
        # agent running it: its inbox row reaches the owner, whose stop reaches the step,
        # and the caller's stream follows the build to its end through the database.
        streams = await asyncio.gather(
            *(cancel_events(stub_b, x) for x in on_a), *(cancel_events(stub_a, x) for x in on_b)
        )
        for events in streams:
            assert events[0].WhichOneof("event") == "accepted"
            assert events[-1].finished.status == build_pb2.BUILD_STATUS_CANCELED
        # WatchBuild on the non-owner too: its snapshot, then changes to the end.
        for stub, builds in ((stub_b, on_a), (stub_a, on_b)):
            for build_id in builds:
                build = await until_terminal(stub, build_id)
                assert build.status == build_pb2.BUILD_STATUS_CANCELED
                assert build.cancel.reason == "from the other replica"
        await wait_gone(pids, 30)


@pytest.mark.timeout(120)
async def test_a_concurrency_group_lives_on_the_replica_owning_its_shard(
    postgres_url: str, two_replicas: StartTwo
) -> None:
    a, b = await two_replicas(postgres_url)
    request = build_of(1, "true", "replicas")
    request.concurrency_group = "deploy-prod"
    async with (
        grpc.aio.insecure_channel(a.target) as channel_a,
        grpc.aio.insecure_channel(b.target) as channel_b,
    ):
        outcomes: dict[str, str] = {}
        for name, stub in (("a", Stub(channel_a)), ("b", Stub(channel_b))):
            try:
                outcomes[name] = (await stub.SubmitBuild(request)).build.build_id
            except grpc.aio.AioRpcError as error:
                assert error.code() == grpc.StatusCode.UNAVAILABLE
                assert "belongs to another replica" in (error.details() or "")
                outcomes[name] = "refused"
        # Exactly one replica owns the group: its builds are ordered in one place.
        assert sorted(outcomes.values()).count("refused") == 1


@pytest.mark.timeout(300)
async def test_sigkill_of_a_replica_during_a_mass_cancel_loses_no_cancel(
    tmp_path: Path, postgres_url: str, two_replicas: StartTwo, agents: list[AgentProc]
) -> None:
    a, b = await two_replicas(postgres_url)
    # Agents reach a replica through a proxy that fails over to the other one.
    to_a, to_b = FailoverProxy([a.port, b.port]), FailoverProxy([b.port, a.port])
    try:
        target_a, target_b = await to_a.start(), await to_b.start()
        for n, target in enumerate((target_a, target_a, target_b, target_b)):
            agents.append(await start_agent(target, f"agent-{n}", tmp_path, "os=linux", 30))
        await _mass_cancel_with_a_kill(a, b, postgres_url, agents)
    finally:
        await to_a.close()
        await to_b.close()


async def _mass_cancel_with_a_kill(
    a: ServerProc, b: ServerProc, url: str, agents: list[AgentProc]
) -> None:
    async with stubs(a, b) as (stub_a, stub_b):
        running = await running_on_both(stub_a, stub_b, 50)
        # a is killed once a third of the cancels were accepted.
        accepted = Accepted(len(running.builds) // 3)
        cancels = cancels_across(stub_a, stub_b, running, "mass", accepted)
        await asyncio.wait_for(accepted.enough.wait(), 60)
        killed_at = time.monotonic()
        a.process.kill()
        await a.process.wait()
        await until_shares(url, {b.target: SHARDS})
        takeover = time.monotonic() - killed_at
        print(f"shards of the killed replica taken over {takeover:.2f} s after SIGKILL")
        assert takeover < 8.0  # lease 4 s + a round of 1 s, on a loaded machine
        await asyncio.gather(*cancels)  # every cancel was accepted somewhere
        for build_id in running.builds:
            build = await until_terminal(stub_b, build_id)
            assert build.status == build_pb2.BUILD_STATUS_CANCELED, build_id
        await wait_gone(running.pids, 60)
        started = jobs_started_per_agent(agents)
        assert all(len(started[job]) == 1 for job in running.jobs), "a job ran on two agents"


@pytest.mark.timeout(180)
async def test_a_paused_replica_whose_shards_were_taken_over_commits_nothing(
    tmp_path: Path, postgres_url: str, replicas: list[ServerProc]
) -> None:
    # Builds no agent can run wait QUEUED; a's queue timeout would cancel them.
    a = await start_replica(
        tmp_path, "a", postgres_url, "--replicas-lease", "2", "--queue-timeout", "3"
    )
    replicas.append(a)
    await until_shares(postgres_url, {a.target: SHARDS})
    async with grpc.aio.insecure_channel(a.target) as channel_a:
        queued = [
            (await Stub(channel_a).SubmitBuild(unrunnable())).build.build_id for _ in range(5)
        ]
    a.process.send_signal(signal.SIGSTOP)
    paused_at = time.monotonic()
    try:
        b = await start_replica(tmp_path, "b", postgres_url, "--replicas-lease", "2")
        replicas.append(b)
        await until_shares(postgres_url, {b.target: SHARDS})
        async with grpc.aio.insecure_channel(b.target) as channel_b:
            stub_b = Stub(channel_b)
            for build_id in queued:
                await cancel(stub_b, build_id, "cancelled by b")
            # a's queue timers are due now: they fire the moment it runs again.
            await asyncio.sleep(max(0.0, paused_at + 3.5 - time.monotonic()))
    finally:
        a.process.send_signal(signal.SIGCONT)
    # The zombie notices, stops its actors and rejoins: the shards are shared again.
    await until_shares(postgres_url, {a.target: SHARDS // 2, b.target: SHARDS // 2})
    async with grpc.aio.insecure_channel(a.target) as channel_a:
        for build_id in queued:
            build = (
                await Stub(channel_a).GetBuild(build_control_pb2.GetBuildRequest(build_id=build_id))
            ).build
            assert build.status == build_pb2.BUILD_STATUS_CANCELED
            # b's cancel stands: none of the zombie's writes (its queue timeout) committed.
            assert build.cancel.reason == "cancelled by b"
    # It noticed the loss (through the fence, or its next renewal) of every shard.
    log = (tmp_path / "a" / "server.log").read_text()
    assert sum(int(n) for n in re.findall(r"lost (\d+) shard\(s\)", log)) >= SHARDS


@pytest.mark.timeout(120)
async def test_a_replica_stopped_with_sigterm_hands_its_shards_over_at_once(
    postgres_url: str, two_replicas: StartTwo
) -> None:
    # A long lease: waiting for it to expire would take 10 s.
    a, b = await two_replicas(postgres_url, "--replicas-lease", "10")
    async with grpc.aio.insecure_channel(b.target) as channel_b:
        on_b = await submit(Stub(channel_b), 3, "true")  # no agent: they stay QUEUED
    assert await b.stop() == 0
    stopped_at = time.monotonic()
    await until_shares(postgres_url, {a.target: SHARDS})
    handover = time.monotonic() - stopped_at
    print(f"shards handed over {handover:.2f} s after the replica exited")
    assert handover < 5.0
    async with grpc.aio.insecure_channel(a.target) as channel_a:
        stub_a = Stub(channel_a)
        for build_id in on_b:  # b's builds are a's now
            await cancel(stub_a, build_id, "after the handover")
            assert (
                await until_terminal(stub_a, build_id)
            ).status == build_pb2.BUILD_STATUS_CANCELED


async def test_replicas_on_sqlite_are_refused_at_start(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError) as refused:
        await start_server(tmp_path / "data", "--replicas", "on")
    assert "--replicas on needs a PostgreSQL store" in str(refused.value)
    assert not (tmp_path / "data" / "buildcontrol.sqlite3").exists()
