"""Which webhook events one applied event causes, and who is told of each.

An endpoint subscribes to some events (DEFAULT_EVENTS when it names none). After the
domain applied an event, `queue_notifications` adds to the change set the outbox
entry of each event it caused that some endpoint subscribed to: the entries commit
with the transition or not at all, so a crash cannot lose one, and the requests are
made later by the webhook workers (never on the cancel's own path).

- cancel.accepted: the change set of the first cancel (not one that joins or forces a
  cancel under way);
- job.stopped: a job on an agent that ended CANCELED, GRACEFUL, KILLED or FORCED;
- build.finished: the change set that made the build terminal (any status);
- build.canceled: the same, when the status is CANCELED.

Terminal states are final, so the change set that touches a terminal build or job is
the one that made it so, and an event is added once per subject however often a
change set is asked (its delivery id is its key)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from buildcontrol_server.domain import event_data
from buildcontrol_server.domain.deliveries import (
    DEFAULT_EVENTS,
    Endpoint,
    Notification,
    OutboxEntry,
    WebhookEvent,
    endpoint_of,
)
from buildcontrol_server.domain.model import Build, CancelRecord, ChangeSet
from buildcontrol_server.domain.outcome import Outcome
from buildcontrol_server.domain.states import BuildStatus, JobOutcome, JobStatus

# The outcomes of a job that was on an agent when its build was cancelled.
STOPPED_OUTCOMES = frozenset({JobOutcome.GRACEFUL, JobOutcome.KILLED, JobOutcome.FORCED})


@dataclass(frozen=True)
class Subscriptions:
    """The endpoints subscribed to each event (an event nobody wants is absent)."""

    by_event: Mapping[WebhookEvent, tuple[Endpoint, ...]] = field(default_factory=dict)

    def endpoints(self, event: WebhookEvent) -> tuple[Endpoint, ...]:
        return self.by_event.get(event, ())


def subscriptions_of(
    urls: Sequence[str], chosen: Mapping[int, frozenset[WebhookEvent]]
) -> Subscriptions:
    """`chosen`: endpoint position → its events; a position not in it gets the default."""
    by_event: dict[WebhookEvent, list[Endpoint]] = {}
    for index, url in enumerate(urls):
        for event in sorted(chosen.get(index, DEFAULT_EVENTS)):
            by_event.setdefault(event, []).append(endpoint_of(index, url))
    return Subscriptions({event: tuple(found) for event, found in by_event.items()})


def canceled(record: CancelRecord) -> Notification:
    """The build.canceled notification of a finished cancel."""
    return Notification(
        WebhookEvent.BUILD_CANCELED,
        record.build_id,
        record.build_id,
        event_data.record_to_dict(record),
        record.finished_at,
    )


def queue_notifications(build: Build, fx: Outcome, subscriptions: Subscriptions) -> None:
    """Add the outbox entries of the events `fx` causes to `fx.changes` (see above).
    An event nobody subscribed to costs nothing: its object is not even made."""
    if not subscriptions.by_event:
        return
    changes, wanted = fx.changes, subscriptions.endpoints
    build_id = build.build_id
    accepted = wanted(WebhookEvent.CANCEL_ACCEPTED)
    if accepted and fx.cancel_accepted and build.cancel is not None:
        data = event_data.accepted_cancel_to_dict(build)
        at = build.cancel.requested_at
        notification = Notification(WebhookEvent.CANCEL_ACCEPTED, build_id, build_id, data, at)
        add_entry(changes, OutboxEntry(notification, accepted))
    stopped = wanted(WebhookEvent.JOB_STOPPED)
    for job in fx.finished_jobs if stopped else ():
        if job.status is JobStatus.CANCELED and job.outcome in STOPPED_OUTCOMES:
            data = event_data.stopped_job_to_dict(build, job)
            at = job.finished_at or 0.0
            notification = Notification(WebhookEvent.JOB_STOPPED, build_id, job.job_id, data, at)
            add_entry(changes, OutboxEntry(notification, stopped))
    if not build.terminal or build_id not in changes.builds:
        return
    canceled_to = wanted(WebhookEvent.BUILD_CANCELED)
    if canceled_to and build.status is BuildStatus.CANCELED:
        add_entry(changes, OutboxEntry(canceled(CancelRecord.of(build)), canceled_to))
    finished_to = wanted(WebhookEvent.BUILD_FINISHED)
    if finished_to:
        data = event_data.finished_build_to_dict(build)
        at = build.finished_at or 0.0
        notification = Notification(WebhookEvent.BUILD_FINISHED, build_id, build_id, data, at)
        add_entry(changes, OutboxEntry(notification, finished_to))


def add_entry(changes: ChangeSet, entry: OutboxEntry) -> None:
    """Add `entry` unless the change set has it already (same delivery id)."""
    if any(known.delivery_id == entry.delivery_id for known in changes.outbox):
        return
    changes.outbox.append(entry)
