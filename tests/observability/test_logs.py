"""Structured logs: one line per cancel lifecycle event, with the build, who and why;
text and JSON formats; a job's environment never reaches a log."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest
from buildcontrol_proto.v1 import build_control_pb2, build_pb2
from buildcontrol_server.observability.logs import (
    JsonFormatter,
    TextFormatter,
    event,
    formatter_for,
)

from tests.observability.observed_servers import observed_server
from tests.support.agent_peer import AgentPeer
from tests.support.build_calls import first_steps_running, rest_of
from tests.support.pipelines import pipeline

SECRET = "hunter2-do-not-log-me"
WAIT = 10.0


def record(message: str, /, **fields: object) -> logging.LogRecord:
    """What event() produces, captured without a handler."""
    captured: list[logging.LogRecord] = []
    logger = logging.getLogger("test.observability.logs")
    handler = logging.Handler()
    handler.emit = captured.append  # type: ignore[method-assign]
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        event(logger, logging.INFO, message, **fields)
    finally:
        logger.removeHandler(handler)
    return captured[0]


def test_text_format_appends_fields_and_keeps_a_multiline_reason_on_one_line() -> None:
    line = TextFormatter().format(
        record("cancel accepted", build_id="b1", reason='wrong "branch"\nreally', stops=2)
    )
    assert "\n" not in line
    assert line.endswith('cancel accepted build_id=b1 reason="wrong \\"branch\\"\\nreally" stops=2')


def test_json_format_puts_fields_beside_the_message_without_overwriting_it() -> None:
    line = JsonFormatter().format(record("job stopped", outcome="KILLED", message="not me"))
    payload = json.loads(line)
    assert payload["message"] == "job stopped"
    assert payload["outcome"] == "KILLED"
    assert {"time", "level", "logger"} <= payload.keys()


def test_json_format_carries_the_traceback_in_one_line() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        failed = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    payload = json.loads(JsonFormatter().format(failed))
    assert "RuntimeError: boom" in payload["exception"]


def test_unknown_log_format_is_refused() -> None:
    with pytest.raises(ValueError, match="text, json"):
        formatter_for("xml")


async def test_each_cancel_event_is_one_line_and_job_env_is_never_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # everything any logger says, debug included
    async with observed_server(tmp_path / "data", stop_ack_timeout=0.3) as observed:
        good, deaf = (
            AgentPeer(observed.target, "good", capacity=1),
            AgentPeer(observed.target, "deaf", capacity=1),
        )
        await good.connect()
        await deaf.connect()
        request = pipeline(jobs=2)
        for job in request.stages[0].jobs:
            job.env["API_TOKEN"] = SECRET
        build = (await observed.stub.SubmitBuild(request)).build
        confirmed = await good.take_job()
        await deaf.take_job()
        assert confirmed.env["API_TOKEN"] == SECRET  # the secret did travel
        await first_steps_running(observed.stub, build.build_id, 2)
        cancel = build_control_pb2.CancelRequest(
            build_id=build.build_id, reason="release\nfrozen", requested_by="alice"
        )
        cancel.grace_period.FromSeconds(0)  # deadline = the 0.3 s ack timeout
        stream = observed.stub.Cancel(cancel, timeout=WAIT)
        assert (await stream.read()).WhichOneof("event") == "accepted"
        await good.next("stop_job")
        await deaf.next("stop_job")  # and never answered
        good.stopped(build.build_id, confirmed.job_id)
        rest = await rest_of(stream)
        assert rest[-1].finished.status == build_pb2.BUILD_STATUS_CANCELED
        await good.leave()
        await deaf.leave()

    events: dict[str, list[dict[str, object]]] = {}
    for entry in caplog.records:
        fields = getattr(entry, "fields", {})
        if fields.get("build_id") == build.build_id:
            events.setdefault(str(fields["event"]), []).append(fields)
    assert {name: len(found) for name, found in events.items()} == {
        "cancel_accepted": 1,
        "stop_sent": 2,
        "stop_deadline_expired": 1,
        "job_stopped": 2,
        "cancel_finished": 1,
    }
    for name in ("cancel_accepted", "stop_deadline_expired", "job_stopped", "cancel_finished"):
        for fields in events[name]:
            assert (fields["requested_by"], fields["reason"]) == ("alice", "release\nfrozen")
    assert {f["outcome"] for f in events["job_stopped"]} == {"GRACEFUL", "FORCED"}
    assert events["stop_deadline_expired"][0]["agent_id"] == "deaf"
    assert events["cancel_finished"][0]["outcomes"] == {"GRACEFUL": 1, "FORCED": 1}
    assert all(isinstance(f["since_request_ms"], float) for f in events["stop_sent"])

    text, json_format = TextFormatter(), JsonFormatter()
    for entry in caplog.records:
        for formatted in (text.format(entry), json_format.format(entry)):
            assert SECRET not in formatted, formatted
        if getattr(entry, "fields", None):
            assert "\n" not in text.format(entry)
