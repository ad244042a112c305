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
from buildcontrol_server.domain.states import BuildStatus
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
        stops -= len(_stops_in([message]))
        messages.append(message)
    return messages


def _stops_in(messages: list[agent_pb2.ConnectResponse]) -> list[agent_pb2.StopJob]:
    """Every stop the messages carry, in order, whether one StopJob or a StopJobs."""
    stops: list[agent_pb2.StopJob] = []
    for message in messages:
        kind = message.WhichOneof("event")
        if kind == "stop_jobs":
            stops += message.stop_jobs.stops
        elif kind == "stop_job":
            stops.append(message.stop_job)
    return stops


async def _mass_cancel(
    server: Running, agent: AgentPeer, count: int
) -> tuple[Any, list[agent_pb2.ConnectResponse]]:
    """CancelBuilds of the `count` running builds; its stream, and the server's
    messages to `agent` up to the last of their stops."""
    stream = server.stub.CancelBuilds(
        build_control_pb2.CancelBuildsRequest(pipeline="nightly", reason="bad tag"), timeout=WAIT
    )
    return stream, await _messages(agent, count)


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
    stream, messages = await _mass_cancel(server, agent, count)
    kinds = {message.WhichOneof("event") for message in messages}
    # A batch's commit queues its stops together: they leave as one message.
    assert kinds <= {"stop_jobs", "stop_job"} and ("stop_jobs" in kinds) == bool(features)
    stops = _stops_in(messages)
    assert len({stop.job_id for stop in stops}) == len(stops) == count
    for stop in stops:
        assert stop.reason == "bad tag"
        agent.stopped(stop.build_id, stop.job_id)
    rest = await rest_of(stream)
    assert (rest[-1].summary.matched, rest[-1].summary.canceled) == (count, count)
    for stop in stops:
        await wait_status(server, stop.build_id, build_pb2.BUILD_STATUS_CANCELED)
    await agent.leave()


async def test_the_welcome_lists_the_feature_back_only_to_an_agent_that_has_it(
    server: Running,
) -> None:
    batching = AgentPeer(server.target, "a1", features=BATCHES)
    assert list((await batching.connect()).features) == list(BATCHES)
    base = AgentPeer(server.target, "a2")
    assert list((await base.connect()).features) == []
    await batching.leave()
    await base.leave()


def _stopped(stop: agent_pb2.StopJob, report_id: str) -> agent_pb2.JobStopped:
    return agent_pb2.JobStopped(
        build_id=stop.build_id,
        job_id=stop.job_id,
        outcome=build_pb2.JOB_OUTCOME_GRACEFUL,
        exit_code=143,
        report_id=report_id,
    )


async def test_one_jobs_stopped_applies_every_result_and_acknowledges_each(
    server: Running,
) -> None:
    count = 3
    agent = await _running(server, count, BATCHES)
    stream, messages = await _mass_cancel(server, agent, count)
    stops = _stops_in(messages)
    ids = [f"r{n}" for n in range(count)]
    agent.send(
        jobs_stopped=agent_pb2.JobsStopped(
            stopped=[_stopped(stop, rid) for stop, rid in zip(stops, ids, strict=True)]
        )
    )
    acknowledged: set[str] = set()
    while acknowledged != set(ids):
        acknowledged |= set((await agent.next("reports_committed")).reports_committed.report_ids)
    rest = await rest_of(stream)
    assert (rest[-1].summary.matched, rest[-1].summary.canceled) == (count, count)
    for stop in stops:
        build = await wait_status(server, stop.build_id, build_pb2.BUILD_STATUS_CANCELED)
        assert build.stages[0].jobs[0].outcome == build_pb2.JOB_OUTCOME_GRACEFUL
    await agent.leave()


@pytest.mark.parametrize("bad", ["empty", "one without a job id"])
async def test_a_bad_jobs_stopped_is_refused_whole_and_changes_nothing(
    server: Running, bad: str
) -> None:
    count = 2
    agent = await _running(server, count, BATCHES)
    stream, messages = await _mass_cancel(server, agent, count)
    stops = _stops_in(messages)
    stopped = [_stopped(stops[0], "r0"), _stopped(stops[1], "r1")]
    if bad == "empty":
        stopped = []
    else:
        stopped[1].job_id = ""
    before = [await server.app.store.get_build(stop.build_id) for stop in stops]
    agent.send(jobs_stopped=agent_pb2.JobsStopped(stopped=stopped))
    status, details = await agent.ended()
    assert status.name == "INVALID_ARGUMENT" and "jobs_stopped" in details, details
    for stop, earlier in zip(stops, before, strict=True):
        after = await server.app.store.get_build(stop.build_id)
        assert after is not None and earlier is not None
        # Neither result applied, the valid one included: both builds still CANCELING.
        assert (after.status, after.version) == (BuildStatus.CANCELING, earlier.version)
    stream.cancel()
