"""The webhook events (build.canceled, build.finished, cancel.accepted, job.stopped),
each chosen per endpoint: a real server with real receivers on 127.0.0.1 and a
scripted agent. Each event reaches exactly the endpoints that chose it, signed for
the one with a secret; a receiver that does not answer never holds up a cancel; and
what a receiver that is down missed waits in the outbox for the next start."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from buildcontrol_proto.v1 import build_control_pb2, build_pb2
from buildcontrol_server.domain.deliveries import WebhookEvent, endpoint_of

from tests.support.agent_peer import AgentPeer
from tests.support.build_calls import settled
from tests.support.pipelines import pipeline
from tests.support.servers import Running, running_server
from tests.support.webhook_receiver import MakeReceiver, Receiver, Request

from .signatures import verify_as_the_docs_say

EVERY_EVENT = tuple(WebhookEvent)
SECRET = b"events-secret"
WAIT = 10.0


def chose(position: int, *events: WebhookEvent) -> tuple[tuple[int, WebhookEvent], ...]:
    """The --webhook-event values that give webhook `position` these events."""
    return tuple((position, event) for event in events)


def seen(receiver: Receiver) -> list[tuple[str, str]]:
    """(event, delivery id) of every request `receiver` got, in order."""
    return [(r.json()["event"], r.headers["x-buildcontrol-delivery"]) for r in receiver.requests]


@asynccontextmanager
async def agent_on(server: Running) -> AsyncIterator[AgentPeer]:
    agent = AgentPeer(server.target, "a1", capacity=2)
    await agent.connect()
    try:
        yield agent
    finally:
        await agent.leave()


async def run_to_success(server: Running, agent: AgentPeer) -> tuple[str, str]:
    """A build whose one job succeeds: (build id, job id) once it is SUCCEEDED."""
    build_id = (await server.stub.SubmitBuild(pipeline())).build.build_id
    job = await agent.take_job()
    await settled(server, build_id, 1)
    watch = server.stub.WatchBuild(build_control_pb2.WatchBuildRequest(build_id=build_id))
    agent.finished(build_id, job.job_id)
    async for event in watch:
        if event.WhichOneof("event") == "finished":
            assert event.finished.status == build_pb2.BUILD_STATUS_SUCCEEDED
            break
    return build_id, job.job_id


async def cancel_running(server: Running, agent: AgentPeer) -> tuple[str, str]:
    """A running build cancelled and stopped gracefully: (build id, job id) once the
    Cancel stream said CANCELED."""
    build_id = (await server.stub.SubmitBuild(pipeline())).build.build_id
    job = await agent.take_job()
    await settled(server, build_id, 1)

    async def confirm() -> None:
        stop = (await agent.next("stop_job")).stop_job
        agent.stopped(stop.build_id, stop.job_id)

    confirming = asyncio.create_task(confirm())
    request = build_control_pb2.CancelRequest(build_id=build_id, reason="wrong branch")
    messages = [m async for m in server.stub.Cancel(request, timeout=WAIT)]
    await asyncio.wait_for(confirming, WAIT)
    assert messages[-1].finished.status == build_pb2.BUILD_STATUS_CANCELED
    return build_id, job.job_id


def assert_signed(request: Request) -> None:
    signature = request.headers.get("x-buildcontrol-signature-256")
    assert verify_as_the_docs_say(SECRET, request.body, signature)


async def test_each_event_reaches_exactly_the_webhooks_that_chose_it_signed(
    tmp_path: Path, receiver_factory: MakeReceiver
) -> None:
    default, every, finished_only = [await receiver_factory(200) for _ in range(3)]
    secret = tmp_path / "hook.secret"
    secret.write_bytes(SECRET + b"\n")
    async with running_server(
        tmp_path / "data",
        webhook_urls=(default.url, every.url, finished_only.url),
        # Webhook 0 names no event (build.canceled, as before events could be chosen).
        webhook_events=chose(1, *EVERY_EVENT) + chose(2, WebhookEvent.BUILD_FINISHED),
        webhook_secrets=(f"1=file:{secret}",),
    ) as server:
        async with agent_on(server) as agent:
            succeeded, succeeded_job = await run_to_success(server, agent)
            canceled, stopped_job = await cancel_running(server, agent)
        await asyncio.wait_for(server.app.notifier.join(), WAIT)

    assert seen(default) == [("build.canceled", f"{canceled}.build.canceled")]
    assert seen(finished_only) == [
        ("build.finished", f"{succeeded}.build.finished"),
        ("build.finished", f"{canceled}.build.finished"),
    ]
    assert seen(every) == [
        ("build.finished", f"{succeeded}.build.finished"),
        ("cancel.accepted", f"{canceled}.cancel.accepted"),
        ("job.stopped", f"{stopped_job}.job.stopped"),
        ("build.canceled", f"{canceled}.build.canceled"),
        ("build.finished", f"{canceled}.build.finished"),
    ]
    for request in every.requests:
        assert_signed(request)
        assert request.headers["x-buildcontrol-event"] == request.json()["event"]
    for request in default.requests + finished_only.requests:
        assert "x-buildcontrol-signature-256" not in request.headers  # no secret for them
        assert request.headers["x-buildcontrol-event"] == request.json()["event"]
    bodies = {r.headers["x-buildcontrol-delivery"]: r.json() for r in every.requests}
    assert_bodies(bodies, succeeded, succeeded_job, canceled, stopped_job)
    # The same event is the same body at every endpoint that gets it.
    assert finished_only.requests[1].body == every.requests[4].body
    assert default.requests[0].body == every.requests[3].body


def assert_bodies(
    bodies: dict[str, Any], succeeded: str, succeeded_job: str, canceled: str, stopped_job: str
) -> None:
    """What docs/webhooks.md says each event carries."""
    done = bodies[f"{succeeded}.build.finished"]
    assert (done["event"], done["build_id"], set(done)) == (
        "build.finished",
        succeeded,
        {"event", "build_id", "build"},
    )
    assert (done["build"]["status"], done["build"]["cancel"]) == ("SUCCEEDED", None)
    [job] = done["build"]["jobs"]
    assert (job["job_id"], job["status"], job["outcome"]) == (succeeded_job, "SUCCEEDED", None)

    accepted = bodies[f"{canceled}.cancel.accepted"]["cancel"]
    assert (accepted["build_id"], accepted["status"], accepted["reason"]) == (
        canceled,
        "CANCELING",
        "wrong branch",
    )
    assert (accepted["force"], accepted["jobs_stopping"], accepted["escalations"]) == (
        False,
        1,
        [],
    )

    stopped = bodies[f"{stopped_job}.job.stopped"]
    assert stopped["build_id"] == canceled
    job = stopped["job"]
    assert (job["build_id"], job["job_id"], job["agent_id"]) == (canceled, stopped_job, "a1")
    assert (job["status"], job["outcome"], job["exit_code"]) == ("CANCELED", "GRACEFUL", 143)
    assert job["reason"] == "wrong branch"

    record = bodies[f"{canceled}.build.canceled"]["record"]
    assert (record["status"], record["reason"]) == ("CANCELED", "wrong branch")
    ended = bodies[f"{canceled}.build.finished"]["build"]
    assert (ended["status"], ended["cancel"]["reason"]) == ("CANCELED", "wrong branch")
    assert ended["jobs"][0]["outcome"] == "GRACEFUL"


async def test_a_receiver_that_does_not_answer_never_holds_up_a_cancel(
    tmp_path: Path, receiver_factory: MakeReceiver
) -> None:
    stalled = await receiver_factory(200)
    stalled.hold = asyncio.Event()  # every answer waits until the test lets it go
    async with running_server(
        tmp_path / "data",
        webhook_urls=(stalled.url,),
        webhook_events=chose(0, *EVERY_EVENT),
        webhook_request_timeout=60.0,
    ) as server:
        async with agent_on(server) as agent:
            canceled, _ = await cancel_running(server, agent)
            # The cancel finished while its cancel.accepted still waits for an answer.
            first = await stalled.next_request()
            assert first.json()["event"] == "cancel.accepted"
            assert len(stalled.requests) == 1
            stalled.hold.set()
        await asyncio.wait_for(server.app.notifier.join(), WAIT)
    assert [event for event, _ in seen(stalled)] == [
        "cancel.accepted",
        "job.stopped",
        "build.canceled",
        "build.finished",
    ]
    assert all(r.json()["build_id"] == canceled for r in stalled.requests)


async def test_what_a_receiver_that_was_down_missed_goes_out_at_the_next_start(
    tmp_path: Path, receiver_factory: MakeReceiver
) -> None:
    receiver = await receiver_factory(503)
    hooks: dict[str, Any] = {
        "webhook_urls": (receiver.url,),
        "webhook_events": chose(0, *EVERY_EVENT),
        "webhook_max_attempts": 1,
        "webhook_breaker_threshold": 1_000,
    }
    async with running_server(tmp_path / "data", **hooks) as server:
        async with agent_on(server) as agent:
            await cancel_running(server, agent)
        await asyncio.wait_for(server.app.notifier.join(), WAIT)
        key = endpoint_of(0, receiver.url).key
        left = [queued.delivery_id for queued in await server.app.store.undelivered_webhooks(key)]
    refused = {r.headers["x-buildcontrol-delivery"]: r.body for r in receiver.requests}
    assert sorted(left) == sorted(refused) and len(left) == 4

    receiver.status = 200
    receiver.requests.clear()
    async with running_server(tmp_path / "data", **hooks) as restarted:
        await asyncio.wait_for(restarted.app.notifier.join(), WAIT)
        assert await restarted.app.store.undelivered_webhooks(key) == []
    # The same deliveries, byte for byte: a receiver can drop repeats by their id.
    assert {r.headers["x-buildcontrol-delivery"]: r.body for r in receiver.requests} == refused
    assert {json.loads(body)["event"] for body in refused.values()} == set(EVERY_EVENT)


@pytest.mark.parametrize(
    "subscribed", [(), (WebhookEvent.BUILD_CANCELED,)], ids=["none-chosen", "canceled-only"]
)
async def test_a_webhook_that_did_not_choose_an_event_gets_no_outbox_row_for_it(
    tmp_path: Path, receiver_factory: MakeReceiver, subscribed: tuple[WebhookEvent, ...]
) -> None:
    receiver = await receiver_factory(200)
    async with running_server(
        tmp_path / "data", webhook_urls=(receiver.url,), webhook_events=chose(0, *subscribed)
    ) as server:
        async with agent_on(server) as agent:
            await run_to_success(server, agent)
            canceled, _ = await cancel_running(server, agent)
        await asyncio.wait_for(server.app.notifier.join(), WAIT)
        listing = await server.app.store.webhook_deliveries(100)
    assert [row.delivery_id for row in listing] == [f"{canceled}.build.canceled"]
    assert seen(receiver) == [("build.canceled", f"{canceled}.build.canceled")]


async def test_a_stopped_job_is_redelivered_only_to_the_webhooks_that_had_it(
    tmp_path: Path, receiver_factory: MakeReceiver
) -> None:
    default, every = await receiver_factory(200), await receiver_factory(200)
    async with running_server(
        tmp_path / "data",
        webhook_urls=(default.url, every.url),
        webhook_events=chose(1, *EVERY_EVENT),
    ) as server:
        async with agent_on(server) as agent:
            _, stopped_job = await cancel_running(server, agent)
        await asyncio.wait_for(server.app.notifier.join(), WAIT)
        first = [r.body for r in every.requests if r.json()["event"] == "job.stopped"]

        delivery_id = f"{stopped_job}.job.stopped"
        request = build_control_pb2.RedeliverWebhookRequest(delivery_id=delivery_id)
        answer = await server.stub.RedeliverWebhook(request)
        await asyncio.wait_for(server.app.notifier.join(), WAIT)

    assert list(answer.endpoints) == [server.app.notifier.labels[1]]
    again = every.requests[-1]
    assert again.headers["x-buildcontrol-delivery"] == delivery_id and [again.body] == first
    assert [event for event, _ in seen(default)] == ["build.canceled"]  # never job.stopped
