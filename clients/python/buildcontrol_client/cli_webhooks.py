"""`buildcontrol webhooks list` and `buildcontrol webhooks redeliver ID`: the webhook
outbox and its delivery log, through the admin RPCs (an admin token when
authentication is on), so they work from any machine that reaches the server."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from buildcontrol_proto.v1 import build_control_pb2

from buildcontrol_client.arg_types import positive_int
from buildcontrol_client.cli_commands import connect, emit
from buildcontrol_client.cli_exit import EXIT_OK
from buildcontrol_client.cli_output import clean, to_json

_STATES = {
    build_control_pb2.WEBHOOK_DELIVERY_STATE_PENDING: "PENDING",
    build_control_pb2.WEBHOOK_DELIVERY_STATE_DELIVERED: "DELIVERED",
    build_control_pb2.WEBHOOK_DELIVERY_STATE_REJECTED: "REJECTED",
    build_control_pb2.WEBHOOK_DELIVERY_STATE_FAILED: "FAILED",
}


def delivery_line(delivery: build_control_pb2.WebhookDelivery) -> str:
    """id, endpoint, state, attempts, last answer and time."""
    parts = [clean(delivery.delivery_id), clean(delivery.endpoint) or "-"]
    parts.append(_STATES.get(delivery.state, "NOT_TRIED"))
    parts.append(f"attempts={delivery.attempts}")
    if delivery.last_status:
        parts.append(f"status={delivery.last_status}")
    if delivery.last_error:
        parts.append(f"error={clean(delivery.last_error)}")
    if delivery.HasField("last_attempt_at"):
        parts.append(f"at={delivery.last_attempt_at.ToJsonString()}")
    return " ".join(parts)


async def list_deliveries(args: argparse.Namespace) -> int:
    async with connect(args) as client:
        found = await client.list_webhook_deliveries(args.limit)
    for delivery in found:
        emit(to_json(delivery) if args.json else delivery_line(delivery))
    return EXIT_OK


async def redeliver(args: argparse.Namespace) -> int:
    async with connect(args) as client:
        endpoints = await client.redeliver_webhook(args.delivery_id)
    emit(f"queued {clean(args.delivery_id)} for {', '.join(endpoints) or 'no endpoint'}")
    return EXIT_OK


def add_commands(
    parser: argparse.ArgumentParser,
    command: Callable[..., argparse.ArgumentParser],
    reports_errors: Callable[..., object],
) -> None:
    """The `webhooks` actions under `parser`, each made with cli.py's `_command` (so
    each takes the server, token and TLS options)."""
    actions = parser.add_subparsers(dest="webhooks_command", metavar="ACTION", required=True)
    listing = command(
        actions,
        "list",
        "list webhook deliveries, newest first, with their state per endpoint (admins)",
        "buildcontrol webhooks list --limit 20",
    )
    listing.add_argument("--limit", type=positive_int, default=0, help="rows (default 50)")
    listing.set_defaults(func=reports_errors(list_deliveries))
    again = command(
        actions,
        "redeliver",
        "send one delivery again to every endpoint, whatever its state (admins)",
        "buildcontrol webhooks redeliver b0123456789abcdef0123.build.canceled",
    )
    again.add_argument("delivery_id")
    again.set_defaults(func=reports_errors(redeliver))
