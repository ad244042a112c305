"""Which webhook events a change causes (domain/notifications.py): cancel.accepted only
for the first cancel, job.stopped only for jobs that were on an agent, build.finished
for every end and build.canceled for a cancelled one; each only for the endpoints that
chose it, once however often asked; and who chose what (Settings, --webhook-event)."""

from __future__ import annotations

import pytest
from buildcontrol_cli.main import build_parser
from buildcontrol_server.config import Settings
from buildcontrol_server.config_sources import settings_of
from buildcontrol_server.domain import cancellation, lifecycle
from buildcontrol_server.domain.deliveries import DEFAULT_EVENTS, WebhookEvent, endpoint_of
from buildcontrol_server.domain.model import Build, CancelInfo
from buildcontrol_server.domain.notifications import Subscriptions, queue_notifications
from buildcontrol_server.domain.outcome import Outcome
from buildcontrol_server.domain.states import JobOutcome

from tests.unit.lifecycle_samples import INFO, NOW, TIMES, make_build, run_job

URL = "http://127.0.0.1:1/hook"
FORCE = CancelInfo("hung", "bob", True, 0.0, NOW + 5)
EVERYTHING = Subscriptions({event: (endpoint_of(0, URL),) for event in WebhookEvent})


def events(build: Build, fx: Outcome, subscriptions: Subscriptions = EVERYTHING) -> list[str]:
    """The delivery ids `fx` adds to its change set (asked twice: added once)."""
    queue_notifications(build, fx, subscriptions)
    queue_notifications(build, fx, subscriptions)
    return [entry.delivery_id for entry in fx.changes.outbox]


def test_a_cancel_tells_accepted_then_each_stopped_job_then_canceled_and_finished() -> None:
    build = make_build([3])
    running, stopping, pending = build.stages[0].jobs
    run_job(build, running.job_id)
    run_job(build, stopping.job_id)
    b = build.build_id

    accepted = cancellation.cancel(build, INFO, TIMES, NOW)
    # The job that never reached an agent is CANCELED in this change set, not stopped.
    assert pending.outcome is JobOutcome.NEVER_STARTED
    assert events(build, accepted) == [f"{b}.cancel.accepted"]
    graceful = lifecycle.job_stopped(build, running.job_id, "a1", JobOutcome.GRACEFUL, 0, NOW)
    assert events(build, graceful) == [f"{running.job_id}.job.stopped"]
    # A second cancel joins the first (nothing new); a forced one escalates it: neither
    # is a new acceptance.
    assert events(build, cancellation.cancel(build, INFO, TIMES, NOW + 1)) == []
    escalated = cancellation.cancel(build, FORCE, TIMES, NOW + 5)
    assert escalated.escalated and events(build, escalated) == []
    killed = lifecycle.job_stopped(build, stopping.job_id, "a1", JobOutcome.KILLED, None, NOW + 6)
    assert events(build, killed) == [
        f"{stopping.job_id}.job.stopped",
        f"{b}.build.canceled",
        f"{b}.build.finished",
    ]
    [*_, canceled, finished] = killed.changes.outbox
    assert canceled.notification.data["status"] == "CANCELED"
    assert finished.notification.data["cancel"]["escalations"][0]["requested_by"] == "bob"


def test_a_forced_stop_is_a_stopped_job_and_a_lost_agent_is_not() -> None:
    build = make_build([2])
    first, second = build.stages[0].jobs
    run_job(build, first.job_id, agent="a1")
    run_job(build, second.job_id, agent="a2")
    lost = lifecycle.agent_lost(build, "a2", frozenset(), NOW)
    assert second.outcome is JobOutcome.LOST
    assert events(build, lost) == []  # FAILED (LOST) ends no cancel and stops nothing
    cancellation.cancel(build, INFO, TIMES, NOW)
    overdue = cancellation.stop_overdue(build, {first.job_id}, NOW + 20)
    assert first.outcome is JobOutcome.FORCED
    assert events(build, overdue) == [
        f"{first.job_id}.job.stopped",
        f"{build.build_id}.build.canceled",
        f"{build.build_id}.build.finished",
    ]


@pytest.mark.parametrize("succeeded", [True, False], ids=["SUCCEEDED", "FAILED"])
def test_a_build_that_ends_by_itself_is_finished_and_not_canceled(succeeded: bool) -> None:
    build = make_build([1], steps=1)
    job = build.stages[0].jobs[0]
    run_job(build, job.job_id)
    fx = lifecycle.job_finished(build, job.job_id, "a1", succeeded, 0 if succeeded else 1, NOW)
    assert events(build, fx) == [f"{build.build_id}.build.finished"]
    data = fx.changes.outbox[0].notification.data
    assert (data["status"], data["jobs"][0]["exit_code"]) == (
        "SUCCEEDED" if succeeded else "FAILED",
        0 if succeeded else 1,
    )


