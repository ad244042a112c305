"""Audit and webhooks stay off the cancel path: a hanging and a failing webhook do not
slow cancels, every cancel is audited, and retries stop at their maximum."""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path

from buildcontrol_proto.v1 import build_control_pb2, build_pb2

from tests.support.agent_peer import AgentPeer
from tests.support.build_calls import settled
from tests.support.pipelines import pipeline
from tests.support.servers import Running, running_server
from tests.support.webhook_receiver import Receiver

CANCELS = 20
MAX_ATTEMPTS = 3


async def cancel_times(server: Running) -> tuple[list[float], list[str]]:
    """Cancel → CANCELED of running builds, one after another, in seconds."""
    agent = AgentPeer(server.target, "a1", capacity=CANCELS)
    await agent.connect()
    builds = [(await server.stub.SubmitBuild(pipeline())).build for _ in range(CANCELS)]
    jobs = {}
    for _ in builds:
        job = await agent.take_job()
        jobs[job.build_id] = job.job_id
    await asyncio.gather(*(settled(server, b.build_id, 1) for b in builds))

    async def confirm() -> None:
        while True:
            stop = (await agent.next("stop_job")).stop_job
            agent.stopped(stop.build_id, stop.job_id)

    confirmer = asyncio.create_task(confirm())
    times = []
    for build in builds:
        started = time.perf_counter()
        request = build_control_pb2.CancelRequest(build_id=build.build_id)
        messages = [m async for m in server.stub.Cancel(request, timeout=10)]
        times.append(time.perf_counter() - started)
        assert messages[-1].finished.status == build_pb2.BUILD_STATUS_CANCELED
    confirmer.cancel()
    await agent.leave()
    return times, [b.build_id for b in builds]


async def test_hanging_and_failing_webhooks_do_not_slow_cancels(tmp_path: Path) -> None:
    hanging = await Receiver(None).start()
    failing = await Receiver(500).start()
    try:
        async with running_server(
            tmp_path / "hooked",
            webhook_urls=(hanging.url, failing.url),
            webhook_max_attempts=MAX_ATTEMPTS,
            webhook_base_delay=0.01,
            webhook_request_timeout=0.1,
            # The breaker would stop the retries early; this test is about the retries.
            webhook_breaker_threshold=10_000,
        ) as hooked:
            with_hooks, canceled = await cancel_times(hooked)
            # A cancel that waited for a webhook would take at least its request
            # timeout (0.1 s: the receiver hangs), and its retries' too. How fast a
            # cancel is beside webhooks is the benchmarks' to measure, not a ratio here.
            median = statistics.median(with_hooks)
            assert median < 0.1, f"median cancel {median * 1000:.2f} ms with webhooks"
            effects = hooked.app.effects
            # Each record committed with its CANCELED write: no flush to wait for.
            audited = await hooked.app.store.audit_records(canceled)
            assert sorted(r.build_id for r in audited) == sorted(canceled)
            assert all(r.status.value == "CANCELED" and r.jobs for r in audited)
            await asyncio.wait_for(effects.notifier.join(), 30)
            per_build: dict[str, int] = {}
            for request in failing.requests:
                build_id = request.json()["build_id"]
                per_build[build_id] = per_build.get(build_id, 0) + 1
            assert per_build == dict.fromkeys(canceled, MAX_ATTEMPTS)
            assert len(hanging.requests) == CANCELS * MAX_ATTEMPTS
    finally:
        await hanging.close()
        await failing.close()
