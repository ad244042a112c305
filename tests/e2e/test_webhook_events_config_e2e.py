"""`buildcontrol serve` refuses a --webhook-event it cannot use before it makes anything:
an unknown event name (from a flag or a variable) or a webhook that does not exist is
one line on stderr and exit code 2."""

from __future__ import annotations

from pathlib import Path

from .serve_refusals import serve_refused

URL = "https://hooks.example.com/bc"
EVENTS = "build.canceled, build.finished, cancel.accepted, job.stopped"


async def test_an_unknown_event_name_stops_the_start_with_exit_2(tmp_path: Path) -> None:
    line = await serve_refused(
        tmp_path / "data", "--webhook-url", URL, "--webhook-event", "0=build.finishd"
    )
    assert line == (
        "buildcontrol serve: --webhook-event='0=build.finishd' is not N=EVENT (N: the"
        f" webhook's position, from 0; EVENT one of {EVENTS})"
    )


async def test_an_unknown_event_in_the_variable_names_the_variable(tmp_path: Path) -> None:
    env = {"BUILDCONTROL_WEBHOOK_URL": URL, "BUILDCONTROL_WEBHOOK_EVENT": "0=job.stopped,0=jobs"}
    line = await serve_refused(tmp_path / "data", env=env)
    assert line.startswith("buildcontrol serve: BUILDCONTROL_WEBHOOK_EVENT='0=jobs' is not N=EVENT")


async def test_an_event_for_a_webhook_that_does_not_exist_stops_the_start(
    tmp_path: Path,
) -> None:
    line = await serve_refused(
        tmp_path / "data", "--webhook-url", URL, "--webhook-event", "1=build.finished"
    )
    assert line == (
        "buildcontrol serve: --webhook-event: webhook #1 does not exist"
        " (1 --webhook-url configured)"
    )