def test_a_queued_build_cancelled_at_once_is_accepted_canceled_and_finished_at_once() -> None:
    build = make_build([1])
    fx = cancellation.cancel(build, INFO, TIMES, NOW)
    b = build.build_id
    assert events(build, fx) == [
        f"{b}.cancel.accepted",
        f"{b}.build.canceled",
        f"{b}.build.finished",
    ]
    assert fx.changes.outbox[0].notification.data["status"] == "CANCELED"


def test_only_the_endpoints_that_chose_an_event_are_named_in_its_outbox_entry() -> None:
    urls = ["http://a.example/1", "http://b.example/2", "http://c.example/3"]
    subscriptions = Settings(
        webhook_urls=tuple(urls),
        webhook_events=((1, WebhookEvent.BUILD_FINISHED), *((2, e) for e in WebhookEvent)),
    ).webhook_subscriptions
    endpoints = [endpoint_of(n, url) for n, url in enumerate(urls)]
    assert subscriptions.endpoints(WebhookEvent.BUILD_CANCELED) == (endpoints[0], endpoints[2])
    assert subscriptions.endpoints(WebhookEvent.BUILD_FINISHED) == (endpoints[1], endpoints[2])
    assert subscriptions.endpoints(WebhookEvent.JOB_STOPPED) == (endpoints[2],)
    # Webhook 0 named no event: it gets the default, as every webhook did before.
    assert {WebhookEvent.BUILD_CANCELED} == DEFAULT_EVENTS

    build = make_build([1])
    fx = cancellation.cancel(build, INFO, TIMES, NOW)
    queue_notifications(build, fx, subscriptions)
    named = {entry.notification.event: entry.endpoints for entry in fx.changes.outbox}
    assert named == {
        WebhookEvent.CANCEL_ACCEPTED: (endpoints[2],),
        WebhookEvent.BUILD_CANCELED: (endpoints[0], endpoints[2]),
        WebhookEvent.BUILD_FINISHED: (endpoints[1], endpoints[2]),
    }
    # Nobody subscribed to anything: no outbox row at all.
    untold = cancellation.cancel(make_build([1]), INFO, TIMES, NOW)
    queue_notifications(build, untold, Settings().webhook_subscriptions)
    assert untold.changes.outbox == []


def serve_settings(argv: list[str], environ: dict[str, str] | None = None) -> Settings:
    return settings_of(build_parser().parse_args(["serve", *argv]), environ or {})


def test_webhook_events_come_from_flags_and_variables() -> None:
    flags = ["--webhook-url", URL, "--webhook-event", "0=job.stopped"]
    flags += ["--webhook-event", "0=build.finished"]
    assert serve_settings(flags).webhook_events == (
        (0, WebhookEvent.JOB_STOPPED),
        (0, WebhookEvent.BUILD_FINISHED),
    )
    environ = {
        "BUILDCONTROL_WEBHOOK_URL": URL,
        "BUILDCONTROL_WEBHOOK_EVENT": "0=cancel.accepted, 0=build.canceled",
    }
    assert serve_settings([], environ).webhook_subscriptions.endpoints(
        WebhookEvent.CANCEL_ACCEPTED
    ) == (endpoint_of(0, URL),)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("0=build.finishd", "is not N=EVENT"),
        ("build.finished", "is not N=EVENT"),
        ("x=build.finished", "is not N=EVENT"),
    ],
)
def test_an_unknown_event_or_a_malformed_choice_is_a_usage_error(
    value: str, reason: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        serve_settings(["--webhook-url", URL, "--webhook-event", value])
    assert exited.value.code == 2
    line = capsys.readouterr().err.strip()
    assert line == (
        f"buildcontrol serve: --webhook-event={value!r} {reason} (N: the webhook's position,"
        " from 0; EVENT one of build.canceled, build.finished, cancel.accepted, job.stopped)"
    )


def test_an_event_for_a_webhook_that_does_not_exist_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        serve_settings(["--webhook-url", URL, "--webhook-event", "1=job.stopped"])
    assert exited.value.code == 2
    assert capsys.readouterr().err.strip() == (
        "buildcontrol serve: --webhook-event: webhook #1 does not exist"
        " (1 --webhook-url configured)"
    )
