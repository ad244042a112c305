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

import pytest
from buildcontrol_proto.v1 import build_pb2

from tests.replicas.replicas import StartTwo, cancel_events, stubs, unrunnable, until_value
from tests.support.metrics_scrape import delta, scrape

CANCELS = 12
COMMITS = "buildcontrol_store_commits_total"
INBOX_ROWS = "SELECT count(*) FROM build_inbox"


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
