"""The hub's send paths (agents/hub.py): a stop that cannot be queued to a stream is
never dropped silently: it is counted by reason and logged."""

from __future__ import annotations

import logging

import pytest
from buildcontrol_server.agents.hub import AgentHub, AgentSession
from buildcontrol_server.domain.agent_commands import DrainCommand, StopCommand
from prometheus_client import REGISTRY


def dropped(reason: str) -> float:
    value = REGISTRY.get_sample_value("buildcontrol_stops_dropped_total", {"reason": reason})
    return value or 0.0


def stop_for(agent_id: str) -> StopCommand:
    return StopCommand("b1", "j1", agent_id, "test", grace_period=1.0, deadline=0.0)


def test_a_stop_sent_on_a_closed_session_is_counted_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    session = AgentSession("a1", {}, 1)
    session.close()
    before = dropped("session_closed")
    with caplog.at_level(logging.WARNING, logger="buildcontrol_server.agents.hub"):
        session.send(stop_for("a1"))
        session.send(DrainCommand("bye"))  # not a stop: not counted
    assert dropped("session_closed") == before + 1
    assert [r.getMessage() for r in caplog.records] == [
        "stop of job j1 (build b1) not sent to agent a1: session closed"
    ]
    assert session.outbox.get_nowait() is None and session.outbox.empty()


def test_a_stop_for_an_agent_not_connected_is_counted_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hub = AgentHub(reconnect_window=1.0)
    before = dropped("agent_not_connected")
    with caplog.at_level(logging.INFO, logger="buildcontrol_server.agents.hub"):
        assert hub.send_stop(stop_for("away")) is False
    assert dropped("agent_not_connected") == before + 1
    assert "not sent to agent away: agent not connected" in caplog.text
