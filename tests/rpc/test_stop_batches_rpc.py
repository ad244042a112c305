"""Stops queued together for one agent leave as one StopJobs message when the agent's
Hello says it takes them (AGENT_FEATURE_STOP_BATCHES), in order and each exactly once;
an agent of the base protocol still gets one StopJob per stop."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from buildcontrol_proto.v1 import agent_pb2, build_control_pb2, build_pb2
from buildcontrol_server.agents.hub import AgentSession
from buildcontrol_server.domain.agent_commands import ReportsCommittedCommand, StopCommand
from buildcontrol_server.rpc import agent_service
from prometheus_client import REGISTRY

from tests.support.agent_peer import AgentPeer
from tests.support.build_calls import rest_of, settled, submit, wait_status
from tests.support.servers import Running

BATCHES = (agent_pb2.AGENT_FEATURE_STOP_BATCHES,)
WAIT = 20.0


async def _running(server: Running, count: int, features: tuple[Any, ...]) -> AgentPeer:
    """`count` running one-job builds of pipeline "nightly", all on agent a1."""
    agent = AgentPeer(server.target, "a1", capacity=count, features=features)
    await agent.connect()
    builds = [await submit(server, name="nightly") for _ in range(count)]
    for _ in builds:
        await agent.take_job()
    await asyncio.gather(*(settled(server, b.build_id, 1) for b in builds))
    return agent


def _batched() -> float:
    return REGISTRY.get_sample_value("buildcontrol_stop_jobs_batched_total") or 0.0


def _session(server: Running) -> AgentSession:
    session = server.app.hub.session("a1")
    assert session is not None
    return session


def _stop(job_id: str) -> StopCommand:
    return StopCommand(
        build_id="b1", job_id=job_id, agent_id="a1", reason="r", grace_period=0, deadline=0
    )


async def _messages(agent: AgentPeer, stops: int) -> list[agent_pb2.ConnectResponse]:
    """The server's messages until `stops` stops arrived (StopJob or StopJobs)."""
    messages: list[agent_pb2.ConnectResponse] = []
    while stops > 0:
        message = await agent.next()
        kind = message.WhichOneof("event")
        stops -= len(message.stop_jobs.stops) if kind == "stop_jobs" else kind == "stop_job"
        messages.append(message)
    return messages


def _shape(messages: list[agent_pb2.ConnectResponse]) -> list[Any]:
    """Each message as its kind and what it names: a stop's job, a batch's jobs."""
    shape: list[Any] = []
    for message in messages:
        kind = message.WhichOneof("event")
        if kind == "stop_jobs":
            shape.append([stop.job_id for stop in message.stop_jobs.stops])
        elif kind == "stop_job":
            shape.append(message.stop_job.job_id)
        else:
            shape.append(kind)
    return shape


async def test_stops_queued_together_leave_as_one_message_in_order(server: Running) -> None:
    agent = AgentPeer(server.target, "a1", features=BATCHES)
    await agent.connect()
    session = _session(server)
    batched = _batched()
    # Queued in one go, as a batch's commit queues them: the writer finds them together.
    for command in (
        _stop("j1"), _stop("j2"), _stop("j3"),
        ReportsCommittedCommand(("r1",)),
        _stop("j4"),
    ):  # fmt: skip
        session.send(command)
    messages = await _messages(agent, 4)
    # A non-stop between them ends the batch: nothing overtakes anything.
    assert _shape(messages) == [["j1", "j2", "j3"], "reports_committed", "j4"]
    batch = messages[0].stop_jobs.stops[0]
    assert (batch.build_id, batch.reason, batch.grace_period.seconds) == ("b1", "r", 0)
    assert _batched() - batched == 3
    await agent.leave()


async def test_a_batch_holds_at_most_stop_batch_max_stops(
    server: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(agent_service, "STOP_BATCH_MAX", 2)
    agent = AgentPeer(server.target, "a1", features=BATCHES)
    await agent.connect()
    session = _session(server)
    for job in ("j1", "j2", "j3", "j4", "j5"):
        session.send(_stop(job))
    assert _shape(await _messages(agent, 5)) == [["j1", "j2"], ["j3", "j4"], "j5"]
    await agent.leave()


async def test_an_agent_of_the_base_protocol_gets_a_stop_job_per_stop(server: Running) -> None:
    agent = AgentPeer(server.target, "a1")
    await agent.connect()
    session = _session(server)
    batched = _batched()
    for job in ("j1", "j2", "j3"):
        session.send(_stop(job))
    assert _shape(await _messages(agent, 3)) == ["j1", "j2", "j3"]
    assert _batched() == batched
    await agent.leave()


@pytest.mark.parametrize("features", [BATCHES, ()], ids=["batches", "base protocol"])
async def test_a_mass_cancel_reaches_every_job_once_either_way(
    server: Running, features: tuple[Any, ...]
) -> None:
    count = 12
    agent = await _running(server, count, features)
    stream = server.stub.CancelBuilds(
        build_control_pb2.CancelBuildsRequest(pipeline="nightly", reason="bad tag"), timeout=WAIT
    )
    messages = await _messages(agent, count)
    kinds = {message.WhichOneof("event") for message in messages}
    # A batch's commit queues its stops together: they leave as one message.
    assert kinds <= {"stop_jobs", "stop_job"} and ("stop_jobs" in kinds) == bool(features)
    stops = [
        stop
        for message in messages
        for stop in (
            message.stop_jobs.stops if message.HasField("stop_jobs") else [message.stop_job]
        )
    ]
    assert len({stop.job_id for stop in stops}) == len(stops) == count
    for stop in stops:
        assert stop.reason == "bad tag"
        agent.stopped(stop.build_id, stop.job_id)
    rest = await rest_of(stream)
    assert (rest[-1].summary.matched, rest[-1].summary.canceled) == (count, count)
    for stop in stops:
        await wait_status(server, stop.build_id, build_pb2.BUILD_STATUS_CANCELED)
    await agent.leave()
