"""The reference agent (in process) against the real server (in process, 127.0.0.1:0):
cleanup steps after a cancel, and a forced cancel that skips them. Real bash steps."""

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

from tests.support.servers import running_server
from tests.unit.step_fifo import wait_until_ready

WAIT = 20.0


@contextlib.asynccontextmanager
async def agent_and_client(data_dir: Path) -> AsyncIterator[BuildControlClient]:
    async with running_server(data_dir, default_grace_period=5.0) as server:
        options = AgentOptions(backoff=BackoffPolicy(initial=0.02, maximum=0.1))
        agent = Agent(server.target, f"a-{uuid.uuid4().hex[:8]}", options=options)
        task = asyncio.create_task(agent.run())
        try:
            async with BuildControlClient(server.target) as client:
                yield client
        finally:
            agent.request_shutdown("test over")
            await asyncio.wait_for(task, WAIT)


def pipeline_with_cleanup(ready: Path, cleaned: Path) -> build_control_pb2.SubmitBuildRequest:
    request = build_control_pb2.SubmitBuildRequest(pipeline="cleanup")
    job = request.stages.add(name="s").jobs.add(name="j")
    job.steps.add(command=f"echo ready > {ready}; sleep 600")
    job.steps.add(command="echo never")
    job.steps.add(command=f"echo cleaned > {cleaned}", run_on_cancel=True)
    return request


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "ready"
    os.mkfifo(path)
    return path


async def test_cleanup_step_runs_after_a_cancel_and_the_server_records_it(
    tmp_path: Path, fifo: Path
) -> None:
    cleaned = tmp_path / "cleaned"
    async with agent_and_client(tmp_path / "data") as client:
        build = await client.submit(pipeline_with_cleanup(fifo, cleaned))
        await wait_until_ready(fifo)

        finished = await asyncio.wait_for(
            client.cancel_and_wait(build.build_id, reason="test"), WAIT
        )
        final = await client.get(build.build_id)

    assert finished.status == build_pb2.BUILD_STATUS_CANCELED
    assert [job.outcome for job in finished.jobs] == [build_pb2.JOB_OUTCOME_GRACEFUL]
    steps = final.stages[0].jobs[0].steps
    assert [step.status for step in steps] == [
        build_pb2.STEP_STATUS_CANCELED,
        build_pb2.STEP_STATUS_CANCELED,
        build_pb2.STEP_STATUS_SUCCEEDED,
    ]
    assert steps[2].exit_code == 0
    assert cleaned.read_text() == "cleaned\n"


async def test_forced_cancel_skips_the_cleanup_step(tmp_path: Path, fifo: Path) -> None:
    cleaned = tmp_path / "cleaned"
    async with agent_and_client(tmp_path / "data") as client:
        build = await client.submit(pipeline_with_cleanup(fifo, cleaned))
        await wait_until_ready(fifo)

        finished = await asyncio.wait_for(
            client.cancel_and_wait(build.build_id, reason="test", force=True), WAIT
        )
        final = await client.get(build.build_id)

    assert [job.outcome for job in finished.jobs] == [build_pb2.JOB_OUTCOME_KILLED]
    steps = final.stages[0].jobs[0].steps
    assert all(step.status == build_pb2.STEP_STATUS_CANCELED for step in steps)
    assert not cleaned.exists()
