"""Results the reference agent keeps until the server acknowledges them, against the
real server (in process, 127.0.0.1:0) with real bash steps: the store fails while the
results are applied, and the agent's stream drops right after a Welcome while its
Hello's re-sent results are being applied. Each result must end committed as what the
agent reported (a graceful stop stays GRACEFUL, a success stays SUCCEEDED)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from buildcontrol_client import Agent, AgentOptions, BuildControlClient
from buildcontrol_client.backoff import BackoffPolicy
from buildcontrol_proto.v1 import build_control_pb2, build_pb2
from buildcontrol_server.domain.model import ChangeSet
from buildcontrol_server.domain.states import JobStatus
from buildcontrol_server.store.base import BuildStore

from tests.support.servers import Running, running_server
from tests.support.tcp_proxy import TcpProxy
from tests.unit.step_fifo import wait_until_ready

WAIT = 20.0


@pytest.fixture
def tmp_path_fifo(tmp_path: Path) -> Path:
    path = tmp_path / "ready"
    os.mkfifo(path)
    return path


class FailingCommits:
    """Makes the store fail the first `failures` commits that write a job into
    `status` (OSError, as a failing disk would); the one numbered `hold_at` first
    waits for `release` (so the test can act while it is being applied)."""

    def __init__(
        self, store: BuildStore, status: JobStatus, failures: int, hold_at: int | None = None
    ) -> None:
        self._commit = store.commit
        store.commit = self.commit  # type: ignore[method-assign]
        self._status = status
        self._failures = failures
        self._hold_at = hold_at
        self.failed = 0
        self.holding = asyncio.Event()
        self.release = asyncio.Event()
        self.all_failed = asyncio.Event()

    async def commit(self, changes: ChangeSet) -> None:
        writes = any(job.status is self._status for job, _ in changes.jobs.values())
        if writes and self.failed < self._failures:
            self.failed += 1
            if self.failed == self._hold_at:
                self.holding.set()
                await self.release.wait()
            if self.failed == self._failures:
                self.all_failed.set()
            raise OSError("injected: the disk is failing")
        await self._commit(changes)


@contextlib.asynccontextmanager
async def agent_through_proxy(server: Running) -> AsyncIterator[TcpProxy]:
    proxy = TcpProxy(int(server.target.rsplit(":", 1)[1]))
    target = await proxy.start()
    options = AgentOptions(backoff=BackoffPolicy(initial=0.02, maximum=0.1))
    agent = Agent(target, f"a-{uuid.uuid4().hex[:8]}", options=options)
    task = asyncio.create_task(agent.run())
    try:
        yield proxy
    finally:
        agent.request_shutdown("test over")
        await asyncio.wait_for(task, WAIT)
        await proxy.close()


def one_job(command: str) -> build_control_pb2.SubmitBuildRequest:
    request = build_control_pb2.SubmitBuildRequest(pipeline="results")
    request.stages.add(name="s").jobs.add(name="j").steps.add(command=command)
    return request


async def wait_terminal(client: BuildControlClient, build_id: str) -> build_pb2.Build:
    async for _ in client.watch(build_id):
        pass  # the watch ends when the build is terminal
    return await client.get(build_id)


async def test_a_success_whose_commits_fail_live_and_in_the_hello_still_ends_succeeded(
    tmp_path: Path,
) -> None:
    async with running_server(tmp_path / "data") as server:
        # The live JobFinished fails, then the Hello's re-sent one: a Welcome came
        # before the second failure, so an agent that took it as proof lost the result.
        faults = FailingCommits(server.app.store, JobStatus.SUCCEEDED, failures=2)
        async with (
            agent_through_proxy(server),
            BuildControlClient(server.target) as client,
        ):
            build = await client.submit(one_job("exit 0"))
            await asyncio.wait_for(faults.all_failed.wait(), WAIT)
            final = await asyncio.wait_for(wait_terminal(client, build.build_id), WAIT)
    assert final.status == build_pb2.BUILD_STATUS_SUCCEEDED
    job = final.stages[0].jobs[0]
    assert job.status == build_pb2.JOB_STATUS_SUCCEEDED
    assert job.outcome != build_pb2.JOB_OUTCOME_LOST


async def test_a_graceful_stop_survives_a_drop_after_welcome_while_its_failing_resend_applies(
    tmp_path: Path,
    tmp_path_fifo: Path,
) -> None:
    async with running_server(tmp_path / "data", default_grace_period=10.0) as server:
        # 1: the live JobStopped fails. 2: the Hello's re-sent one is held after the
        # Welcome went out, the stream is cut meanwhile, then it fails too.
        faults = FailingCommits(server.app.store, JobStatus.CANCELED, failures=2, hold_at=2)
        async with (
            agent_through_proxy(server) as proxy,
            BuildControlClient(server.target) as client,
        ):
            build = await client.submit(one_job(f"echo ready > {tmp_path_fifo}; sleep 600"))
            await wait_until_ready(tmp_path_fifo)
            canceled = asyncio.create_task(client.cancel_and_wait(build.build_id, reason="t"))
            await asyncio.wait_for(faults.holding.wait(), WAIT)
            proxy.cut()
            faults.release.set()
            finished = await asyncio.wait_for(canceled, WAIT)
    assert finished.status == build_pb2.BUILD_STATUS_CANCELED
    assert [job.outcome for job in finished.jobs] == [build_pb2.JOB_OUTCOME_GRACEFUL]
    assert faults.failed == 2 and proxy.connections >= 2  # reconnected after the cut
