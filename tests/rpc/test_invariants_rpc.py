"""The invariant auditor finds each kind of violation in a real server, counts it and
logs it with the build. (Every other rpc test ends with the auditor finding nothing:
see running_server in conftest.py.) These tests break the invariants on purpose,
from inside the server, so they run without the end-of-test audit."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from buildcontrol_proto.v1 import build_control_pb2, build_pb2
from buildcontrol_server.actors import commands as cmd
from prometheus_client import REGISTRY

from tests.support.agent_peer import AgentPeer
from tests.support.build_calls import submit, wait_status
from tests.support.servers import running_server
from tests.support.store_faults import StoreFaults

WAIT = 20.0


def violations_counted(invariant: str) -> float:
    value = REGISTRY.get_sample_value(
        "buildcontrol_invariant_violations_total", {"invariant": invariant}
    )
    return value or 0.0


class ErrorLines(logging.Handler):
    """ERROR lines of the auditor, each set as an event the test can wait for."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.lines: list[str] = []
        self.logged = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())
        self.logged.set()


async def test_the_auditor_finds_a_live_build_whose_actor_is_gone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with running_server(tmp_path / "data", audit=False) as server:
        build = await submit(server, jobs=1, labels={"pool": "nobody"})
        assert await server.app.auditor.check() == []
        actor = server.app.registry.get(build.build_id)
        assert actor is not None
        # The actor stops while its build stays QUEUED in the store (what a dying
        # actor looked like before supervision).
        await actor.ask(cmd.Shutdown())
        await actor.join()
        before = violations_counted("build_has_actor")
        found = await server.app.auditor.check(confirm_after=0.01)
        assert [(v.invariant, v.build_id) for v in found] == [("build_has_actor", build.build_id)]
        assert violations_counted("build_has_actor") == before + 1
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert any(build.build_id in r.getMessage() for r in errors)


async def test_the_auditor_finds_a_stopping_job_without_deadline_or_stop(tmp_path: Path) -> None:
    async with running_server(tmp_path / "data", audit=False, stop_ack_timeout=60.0) as server:
        agent = AgentPeer(server.target, "ignores-stops", capacity=1)
        await agent.connect()
        build = await submit(server, jobs=1)
        job_id = (await agent.take_job()).job_id
        await wait_status(server, build.build_id, build_pb2.BUILD_STATUS_RUNNING)
        stream = server.stub.Cancel(
            build_control_pb2.CancelRequest(build_id=build.build_id, reason="audit"), timeout=WAIT
        )
        assert (await stream.read()).WhichOneof("event") == "accepted"
        await agent.next("stop_job")
        assert await server.app.auditor.check() == []
        actor = server.app.registry.get(build.build_id)
        assert actor is not None
        # Between two turns of the actor: forget the deadline and the stop sent.
        actor._timers.job_ended(job_id)
        actor._stop_sent.clear()
        found = await server.app.auditor.check(confirm_after=0.01)
        assert sorted((v.invariant, v.subject) for v in found) == [
            ("canceling_stops_sent", job_id),
            ("stopping_has_deadline", job_id),
        ]
        stream.cancel()
        await agent.leave()


async def test_the_auditor_checks_a_busy_actor_in_its_turn_not_halfway_through_one(
    tmp_path: Path,
) -> None:
    async with running_server(tmp_path / "data", audit=False, stop_ack_timeout=60.0) as server:
        faults = StoreFaults(server.app.store)
        agent = AgentPeer(server.target, "ignores-stops", capacity=1)
        await agent.connect()
        build = await submit(server, jobs=1)
        await agent.take_job()
        await wait_status(server, build.build_id, build_pb2.BUILD_STATUS_RUNNING)
        actor = server.app.registry.get(build.build_id)
        assert actor is not None and actor.idle
        inspected = asyncio.Event()
        tell = actor.tell

        def tell_and_note(command: cmd.Command) -> None:
            tell(command)
            if isinstance(command, cmd.Inspect):
                inspected.set()

        actor.tell = tell_and_note  # type: ignore[method-assign]
        # Halfway through the cancel turn: the job is STOPPING in the actor's copy, its
        # CANCELING write waits, no stop deadline is armed and no StopJob handed out.
        faults.hold_writes()
        stream = server.stub.Cancel(
            build_control_pb2.CancelRequest(build_id=build.build_id, reason="audit"), timeout=WAIT
        )
        try:
            await faults.held(1)
            assert not actor.idle
            check = asyncio.create_task(server.app.auditor.check(confirm_after=0.01))
            await asyncio.wait_for(inspected.wait(), WAIT)
        finally:
            faults.release()
        assert await asyncio.wait_for(check, WAIT) == []
        assert (await stream.read()).WhichOneof("event") == "accepted"
        await agent.next("stop_job")
        assert await server.app.auditor.check() == []
        stream.cancel()
        await agent.leave()


async def test_the_auditor_finds_a_job_held_twice_and_an_agent_over_capacity(
    tmp_path: Path,
) -> None:
    async with running_server(tmp_path / "data", audit=False) as server:
        agent = AgentPeer(server.target, "a1", capacity=1)
        await agent.connect()
        hub = server.app.hub
        hub.hold("a1", "j1", "b1")
        hub.hold("a1", "j2", "b1")
        hub.hold("a2", "j1", "b1")
        found = await server.app.auditor.check(confirm_after=0.01)
        assert sorted((v.invariant, v.subject) for v in found) == [
            ("agent_within_capacity", "a1"),
            ("job_held_once", "j1"),
            ("job_held_once", "j1"),
        ]
        for agent_id, job_id in (("a1", "j1"), ("a1", "j2"), ("a2", "j1")):
            hub.release(agent_id, job_id)
        assert await server.app.auditor.check() == []
        await agent.leave()


async def test_the_server_audits_by_itself_every_audit_interval(tmp_path: Path) -> None:
    errors = ErrorLines()
    logging.getLogger("buildcontrol_server.observability.invariants").addHandler(errors)
    try:
        async with running_server(tmp_path / "data", audit=False, audit_interval=0.2) as server:
            build = await submit(server, jobs=1, labels={"pool": "nobody"})
            actor = server.app.registry.get(build.build_id)
            assert actor is not None
            await actor.ask(cmd.Shutdown())
            await asyncio.wait_for(errors.logged.wait(), WAIT)
            assert any(build.build_id in line for line in errors.lines)
    finally:
        logging.getLogger("buildcontrol_server.observability.invariants").removeHandler(errors)


async def test_the_canceling_gauges_still_count_a_build_whose_actor_is_gone(tmp_path: Path) -> None:
    async with running_server(tmp_path / "data", audit=False, stop_ack_timeout=60.0) as server:
        agent = AgentPeer(server.target, "ignores-stops", capacity=1)
        await agent.connect()
        build = await submit(server, jobs=1)
        await agent.take_job()
        await wait_status(server, build.build_id, build_pb2.BUILD_STATUS_RUNNING)
        stream = server.stub.Cancel(
            build_control_pb2.CancelRequest(build_id=build.build_id, reason="gone"), timeout=WAIT
        )
        assert (await stream.read()).WhichOneof("event") == "accepted"
        actor = server.app.registry.get(build.build_id)
        assert actor is not None
        await actor.ask(cmd.Shutdown())
        await actor.join()
        assert server.app.registry.get(build.build_id) is None
        await server.app.live_gauges.refresh()
        assert REGISTRY.get_sample_value("buildcontrol_builds_canceling") == 1
        age = REGISTRY.get_sample_value("buildcontrol_oldest_canceling_age_seconds")
        assert age is not None and age > 0
        stream.cancel()
        await agent.leave()
