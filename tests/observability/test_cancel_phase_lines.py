"""The cancel phases measure at any log level; below INFO they put no line together."""

from __future__ import annotations

import logging
import time

import pytest
from buildcontrol_server.domain.agent_commands import StopCommand
from buildcontrol_server.observability import cancel_phases
from prometheus_client import REGISTRY

DELIVERED = "buildcontrol_cancel_stop_delivered_seconds_count"


def _stop() -> StopCommand:
    return StopCommand(
        build_id="b1",
        job_id="j1",
        agent_id="a1",
        reason="bad tag",
        grace_period=0.0,
        deadline=0.0,
        requested_at=time.perf_counter(),
    )


def _delivered() -> float:
    return REGISTRY.get_sample_value(DELIVERED) or 0.0


@pytest.mark.parametrize(("level", "lines"), [(logging.INFO, 1), (logging.WARNING, 0)])
def test_a_written_stop_is_measured_at_any_level_and_logged_from_info(
    caplog: pytest.LogCaptureFixture, level: int, lines: int
) -> None:
    caplog.set_level(level, logger=cancel_phases.log.name)
    before = _delivered()
    cancel_phases.stop_written(_stop())
    assert _delivered() == before + 1
    sent = [r for r in caplog.records if getattr(r, "fields", {}).get("event") == "stop_sent"]
    assert len(sent) == lines
