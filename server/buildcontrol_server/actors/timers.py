"""The timers of one build's actor. Each fires by telling the actor a command, so the
actor handles it in its own order like any other event."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from buildcontrol_server.actors import commands as cmd


class BuildTimers:
    def __init__(self, tell: Callable[[cmd.Command], None], clock: Callable[[], float]) -> None:
        self._tell = tell
        self._clock = clock
        self._stop_deadlines: dict[str, float] = {}  # job_id → when it is overdue
        self._stop_timer: asyncio.TimerHandle | None = None
        self._job_timers: dict[str, asyncio.TimerHandle] = {}
        self._queue_timer: asyncio.TimerHandle | None = None

    # ---- stop deadlines: one timer, at the earliest ----

    def stop_deadline(self, job_id: str, deadline: float) -> None:
        self._stop_deadlines[job_id] = deadline
        self._arm_stop_timer()

    def overdue(self) -> set[str]:
        """Jobs whose stop deadline has passed (forgotten here once returned)."""
        now = self._clock()
        due = {job for job, deadline in self._stop_deadlines.items() if deadline <= now}
        for job in due:
            del self._stop_deadlines[job]
        self._arm_stop_timer()
        return due

    def _arm_stop_timer(self) -> None:
        if self._stop_timer is not None:
            self._stop_timer.cancel()
            self._stop_timer = None
        if self._stop_deadlines:
            delay = max(0.0, min(self._stop_deadlines.values()) - self._clock())
            self._stop_timer = asyncio.get_running_loop().call_later(
                delay, self._tell, cmd.StopDeadlinePassed()
            )

    # ---- one timer per job (job timeout, or cleanup timeout of a cleanup job) ----

    def job_timer(self, job_id: str, seconds: float, command: cmd.Command) -> None:
        if job_id not in self._job_timers:
            self._job_timers[job_id] = asyncio.get_running_loop().call_later(
                seconds, self._tell, command
            )

    def job_ended(self, job_id: str) -> None:
        timer = self._job_timers.pop(job_id, None)
        if timer is not None:
            timer.cancel()
        if self._stop_deadlines.pop(job_id, None) is not None:
            self._arm_stop_timer()

    # ---- queue timeout ----

    def queue_timeout(self, at: float) -> None:
        self._queue_timer = asyncio.get_running_loop().call_later(
            max(0.0, at - self._clock()), self._tell, cmd.QueueTimedOut()
        )

    def queue_left(self) -> None:
        if self._queue_timer is not None:
            self._queue_timer.cancel()
            self._queue_timer = None

    def cancel_all(self) -> None:
        for timer in (self._stop_timer, self._queue_timer, *self._job_timers.values()):
            if timer is not None:
                timer.cancel()
        self._stop_deadlines.clear()
        self._job_timers.clear()
        self._stop_timer = self._queue_timer = None

    def close(self) -> None:
        """The actor is gone: cancel every timer and let go of the actor's `tell`.
        Holding it would keep the actor, its build and everything it references in a
        reference cycle (actor → timers → tell → actor) that only the cyclic garbage
        collector frees; let go, they are freed the moment the registry drops them."""
        self.cancel_all()
        self._tell = _retired


def _retired(command: cmd.Command) -> None:
    """What a closed BuildTimers tells (nothing: its timers are cancelled)."""
