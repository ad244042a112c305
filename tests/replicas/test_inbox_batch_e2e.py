"""The forwarded cancels of one inbox drain share the owner's commits: its drain gives
every row's cancel to its actor at once, so their writes meet in the group-commit
writer's one transaction, and N cancels sent to the replica that does not own their
builds cost the owner one commit, not N (a drain applying its rows one after another
made it 12 of 12). The owner is paused (SIGSTOP, well within its lease) while the
cancels are forwarded, so that one drain finds them all; its commits are counted by
its own metric, before and after."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import asyncpg
import pytest
from buildcontrol_proto.v1 import build_control_pb2, build_pb2
from buildcontrol_server.replicas.leases import shard_of
from google.protobuf.duration_pb2 import Duration

from tests.replicas.replicas import (
    SHARDS,
    StartTwo,
    agent_on_each,
    cancel_events,
    get_build,
    job_ids,
    stubs,
    submit,
    unrunnable,
    until_value,
)
from tests.support.build_waits import all_steps_running, until_terminal
from tests.support.metrics_scrape import delta, scrape
from tests.support.processes import AgentProc, step_pids, wait_gone

CANCELS = 12
COMMITS = "buildcontrol_store_commits_total"
INBOX_ROWS = "SELECT count(*) FROM build_inbox"
APPLIED = "buildcontrol_replica_inbox_applied_total"
UNREADABLE = "buildcontrol_replica_rows_unreadable_total"


@pytest.mark.timeout(180)
async def test_forwarded_cancels_of_one_drain_share_one_commit(
    postgres_url: str, two_replicas: StartTwo
) -> None:
    a, b = await two_replicas(postgres_url)
    async with stubs(a, b) as (stub_a, stub_b):
        # Owned by a and QUEUED (no agent has their label): a cancel is one write
        # each, straight to CANCELED, and nothing else commits on a meanwhile.
        builds = [(await stub_a.SubmitBuild(unrunnable())).build.build_id for _ in range(CANCELS)]
        before = await scrape(a.metrics_url)
        os.kill(a.process.pid, signal.SIGSTOP)
        try:
            cancels = [
                asyncio.ensure_future(cancel_events(stub_b, build_id)) for build_id in builds
            ]
            # Seen in the database: the owner is stopped, no event of its reaches here.
            await until_value(postgres_url, INBOX_ROWS, CANCELS, within=30)
        finally:
            os.kill(a.process.pid, signal.SIGCONT)
        streams = await asyncio.gather(*cancels)
        after = await scrape(a.metrics_url)
    for events in streams:
        assert [e.WhichOneof("event") for e in events] == ["accepted", "finished"]
        assert events[-1].finished.status == build_pb2.BUILD_STATUS_CANCELED
    commits = delta(before, after, COMMITS)
    assert commits <= 2, f"{commits} commits for {CANCELS} cancels of one drain"


@pytest.mark.timeout(180)
async def test_a_forwarded_cancel_is_applied_once_and_its_row_goes_before_the_build_ends(
    tmp_path: Path, postgres_url: str, two_replicas: StartTwo, agents: list[AgentProc]
) -> None:
    """A forwarded cancel's row is applied once and goes once applied, while its build
    still cancels (its step ignores SIGTERM, its grace is long): no later drain gives
    it to the actor again (a second apply of a cancel joins the first, and counts). A
    second cancel's row comes after it; once that row is gone too, every drain that
    could have seen the first has applied what it read (drains run one at a time)."""
    a, b = await two_replicas(postgres_url)
    await agent_on_each(tmp_path, agents, a, b)
    async with stubs(a, b) as (stub_a, stub_b):
        [build_id] = await submit(stub_a, 1, "trap '' TERM; sleep 600")
        await all_steps_running(stub_a, build_id)
        pids = {pid for job in await job_ids(stub_a, [build_id]) for pid in await step_pids(job)}
        queued = (await stub_a.SubmitBuild(unrunnable())).build.build_id
        before = await scrape(a.metrics_url)
        request = build_control_pb2.CancelRequest(
            build_id=build_id, reason="TERM ignored", grace_period=Duration(seconds=120)
        )
        stream = stub_b.Cancel(request, timeout=60)
        first = await anext(aiter(stream))
        assert first.accepted.status == build_pb2.BUILD_STATUS_CANCELING
        events = await cancel_events(stub_b, queued)
        assert events[-1].finished.status == build_pb2.BUILD_STATUS_CANCELED
        await until_value(postgres_url, INBOX_ROWS, 0, within=10)
        after = await scrape(a.metrics_url)
        assert delta(before, after, APPLIED) == 2
        assert (await get_build(stub_a, build_id)).status == build_pb2.BUILD_STATUS_CANCELING
        stream.cancel()
        force = build_control_pb2.CancelRequest(build_id=build_id, reason="end it", force=True)
        async for _ in stub_a.Cancel(force, timeout=60):
            pass
        assert (await until_terminal(stub_a, build_id)).status == build_pb2.BUILD_STATUS_CANCELED
        await wait_gone(pids, 30)


BAD_ROW = (
    "WITH w AS (INSERT INTO build_inbox (build_id, shard, kind, body) VALUES ($1, $2, $3, $4))"
    " SELECT pg_notify('buildcontrol_inbox', $2::text)"
)


@pytest.mark.timeout(180)
async def test_inbox_rows_that_cannot_be_read_are_deleted_and_hold_no_cancel_back(
    postgres_url: str, two_replicas: StartTwo
) -> None:
    """Rows another version wrote in a shape this one cannot read (not JSON, a field
    missing, a report of a type it does not know) for a build that stays live: each is
    deleted with an error counted, and a forwarded cancel of another build read with
    them is applied and its row deleted. Before, such a row failed every drain while
    its build lived, and no row read with it was ever deleted (applied again each
    second instead)."""
    a, b = await two_replicas(postgres_url)
    async with stubs(a, b) as (stub_a, stub_b):
        waiting = (await stub_a.SubmitBuild(unrunnable())).build.build_id
        cancelled = (await stub_a.SubmitBuild(unrunnable())).build.build_id
        before = await scrape(a.metrics_url)
        connection = await asyncpg.connect(postgres_url)
        try:
            for kind, body in (
                ("cancel", "not json"),
                ("hello", '{"agent_id": "agent-a"}'),
                ("progress", '{"type": "JobTeleported", "agent_id": "x", "build_id": "b"}'),
            ):
                await connection.execute(BAD_ROW, waiting, shard_of(waiting, SHARDS), kind, body)
        finally:
            await connection.close()
        events = await cancel_events(stub_b, cancelled)
        assert events[-1].finished.status == build_pb2.BUILD_STATUS_CANCELED
        await until_value(postgres_url, INBOX_ROWS, 0, within=10)
        after = await scrape(a.metrics_url)
        assert (await get_build(stub_a, waiting)).status == build_pb2.BUILD_STATUS_QUEUED
    assert delta(before, after, UNREADABLE, table="build_inbox") == 3
