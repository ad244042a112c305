"""Two replicas when the database fails under them: PostgreSQL restarted in the middle
of a mass cancel (both recover without a restart, no cancel lost), and one replica
cut off from the database (for its shards, the same as a dead replica; it serves no
writes until it holds leases again, then rejoins)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import pytest
from buildcontrol_proto.v1 import build_control_pb2, build_pb2

from tests.replicas.replicas import (
    SHARDS,
    Accepted,
    PartitionProxy,
    StartTwo,
    Stub,
    cancel,
    cancels_across,
    job_ids,
    query,
    running_on_both,
    start_cut_off_pair,
    stubs,
    submit,
    unrunnable,
    until_shares,
    until_value,
)
from tests.support.build_waits import all_steps_running, build_of, until_terminal
from tests.support.postgres_server import PostgresServer
from tests.support.processes import (
    AgentProc,
    ServerProc,
    start_agent,
    step_pids,
    wait_gone,
)


@pytest.mark.timeout(300)
async def test_postgresql_restarted_during_a_mass_cancel_loses_no_cancel(
    tmp_path: Path, own_postgres: PostgresServer, two_replicas: StartTwo, agents: list[AgentProc]
) -> None:
    url = own_postgres.url()
    a, b = await two_replicas(url)
    for n, replica in enumerate((a, a, b, b)):
        agents.append(await start_agent(replica.target, f"agent-{n}", tmp_path, "os=linux", 10))
    async with stubs(a, b) as (stub_a, stub_b):
        running = await running_on_both(stub_a, stub_b, 20)
        # PostgreSQL crashes (stop -m immediate) once a third of the cancels were accepted.
        accepted = Accepted(len(running.builds) // 3)
        cancels = cancels_across(stub_a, stub_b, running, "mass", accepted)
        await asyncio.wait_for(accepted.enough.wait(), 60)
        await asyncio.to_thread(own_postgres.stop)
        await asyncio.to_thread(own_postgres.start)
        await asyncio.gather(*cancels)  # every cancel was accepted somewhere
        for build_id in running.builds:
            build = await until_terminal(stub_a, build_id)
            assert build.status == build_pb2.BUILD_STATUS_CANCELED, build_id
            assert build.cancel.reason == "mass"
        await wait_gone(running.pids, 60)
    # Both went on without a restart, and share the shards again.
    await until_shares(url, {a.target: SHARDS // 2, b.target: SHARDS // 2})
    for replica in (a, b):
        assert replica.process.returncode is None
        log = (replica.data_dir / "server.log").read_text()
        assert "unreachable" in log and "reachable again" in log  # the crash was seen
    # A forwarded cancel whose follower saw the crash was retried on the owner; its
    # row, applied or not, goes with the next drain (at the latest the 1 s safety net).
    await until_value(url, "SELECT count(*) FROM build_inbox", 0, within=10)
    await until_value(url, "SELECT count(*) FROM agent_outbox", 0, within=10)


@pytest.mark.timeout(240)
async def test_a_replica_cut_off_from_the_database_loses_its_shards_and_rejoins_later(
    tmp_path: Path,
    postgres: PostgresServer,
    postgres_url: str,
    replicas: list[ServerProc],
) -> None:
    proxy = PartitionProxy(postgres.port)
    try:
        a, b = await start_cut_off_pair(tmp_path, postgres.port, postgres_url, proxy, replicas)
        await _partitioned(a, b, proxy, postgres_url)
    finally:
        await proxy.close()


@pytest.mark.timeout(240)
async def test_a_job_ended_while_its_replica_was_cut_off_is_stopped_once_it_is_back(
    tmp_path: Path,
    postgres: PostgresServer,
    postgres_url: str,
    replicas: list[ServerProc],
    agents: list[AgentProc],
) -> None:
    proxy = PartitionProxy(postgres.port)
    try:
        # A short window on b: it takes the agent, which it cannot reach, for lost soon.
        a, b = await start_cut_off_pair(
            tmp_path, postgres.port, postgres_url, proxy, replicas, "--reconnect-window", "2"
        )
        agents.append(await start_agent(a.target, "stranded", tmp_path))
        async with stubs(a, b) as (stub_a, stub_b):
            [build_id] = await submit(stub_a, 1)  # owned by a, on the agent connected to a
            await all_steps_running(stub_a, build_id)
            pids = await step_pids((await job_ids(stub_a, [build_id]))[0])
            await _cut_off(a, proxy, postgres_url)
            await until_shares(postgres_url, {b.target: SHARDS})
            # b owns the build now; the agent is on a, which b cannot reach: its job ends.
            build = await until_terminal(stub_b, build_id)
            assert build.status == build_pb2.BUILD_STATUS_FAILED
            proxy.partitioned = False
            # a is back: its agent says Hello again, and a stops what b ended meanwhile.
            await wait_gone(pids, 60)
    finally:
        await proxy.close()


async def _cut_off(a: ServerProc, proxy: PartitionProxy, url: str) -> None:
    """Cut `a` off from the database: its connections closed from PostgreSQL's side,
    its reconnects refused by the proxy."""
    proxy.partitioned = True
    closed = await query(
        url,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        f" WHERE application_name = 'buildcontrol pid {a.process.pid}'",
    )
    assert closed and all(row[0] for row in closed)


async def _partitioned(a: ServerProc, b: ServerProc, proxy: PartitionProxy, url: str) -> None:
    async with stubs(a, b) as (stub_a, stub_b):
        # No agent has the label: a's builds wait QUEUED, owned by a.
        on_a = [(await stub_a.SubmitBuild(unrunnable())).build.build_id for _ in range(3)]
        await _cut_off(a, proxy, url)
        cut_at = time.monotonic()
        await until_shares(url, {b.target: SHARDS})
        takeover = time.monotonic() - cut_at
        print(f"shards of the cut-off replica taken over {takeover:.2f} s after the cut")
        assert takeover < 10.0  # lease 4 s + a round of 1 s, on a loaded machine
        # a takes no write: no submit, no cancel; b cancels a's builds.
        for call in (
            stub_a.SubmitBuild(build_of(1, "true", "replicas")),
            _cancelled(stub_a, on_a[0]),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await call
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        for build_id in on_a:
            await cancel(stub_b, build_id, "cancelled by b")
        proxy.partitioned = False
        await until_shares(url, {a.target: SHARDS // 2, b.target: SHARDS // 2})
        # a is a replica again: it reads b's cancels, and takes submits.
        for build_id in on_a:
            build = (
                await stub_a.GetBuild(build_control_pb2.GetBuildRequest(build_id=build_id))
            ).build
            assert build.status == build_pb2.BUILD_STATUS_CANCELED
            assert build.cancel.reason == "cancelled by b"
        again = (await stub_a.SubmitBuild(unrunnable())).build.build_id
        await cancel(stub_a, again, "after the partition")
        assert (await until_terminal(stub_b, again)).status == build_pb2.BUILD_STATUS_CANCELED
    log = (a.data_dir / "server.log").read_text()
    assert "leases of 32 shard(s) ran out" in log and f"lost {SHARDS // 2} shard(s)" in log


async def _cancelled(stub: Stub, build_id: str) -> None:
    await cancel(stub, build_id, "refused: cut off")
