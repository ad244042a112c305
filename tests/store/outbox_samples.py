"""Webhook endpoints and a canceled build with its notification queued in the outbox."""

from __future__ import annotations

from buildcontrol_server.domain import cancellation
from buildcontrol_server.domain.deliveries import endpoints_of
from buildcontrol_server.domain.model import ChangeSet

from tests.support.store_samples import T0, canceled, wide_spec

ENDPOINTS = endpoints_of(["http://127.0.0.1:1/a", "https://hooks.example.com/secret"])


def with_outbox(n: int = 0) -> tuple[str, list[ChangeSet]]:
    build, (insert, cancel) = canceled(wide_spec(1, 1), now=T0 + n)
    cancellation.queue_notification(build, cancel, ENDPOINTS)
    return build.build_id, [insert, cancel]
