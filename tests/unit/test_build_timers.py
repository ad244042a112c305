"""BuildTimers' stop deadlines: one timer at the earliest, armed again only when the
earliest moment changes, told once when it passes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from buildcontrol_server.actors import commands as cmd
from buildcontrol_server.actors.timers import BuildTimers

WAIT = 5.0


class _Told:
    def __init__(self) -> None:
        self.commands: list[cmd.Command] = []
        self.arrived = asyncio.Event()

    def __call__(self, command: cmd.Command) -> None:
        self.commands.append(command)
        self.arrived.set()


def _counted(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The delays of every timer the running loop is asked for from now on."""
    loop = asyncio.get_running_loop()
    delays: list[float] = []
    call_later = loop.call_later

    def counting(delay: float, callback: Any, *args: Any) -> asyncio.TimerHandle:
        delays.append(delay)
        return call_later(delay, callback, *args)

    monkeypatch.setattr(loop, "call_later", counting)
    return delays


def _timers(monkeypatch: pytest.MonkeyPatch) -> tuple[list[float], _Told, BuildTimers]:
    """(timers armed from now on, what the timers tell, the timers) on the loop's clock."""
    armed = _counted(monkeypatch)
    told = _Told()
    return armed, told, BuildTimers(told, asyncio.get_running_loop().time)


async def test_stops_of_one_turn_share_one_timer_told_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    armed, told, timers = _timers(monkeypatch)
    timers.stop_deadline("j1", 0.01)
    timers.stop_deadline("j2", 0.01)  # a little later: the earliest stays j1's
    assert len(armed) == 1
    await asyncio.wait_for(told.arrived.wait(), WAIT)
    assert [type(c) for c in told.commands] == [cmd.StopDeadlinePassed]
    assert timers.overdue() == {"j1", "j2"}
    before = len(armed)
    timers.stop_settled({"j1", "j2"})
    assert len(armed) == before  # nothing left to arm


async def test_the_timer_moves_only_when_the_earliest_deadline_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    armed, told, timers = _timers(monkeypatch)
    timers.stop_deadline("late", 60)
    timers.stop_deadline("later", 120)  # not the earliest: the armed timer stays
    assert len(armed) == 1
    timers.stop_deadline("soon", 0.01)  # earlier: armed again
    assert len(armed) == 2
    timers.job_ended("later")  # not the earliest: stays
    assert len(armed) == 2
    timers.job_ended("soon")  # the earliest ended: armed for "late"
    assert len(armed) == 3 and armed[-1] > 30
    timers.job_ended("late")
    assert timers.stop_armed() == set()
    timers.cancel_all()
    assert told.commands == []
