"""Webhook delivery log rows → their proto messages."""

from __future__ import annotations

from buildcontrol_proto.v1 import build_control_pb2

from buildcontrol_server.domain.deliveries import DeliveryState
from buildcontrol_server.rpc.convert import timestamp
from buildcontrol_server.store.webhook_rows import OutboxListing

_STATE = {
    DeliveryState.PENDING: build_control_pb2.WEBHOOK_DELIVERY_STATE_PENDING,
    DeliveryState.DELIVERED: build_control_pb2.WEBHOOK_DELIVERY_STATE_DELIVERED,
    DeliveryState.REJECTED: build_control_pb2.WEBHOOK_DELIVERY_STATE_REJECTED,
    DeliveryState.FAILED: build_control_pb2.WEBHOOK_DELIVERY_STATE_FAILED,
}


def delivery(row: OutboxListing) -> build_control_pb2.WebhookDelivery:
    message = build_control_pb2.WebhookDelivery(
        delivery_id=row.delivery_id,
        event=row.event,
        build_id=row.build_id,
        created_at=timestamp(row.created_at),
    )
    log = row.log
    if log is not None:
        message.endpoint = log.endpoint_label
        message.state = _STATE[log.state]
        message.attempts = log.attempts
        message.last_status = log.last_status or 0
        message.last_error = log.last_error or ""
        if log.last_attempt_at is not None:
            message.last_attempt_at.FromNanoseconds(int(log.last_attempt_at * 1e9))
    return message
