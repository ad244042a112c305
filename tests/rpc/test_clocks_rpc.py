"""Deadlines run on the monotonic clock; the wall clock is only stored and shown.
The server is given a wall clock the test steps by an hour (the monotonic clock is
the real one, which the event loop's timers run on). Timeouts that must survive a
restart count from stored wall times."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from buildcontrol_proto.v1 import build_control_pb2, build_pb2
from buildcontrol_server.app import Clocks
from prometheus_client import REGISTRY

from tests.support.agent_peer import AgentPeer
from tests.support.build_calls import rest_of, submit, wait_status
from tests.support.servers import Running, running_server

WAIT = 20.0
HOUR = 3600.0


class SteppedWallClock:
    """time.time() plus an offset the test sets (a clock step, or time passing)."""

    def __init__(self, offset: float = 0.0) -> None:
        self.offset = offset

    def __call__(self) -> float:
        return time.time() + self.offset


def cancel(server: Running, build_id: str) -> Any:
    request = build_control_pb2.CancelRequest(build_id=build_id, reason="clock test")
    return server.stub.Cancel(request, timeout=WAIT)


async def test_a_wall_clock_stepped_back_an_hour_does_not_hold_a_stop_past_its_deadline(
    tmp_path: Path,
) -> None:
    wall = SteppedWallClock()
    async with running_server(
        tmp_path / "data", clocks=Clocks(wall=wall), default_grace_period=1.0, stop_ack_timeout=1.0
    ) as server:
        agent = AgentPeer(server.target, "ignores-stops", capacity=1)
        await agent.connect()
        build = await submit(server, jobs=1)
        await agent.take_job()
        await wait_status(server, build.build_id, build_pb2.BUILD_STATUS_RUNNING)
        stream = cancel(server, build.build_id)
        assert (await stream.read()).WhichOneof("event") == "accepted"
        await agent.next("stop_job")  # ignored
        wall.offset = -HOUR
        # The deadline (2 s after the cancel) still passes 2 s later, not an hour later.
        finished = (await rest_of(stream))[-1].finished
        assert finished.status == build_pb2.BUILD_STATUS_CANCELED
        assert [j.outcome for j in finished.jobs] == [build_pb2.JOB_OUTCOME_FORCED]
        await agent.leave()


async def test_a_wall_clock_stepped_forward_an_hour_forces_no_stop_before_its_deadline(
    tmp_path: Path,
) -> None:
    wall = SteppedWallClock()
    async with running_server(
        tmp_path / "data", clocks=Clocks(wall=wall), stop_ack_timeout=60.0
    ) as server:
        agent = AgentPeer(server.target, "a1", capacity=2)
        await agent.connect()
        build = await submit(server, jobs=2)
        jobs = [(await agent.take_job()).job_id for _ in range(2)]
        await wait_status(server, build.build_id, build_pb2.BUILD_STATUS_RUNNING)
        stream = cancel(server, build.build_id)
        assert (await stream.read()).WhichOneof("event") == "accepted"
        for _ in jobs:
            await agent.next("stop_job")
        wall.offset = HOUR
        # The first job's end re-arms the stop timer for the second one: with the
        # deadline on the wall clock it would look an hour overdue and be FORCED.
        agent.stopped(build.build_id, jobs[0])
        first = await stream.read()
        assert first.WhichOneof("event") == "job_stopped" and first.job_stopped.job_id == jobs[0]
        agent.stopped(build.build_id, jobs[1])
        finished = (await rest_of(stream))[-1].finished
        assert [j.outcome for j in finished.jobs] == [build_pb2.JOB_OUTCOME_GRACEFUL] * 2
        await agent.leave()


async def test_the_stuck_cancel_age_comes_from_the_store_and_ignores_a_wall_clock_step(
    tmp_path: Path,
) -> None:
    wall = SteppedWallClock()
    async with running_server(
        tmp_path / "data", clocks=Clocks(wall=wall), stop_ack_timeout=60.0
    ) as server:
        agent = AgentPeer(server.target, "ignores-stops", capacity=1)
        await agent.connect()
        build = await submit(server, jobs=1)
        await agent.take_job()
        await wait_status(server, build.build_id, build_pb2.BUILD_STATUS_RUNNING)
        stream = cancel(server, build.build_id)
        assert (await stream.read()).WhichOneof("event") == "accepted"
        await agent.next("stop_job")
        await server.app.live_gauges.refresh()
        assert REGISTRY.get_sample_value("buildcontrol_builds_canceling") == 1
        wall.offset = HOUR
        await server.app.live_gauges.refresh()
        age = REGISTRY.get_sample_value("buildcontrol_oldest_canceling_age_seconds")
        assert age is not None and 0 < age < 60, "a clock step is not an hour of waiting"
        stream.cancel()
        await agent.leave()


async def test_a_job_timeout_counts_from_the_jobs_recorded_start_across_a_server_restart(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    async with running_server(data, job_timeout=30.0) as first:
        agent = AgentPeer(first.target, "a1", capacity=1)
        await agent.connect()
        build = await submit(first, jobs=1)
        job_id = (await agent.take_job()).job_id
        await wait_status(first, build.build_id, build_pb2.BUILD_STATUS_RUNNING)
    # The server is down while 29 of the job's 30 s pass.
    wall = SteppedWallClock(offset=29.0)
    async with running_server(data, clocks=Clocks(wall=wall), job_timeout=30.0) as second:
        again = AgentPeer(second.target, "a1", capacity=1)
        await again.connect(running=[(build.build_id, job_id)])
        stop = (await again.next("stop_job")).stop_job
        assert stop.job_id == job_id and stop.reason.startswith("timeout")
        again.stopped(build.build_id, job_id)
        done = await wait_status(second, build.build_id, build_pb2.BUILD_STATUS_CANCELED)
        assert done.cancel.reason.startswith("timeout")
        await again.leave()


async def test_a_stop_deadline_is_recomputed_after_a_restart_so_down_time_forces_nothing(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    options: dict[str, object] = {"default_grace_period": 1.0, "stop_ack_timeout": 2.0}
    async with running_server(data, **options) as first:
        agent = AgentPeer(first.target, "a1", capacity=1)
        await agent.connect()
        build = await submit(first, jobs=1)
        job_id = (await agent.take_job()).job_id
        await wait_status(first, build.build_id, build_pb2.BUILD_STATUS_RUNNING)
        stream = cancel(first, build.build_id)
        assert (await stream.read()).WhichOneof("event") == "accepted"
        await agent.next("stop_job")
        stream.cancel()
    # An hour down: far past the stop's deadline by the wall clock. The agent gets the
    # stop again when it reconnects, and its full budget to confirm it.
    wall = SteppedWallClock(offset=HOUR)
    async with running_server(data, clocks=Clocks(wall=wall), **options) as second:
        again = AgentPeer(second.target, "a1", capacity=1)
        await again.connect(running=[(build.build_id, job_id)])
        assert (await again.next("stop_job")).stop_job.job_id == job_id
        again.stopped(build.build_id, job_id)
        done = await wait_status(second, build.build_id, build_pb2.BUILD_STATUS_CANCELED)
        assert [j.outcome for j in done.stages[0].jobs] == [build_pb2.JOB_OUTCOME_GRACEFUL]
        await again.leave()
