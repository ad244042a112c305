"""The webhook delivery log through the admin RPCs and `buildcontrol webhooks`: what
each endpoint got, redelivery with the same idempotency key, admins only, and exact
statuses for bad input."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from buildcontrol_client.cli import register
from buildcontrol_proto.v1 import build_control_pb2

from tests.support.secure_servers import SecureServer, secure_server
from tests.support.webhook_receiver import Receiver

WAIT = 20.0
OK = build_control_pb2.WEBHOOK_DELIVERY_STATE_DELIVERED
REJECTED = build_control_pb2.WEBHOOK_DELIVERY_STATE_REJECTED


@pytest.fixture
async def receivers() -> AsyncIterator[tuple[Receiver, Receiver]]:
    good, refusing = await Receiver(200).start(), await Receiver(404).start()
    yield good, refusing
    await good.close()
    await refusing.close()


@pytest.fixture
async def hooked(
    tmp_path: Path, receivers: tuple[Receiver, Receiver]
) -> AsyncIterator[SecureServer]:
    urls = tuple(receiver.url for receiver in receivers)
    async with secure_server(tmp_path, webhook_urls=urls) as server:
        yield server


async def canceled_build(server: SecureServer) -> str:
    build = await server.submit("alice")  # no agent: QUEUED, and the cancel ends it
    request = build_control_pb2.CancelRequest(build_id=build.build_id)
    [_ async for _ in server.stub.Cancel(request, metadata=server.auth("alice"), timeout=WAIT)]
    await asyncio.wait_for(server.app.notifier.join(), WAIT)
    return build.build_id


async def listed(server: SecureServer) -> list[build_control_pb2.WebhookDelivery]:
    response = await server.stub.ListWebhookDeliveries(
        build_control_pb2.ListWebhookDeliveriesRequest(), metadata=server.auth("root")
    )
    return list(response.deliveries)


async def test_admin_sees_each_endpoints_delivery_and_redelivers_with_the_same_key(
    hooked: SecureServer, receivers: tuple[Receiver, Receiver]
) -> None:
    good, refusing = receivers
    build_id = await canceled_build(hooked)
    delivery_id = f"{build_id}.build.canceled"
    first = await good.next_request(WAIT)
    assert first.headers["x-buildcontrol-delivery"] == delivery_id
    rows = {row.endpoint: row for row in await listed(hooked)}
    assert {(r.delivery_id, r.build_id, r.event) for r in rows.values()} == {
        (delivery_id, build_id, "build.canceled")
    }
    assert (
        rows[hooked.app.notifier.labels[0]].state,
        rows[hooked.app.notifier.labels[0]].attempts,
    ) == (OK, 1)
    refused = rows[hooked.app.notifier.labels[1]]
    assert (refused.state, refused.last_status, refused.attempts) == (REJECTED, 404, 1)
    assert all("secret" not in row.endpoint for row in rows.values())

    response = await hooked.stub.RedeliverWebhook(
        build_control_pb2.RedeliverWebhookRequest(delivery_id=delivery_id),
        metadata=hooked.auth("root"),
    )
    assert list(response.endpoints) == hooked.app.notifier.labels
    again = await good.next_request(WAIT)
    assert again.headers["x-buildcontrol-delivery"] == delivery_id
    assert again.json() == first.json()
    await asyncio.wait_for(hooked.app.notifier.join(), WAIT)
    rows = {row.endpoint: row for row in await listed(hooked)}
    assert rows[hooked.app.notifier.labels[0]].attempts == 2
    assert len(refusing.requests) == 2


@pytest.mark.parametrize("who", ["alice", "victor"])
async def test_webhook_admin_rpcs_are_denied_to_non_admins_and_send_nothing(
    hooked: SecureServer, receivers: tuple[Receiver, Receiver], who: str
) -> None:
    good, _ = receivers
    build_id = await canceled_build(hooked)
    before = len(good.requests)
    with pytest.raises(grpc.aio.AioRpcError) as listing:
        await hooked.stub.ListWebhookDeliveries(
            build_control_pb2.ListWebhookDeliveriesRequest(), metadata=hooked.auth(who)
        )
    assert listing.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as redelivery:
        await hooked.stub.RedeliverWebhook(
            build_control_pb2.RedeliverWebhookRequest(delivery_id=f"{build_id}.build.canceled"),
            metadata=hooked.auth(who),
        )
    assert redelivery.value.code() == grpc.StatusCode.PERMISSION_DENIED
    await asyncio.wait_for(hooked.app.notifier.join(), WAIT)
    assert len(good.requests) == before
    assert [row.attempts for row in await listed(hooked)] == [1, 1]


@pytest.mark.parametrize(
    ("delivery_id", "code"),
    [
        ("b" + "0" * 20 + ".build.canceled", grpc.StatusCode.NOT_FOUND),
        ("not an id", grpc.StatusCode.INVALID_ARGUMENT),
        ("", grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
async def test_redeliver_of_a_bad_or_unknown_id_is_refused_and_sends_nothing(
    hooked: SecureServer,
    receivers: tuple[Receiver, Receiver],
    delivery_id: str,
    code: grpc.StatusCode,
) -> None:
    good, _ = receivers
    await canceled_build(hooked)
    before = len(good.requests)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await hooked.stub.RedeliverWebhook(
            build_control_pb2.RedeliverWebhookRequest(delivery_id=delivery_id),
            metadata=hooked.auth("root"),
        )
    assert refused.value.code() == code
    await asyncio.wait_for(hooked.app.notifier.join(), WAIT)
    assert len(good.requests) == before


@pytest.mark.parametrize("limit", [-1, 1001])
async def test_listing_with_a_limit_out_of_range_is_invalid_argument(
    hooked: SecureServer, limit: int
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await hooked.stub.ListWebhookDeliveries(
            build_control_pb2.ListWebhookDeliveriesRequest(limit=limit),
            metadata=hooked.auth("root"),
        )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def cli(server: SecureServer, tmp_path: Path, *argv: str) -> int:
    token_file = tmp_path / "root.token"
    token_file.write_text(server.tokens["root"])
    parser = argparse.ArgumentParser(prog="buildcontrol")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args([*argv, "--server", server.target, "--token-file", str(token_file)])
    code: int = await args.func(args)
    return code


async def test_cli_lists_deliveries_and_redelivers_one(
    hooked: SecureServer,
    receivers: tuple[Receiver, Receiver],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    good, _ = receivers
    build_id = await canceled_build(hooked)
    delivery_id = f"{build_id}.build.canceled"
    assert await cli(hooked, tmp_path, "webhooks", "list") == 0
    lines = capsys.readouterr().out.splitlines()
    labels = hooked.app.notifier.labels
    assert sorted(line.split()[:4] for line in lines) == [
        [delivery_id, labels[0], "DELIVERED", "attempts=1"],
        [delivery_id, labels[1], "REJECTED", "attempts=1"],
    ]
    before = len(good.requests)
    assert await cli(hooked, tmp_path, "webhooks", "redeliver", delivery_id) == 0
    assert capsys.readouterr().out.strip() == f"queued {delivery_id} for {', '.join(labels)}"
    assert (await good.next_request(WAIT)).headers["x-buildcontrol-delivery"] == delivery_id
    assert len(good.requests) == before + 1
