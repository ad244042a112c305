"""Webhooks survive a crash: notifications queued for a receiver that is down are in
the outbox, so after SIGKILL and a restart with the receiver up every one arrives,
each with its idempotency key."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
from buildcontrol_proto.v1 import build_control_pb2, build_control_pb2_grpc, build_pb2

from tests.support.processes import start_server
from tests.support.webhook_receiver import Receiver

BUILDS = 30
WAIT = 20.0
# A bound on the restarted server's deliveries: 30 requests to a local receiver.
DELIVERED_WITHIN = 20.0


def queued_build() -> build_control_pb2.SubmitBuildRequest:
    # No agent has this label: the build stays QUEUED and a cancel ends it at once.
    job = build_control_pb2.JobSpec(
        name="j", labels={"pool": "nobody"}, steps=[build_control_pb2.StepSpec(command="true")]
    )
    stage = build_control_pb2.StageSpec(name="s", jobs=[job])
    return build_control_pb2.SubmitBuildRequest(pipeline="hooks", stages=[stage])


async def cancel_queued_builds(target: str) -> list[str]:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = build_control_pb2_grpc.BuildControlStub(channel)
        ids = []
        for _ in range(BUILDS):
            build = (await stub.SubmitBuild(queued_build(), timeout=WAIT)).build
            request = build_control_pb2.CancelRequest(build_id=build.build_id, reason="crash test")
            messages = [m async for m in stub.Cancel(request, timeout=WAIT)]
            # `finished` comes after the CANCELED commit, which carries the outbox row.
            assert messages[-1].finished.status == build_pb2.BUILD_STATUS_CANCELED
            ids.append(build.build_id)
        return ids


async def test_webhooks_queued_for_a_down_receiver_are_delivered_after_sigkill(
    tmp_path: Path,
) -> None:
    # "Down": every request fails (503) until the test brings it up; the URL stays the
    # same, so the restarted server knows it as the same endpoint.
    receiver = await Receiver(503).start()
    data = tmp_path / "data"
    hooks = ["--webhook-url", receiver.url, "--webhook-retry-delay", "0.01"]
    try:
        server = await start_server(data, *hooks)
        try:
            canceled = await cancel_queued_builds(server.target)
            await receiver.next_request(WAIT)  # the server was trying, and failing
        finally:
            await server.kill()
        receiver.status = 200
        while not receiver.arrived.empty():  # requests of the killed server
            receiver.arrived.get_nowait()
        restarted = await start_server(data, *hooks)
        try:
            seen: dict[str, str] = {}
            try:
                async with asyncio.timeout(DELIVERED_WITHIN):
                    while set(seen) != set(canceled):
                        request = await receiver.arrived.get()
                        assert request.headers["x-buildcontrol-event"] == "build.canceled"
                        build_id = request.json()["build_id"]
                        seen[build_id] = request.headers["x-buildcontrol-delivery"]
            except TimeoutError:
                raise AssertionError(
                    f"{len(seen)} of {BUILDS} webhooks delivered after the restart"
                ) from None
            assert seen == {build_id: f"{build_id}.build.canceled" for build_id in canceled}
        finally:
            assert await restarted.stop() == 0
    finally:
        await receiver.close()
