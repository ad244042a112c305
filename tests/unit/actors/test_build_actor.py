"""One BuildActor, driven command by command with a fake store and a fake AgentLink:
what it commits, what it hands the link, what its listeners hear, and in which order.
Fast (no server, no sockets); the rpc and e2e tests cover the same turns end to end."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from buildcontrol_server.actors import commands as cmd
from buildcontrol_server.actors.build_actor import BuildActor
from buildcontrol_server.actors.context import ActorContext
from buildcontrol_server.config import Settings
from buildcontrol_server.domain import submission
from buildcontrol_server.domain.errors import Unavailable
from buildcontrol_server.domain.events import (
    CancelAcceptedEvent,
    CancelEvent,
    CancelFinishedEvent,
    JobResult,
    JobStoppedReport,
)
from buildcontrol_server.domain.model import Build, CancelInfo
from buildcontrol_server.domain.states import BuildStatus, JobOutcome, JobStatus

from tests.unit.actors.fakes import FakeLink, FakeQueue, FakeRouter, FakeStore

WAIT = 10.0


@dataclass
class Driven:
    actor: BuildActor
    store: FakeStore
    link: FakeLink
    queue: FakeQueue
    router: FakeRouter

    @property
    def build(self) -> Build:
        return self.actor.build

    @property
    def job_id(self) -> str:
        return self.build.jobs()[0].job_id

    async def ask(self, command: cmd.Command) -> object:
        return await asyncio.wait_for(self.actor.ask(command), WAIT)


def a_build(*, jobs: int = 1) -> Build:
    steps = (submission.StepSpec("sleep 600"),)
    stage = submission.StageSpec(
        "s", tuple(submission.JobSpec(f"j{n}", steps) for n in range(jobs))
    )
    return submission.new_build(submission.PipelineSpec("p", (stage,)), time.time())


def settings(**overrides: object) -> Settings:
    base: dict[str, object] = {
        "data_dir": Path("unused"),
        "default_grace_period": 1.0,
        "stop_ack_timeout": 2.0,
    }
    base.update(overrides)
    return Settings(**base)  # type: ignore[arg-type]


@pytest.fixture
async def driven() -> AsyncIterator[Driven]:
    async with driving(a_build()) as one:
        yield one


class driving:
    """Start an actor on `build`; at the end shut it down if it is still running."""

    def __init__(self, build: Build, **overrides: object) -> None:
        store, link, queue, router = FakeStore(build), FakeLink(), FakeQueue(), FakeRouter()
        context = ActorContext(store.as_store(), link, queue, settings(**overrides))
        self.driven = Driven(BuildActor(build, context, router), store, link, queue, router)

    async def __aenter__(self) -> Driven:
        self.driven.actor.start(admitted=True)
        return self.driven

    async def __aexit__(self, *_: object) -> None:
        actor = self.driven.actor
        if not actor.closed:
            actor.tell(cmd.Shutdown())
        await asyncio.wait_for(actor.join(), WAIT)


def cancel(listener: asyncio.Queue[CancelEvent | None], force: bool = False) -> cmd.Cancel:
    info = CancelInfo("test", "tester", force, 1.0, time.time())
    return cmd.Cancel(info=info, listener=listener, received_at=time.perf_counter())


async def events(listener: asyncio.Queue[CancelEvent | None]) -> list[CancelEvent]:
    """Every event until the listener ends (None)."""
    seen: list[CancelEvent] = []
    while (event := await asyncio.wait_for(listener.get(), WAIT)) is not None:
        seen.append(event)
    return seen


async def assigned(driven: Driven, agent_id: str = "a1") -> str:
    job_id = driven.job_id
    assert await driven.ask(cmd.Assign(job_id=job_id, agent_id=agent_id)) is True
    return job_id


async def test_a_started_build_hands_its_ready_jobs_to_the_scheduler(driven: Driven) -> None:
    assert driven.queue.ready == [driven.job_id]


async def test_an_assignment_is_committed_then_handed_to_the_link(driven: Driven) -> None:
    job_id = await assigned(driven)
    assert driven.store.stored().job(job_id).status is JobStatus.ASSIGNED  # type: ignore[union-attr]
    [(agent_id, command)] = driven.link.assigned
    assert (agent_id, command.job_id, command.build_id) == ("a1", job_id, driven.build.build_id)


async def test_an_assignment_to_an_agent_away_stays_pending_not_lost(driven: Driven) -> None:
    driven.link.away.add("a1")
    job_id = await assigned(driven)
    assert driven.link.assigned == []
    assert [c.job_id for c in driven.link.pending] == [job_id]
    assert driven.store.stored().job(job_id).status is JobStatus.ASSIGNED  # type: ignore[union-attr]


async def test_a_cancel_commits_canceling_then_stops_the_job_stamped_with_the_request(
    driven: Driven,
) -> None:
    job_id = await assigned(driven)
    listener: asyncio.Queue[CancelEvent | None] = asyncio.Queue()
    command = cancel(listener)
    reply = await driven.ask(command)

    assert isinstance(reply, CancelAcceptedEvent) and reply.status is BuildStatus.CANCELING
    assert driven.store.stored().status is BuildStatus.CANCELING
    [stop] = driven.link.stops
    assert (stop.job_id, stop.agent_id) == (job_id, "a1")
    assert stop.requested_at == command.received_at
    # The stream's first event comes through the listener, like the rest.
    assert listener.get_nowait() == reply


async def test_the_agents_confirmation_ends_the_build_and_the_cancel_stream(
    driven: Driven,
) -> None:
    job_id = await assigned(driven)
    listener: asyncio.Queue[CancelEvent | None] = asyncio.Queue()
    await driven.ask(cancel(listener))
    report = JobStoppedReport(driven.build.build_id, job_id, JobOutcome.GRACEFUL, -15)
    await driven.ask(cmd.Report(agent_id="a1", report=report))

    accepted, stopped, finished = await events(listener)
    assert isinstance(accepted, CancelAcceptedEvent)
    assert stopped == JobResult(
        driven.build.build_id, job_id, JobStatus.CANCELED, JobOutcome.GRACEFUL
    )
    assert isinstance(finished, CancelFinishedEvent) and finished.status is BuildStatus.CANCELED
    assert driven.store.stored().status is BuildStatus.CANCELED
    await asyncio.wait_for(driven.router.gone.wait(), WAIT)  # the actor retired
    assert driven.actor.closed and driven.queue.dropped == [driven.build.build_id]


async def test_a_second_cancel_joins_the_first_and_sends_no_second_stop(
    driven: Driven,
) -> None:
    await assigned(driven)
    first: asyncio.Queue[CancelEvent | None] = asyncio.Queue()
    second: asyncio.Queue[CancelEvent | None] = asyncio.Queue()
    await driven.ask(cancel(first))
    commits = len(driven.store.commits)
    joined = await driven.ask(cancel(second))
    assert isinstance(joined, CancelAcceptedEvent) and joined.joined
    assert second.get_nowait() == joined
    assert len(driven.link.stops) == 1 and len(driven.store.commits) == commits


async def test_a_queued_build_is_canceled_at_once_with_nothing_to_stop(driven: Driven) -> None:
    listener: asyncio.Queue[CancelEvent | None] = asyncio.Queue()
    reply = await driven.ask(cancel(listener))
    assert isinstance(reply, CancelAcceptedEvent) and reply.status is BuildStatus.CANCELED
    assert driven.link.stops == []
    seen = await events(listener)
    assert isinstance(seen[-1], CancelFinishedEvent)
    assert driven.store.stored().jobs()[0].outcome is JobOutcome.NEVER_STARTED


async def test_an_unconfirmed_stop_is_forced_at_its_deadline_and_the_agent_is_suspect() -> None:
    # A deadline of 0.05 s; the test waits for the result, not for the time.
    async with driving(a_build(), default_grace_period=0.0, stop_ack_timeout=0.05) as driven:
        job_id = await assigned(driven)
        listener: asyncio.Queue[CancelEvent | None] = asyncio.Queue()
        await driven.ask(cancel(listener))
        _accepted, stopped, finished = await events(listener)
        assert stopped == JobResult(
            driven.build.build_id, job_id, JobStatus.CANCELED, JobOutcome.FORCED
        )
        assert isinstance(finished, CancelFinishedEvent)
        assert finished.status is BuildStatus.CANCELED
        assert driven.link.suspects == {"a1"}
        assert job_id in driven.link.unconfirmed  # its slot stays held until the agent says


async def test_a_failed_commit_answers_unavailable_and_sends_nothing(driven: Driven) -> None:
    job_id = await assigned(driven)
    before = driven.store.stored().status
    driven.store.failing = True
    listener: asyncio.Queue[CancelEvent | None] = asyncio.Queue()
    with pytest.raises(Unavailable):
        await driven.ask(cancel(listener))
    # Reloaded from the store: the build is as last committed, and nothing left.
    assert driven.build.status is before
    assert driven.build.job(job_id).status is JobStatus.ASSIGNED  # type: ignore[union-attr]
    assert driven.link.stops == [] and listener.empty()
    # The store is back: the same cancel goes through.
    driven.store.failing = False
    reply = await driven.ask(cancel(listener))
    assert isinstance(reply, CancelAcceptedEvent) and len(driven.link.stops) == 1


async def test_a_cancel_whose_commit_landed_although_it_failed_still_stops_the_job() -> None:
    # A deadline of 0.05 s: the stop the failed turn did not send is sent after the
    # read-back, and its deadline armed (else the build would stay CANCELING).
    async with driving(a_build(), default_grace_period=0.0, stop_ack_timeout=0.05) as driven:
        job_id = await assigned(driven)
        driven.store.reply_lost = True
        with pytest.raises(Unavailable):
            await driven.ask(cancel(asyncio.Queue()))
        driven.store.reply_lost = False
        assert [stop.job_id for stop in driven.link.stops] == [job_id]
        await asyncio.wait_for(driven.router.gone.wait(), WAIT)  # the deadline ended it
        stored = driven.store.stored()
        assert stored.status is BuildStatus.CANCELED
        assert stored.job(job_id).outcome is JobOutcome.FORCED  # type: ignore[union-attr]
        assert driven.link.suspects == {"a1"}


async def test_an_actor_restarted_after_such_a_commit_stops_the_job_once() -> None:
    async with driving(a_build()) as driven:
        job_id = await assigned(driven)
        driven.store.reply_lost = True
        driven.store.reads_failing = 2  # the read-back fails: the actor restarts
        with pytest.raises(Unavailable):
            await driven.ask(cancel(asyncio.Queue()))
        driven.store.reply_lost = False
        await asyncio.wait_for(driven.link.stopped.wait(), WAIT)
        assert driven.build.status is BuildStatus.CANCELING
        assert [stop.job_id for stop in driven.link.stops] == [job_id]
        # The agent confirms: the build ends, and nothing was sent twice.
        report = JobStoppedReport(driven.build.build_id, job_id, JobOutcome.GRACEFUL, -15)
        await driven.ask(cmd.Report(agent_id="a1", report=report))
        assert driven.store.stored().status is BuildStatus.CANCELED
        assert len(driven.link.stops) == 1


async def test_an_assignment_whose_commit_landed_unseen_stands_and_reaches_its_agent() -> None:
    # The turn's commit fails for the actor but is in the store. The assignment stands
    # (its slot held, its timeout armed), and the read-back hands the AssignJob on:
    # to a connected agent, and to one another replica holds (the outbox, where the
    # failed turn wrote nothing).
    for where in ("here", "elsewhere"):
        fast = {"default_grace_period": 0.0, "stop_ack_timeout": 0.05}
        async with driving(a_build(), job_timeout=0.05, **fast) as driven:
            if where == "elsewhere":
                driven.link.elsewhere.add("a1")
            driven.link.hold("a1", driven.job_id, driven.build.build_id)  # the scheduler's
            driven.store.reply_lost = True
            assert await driven.ask(cmd.Assign(job_id=driven.job_id, agent_id="a1")) is True
            driven.store.reply_lost = False
            job = driven.store.stored().job(driven.job_id)
            assert job is not None and job.status is JobStatus.ASSIGNED
            sent = driven.link.forwarded if where == "elsewhere" else driven.link.assigned
            assert len(sent) == 1, where
            assert driven.link.held == {driven.job_id: "a1"}, where
            await asyncio.wait_for(driven.router.gone.wait(), WAIT)  # its timeout ended it
            assert driven.store.stored().terminal, where
