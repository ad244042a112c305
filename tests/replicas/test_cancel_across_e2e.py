"""Cancels that span replicas: one CancelBuilds on either replica cancels the builds
of both, and a Cancel sent to the replica that does not own the build streams the
events the owner's stream would (accepted, each job as it stops, the end)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from buildcontrol_proto.v1 import build_control_pb2, build_pb2

from tests.replicas.replicas import (
    StartTwo,
    Stub,
    agent_on_each,
    cancel_events,
    job_ids,
    running_on_both,
    stubs,
    submit,
    unrunnable,
)
from tests.support.build_waits import all_steps_running, until_terminal
from tests.support.processes import AgentProc, wait_gone

CANCELED = build_pb2.BUILD_STATUS_CANCELED


async def _cancel_builds(
    stub: Stub, request: build_control_pb2.CancelBuildsRequest
) -> list[build_control_pb2.CancelBuildsResponse]:
    return [event async for event in stub.CancelBuilds(request, timeout=60)]


def _check_all_cancelled(
    events: list[build_control_pb2.CancelBuildsResponse], builds: list[str]
) -> None:
    accepted, *ends, summary = events
    assert accepted.WhichOneof("event") == "accepted"
    assert (accepted.accepted.matched, accepted.accepted.committed) == (len(builds), len(builds))
    assert {end.build.build_id: end.build.status for end in ends} == dict.fromkeys(builds, CANCELED)
    assert (summary.summary.matched, summary.summary.canceled) == (len(builds), len(builds))
    assert summary.summary.not_cancelable == summary.summary.not_found == 0


@pytest.mark.timeout(180)
async def test_one_cancel_builds_on_either_replica_cancels_the_builds_of_both(
    tmp_path: Path, postgres_url: str, two_replicas: StartTwo, agents: list[AgentProc]
) -> None:
    a, b = await two_replicas(postgres_url)
    await agent_on_each(tmp_path, agents, a, b)
    async with stubs(a, b) as (stub_a, stub_b):
        # Running builds of one pipeline on both replicas: a pipeline's cancel on b.
        running = await running_on_both(stub_a, stub_b, 2)
        request = build_control_pb2.CancelBuildsRequest(pipeline="replicas", reason="all")
        _check_all_cancelled(await _cancel_builds(stub_b, request), running.builds)
        await wait_gone(running.pids, 30)
        # By ids, on a: queued builds of both replicas.
        queued = [
            (await stub.SubmitBuild(unrunnable())).build.build_id
            for stub in (stub_a, stub_a, stub_b, stub_b)
        ]
        request = build_control_pb2.CancelBuildsRequest(reason="by ids")
        request.ids.build_ids.extend(queued)
        _check_all_cancelled(await _cancel_builds(stub_a, request), queued)
        for build_id in running.builds + queued:
            assert (await until_terminal(stub_b, build_id)).status == CANCELED


@pytest.mark.timeout(180)
async def test_a_cancel_sent_to_the_non_owner_streams_the_events_of_the_owner(
    tmp_path: Path, postgres_url: str, two_replicas: StartTwo, agents: list[AgentProc]
) -> None:
    a, b = await two_replicas(postgres_url)
    await agent_on_each(tmp_path, agents, a)
    async with stubs(a, b) as (stub_a, stub_b):
        builds = await submit(stub_a, 2)  # owned by a, running on a's agent
        await asyncio.gather(*(all_steps_running(stub_a, x) for x in builds))
        jobs = await job_ids(stub_a, builds)
        owner, other = await asyncio.gather(
            cancel_events(stub_a, builds[0]), cancel_events(stub_b, builds[1])
        )
        for events, job_id in zip((owner, other), jobs, strict=True):
            assert [e.WhichOneof("event") for e in events] == [
                "accepted",
                "job_stopped",
                "finished",
            ]
            stopped = events[1].job_stopped
            assert stopped.job_id == job_id and stopped.status == build_pb2.JOB_STATUS_CANCELED
            assert stopped.outcome in (build_pb2.JOB_OUTCOME_GRACEFUL, build_pb2.JOB_OUTCOME_KILLED)
            assert events[-1].finished.status == CANCELED
