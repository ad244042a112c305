"""The timers of one build's actor. Each fires by telling the actor a command, so the
actor handles it in its own order like any other event.

Every deadline here is on the monotonic clock (the event loop's): a step of the wall
clock moves none of them. A deadline stays armed until the actor says its effect is
committed (`stop_settled`, `job_ended`, `queue_left`); when the effect's write fails
the actor asks for a retry, which comes after a capped exponential backoff."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from buildcontrol_server.actors import commands as cmd
from buildcontrol_server.effects.backoff import capped_exponential

# Retries of a timer whose effect could not be committed (the store failing): the
# first after RETRY_BASE seconds, doubling up to RETRY_CAP.
RETRY_BASE = 0.1
RETRY_CAP = 5.0


def retry_delay(attempt: int) -> float:
    """Seconds before retry number `attempt` (from 1) of a failed timer effect."""
    return capped_exponential(attempt, RETRY_BASE, RETRY_CAP)


class BuildTimers:
    def __init__(self, tell: Callable[[cmd.Command], None], monotonic: Callable[[], float]) -> None:
        self._tell = tell
        self._clock = monotonic
        self._stop_deadlines: dict[str, float] = {}  # job_id → when it is overdue
        self._stop_timer: asyncio.TimerHandle | None = None
        self._stop_timer_at: float | None = None  # when _stop_timer fires
        # Failed attempts in a row to commit the FORCED write of overdue stops, and
        # the earliest the stop timer may fire again after the last one.
        self._stop_failures = 0
        self._stop_retry_at: float | None = None
        self._job_timers: dict[str, asyncio.TimerHandle] = {}
        self._queue_timer: asyncio.TimerHandle | None = None

    # ---- stop deadlines: one timer, at the earliest ----

    def stop_deadline(self, job_id: str, seconds: float) -> None:
        """`job_id`'s stop must be confirmed within `seconds` from now."""
        self._stop_deadlines[job_id] = self._clock() + seconds
        self._arm_stop_timer()

    def stop_armed(self) -> set[str]:
        """Jobs with a stop deadline armed."""
        return set(self._stop_deadlines)

    def overdue(self) -> set[str]:
        """Jobs whose stop deadline has passed. They stay armed until `stop_settled`
        says their FORCED write is committed."""
        now = self._clock()
        self._stop_retry_at = None
        return {job for job, deadline in self._stop_deadlines.items() if deadline <= now}

    def stop_settled(self, job_ids: set[str]) -> None:
        """The effect of these overdue stops is committed: forget their deadlines."""
        self._stop_failures = 0
        for job_id in job_ids:
            self._stop_deadlines.pop(job_id, None)
        self._arm_stop_timer()

    def stop_failed(self) -> float:
        """The FORCED write of overdue stops failed: try again after a backoff.
        Returns the delay."""
        self._stop_failures += 1
        delay = retry_delay(self._stop_failures)
        self._stop_retry_at = self._clock() + delay
        self._arm_stop_timer()
        return delay

    def _arm_stop_timer(self) -> None:
        at: float | None = None
        if self._stop_deadlines:
            at = min(self._stop_deadlines.values())
            if self._stop_retry_at is not None:
                at = max(at, self._stop_retry_at)
        # A build's stops of one turn share a deadline, and most jobs end before
        # theirs: the timer already armed for that moment stays (a mass cancel armed
        # and cancelled four timers per build of two jobs).
        if self._stop_timer is not None and at == self._stop_timer_at:
            return
        if self._stop_timer is not None:
            self._stop_timer.cancel()
            self._stop_timer = self._stop_timer_at = None
        if at is not None:
            self._stop_timer = asyncio.get_running_loop().call_later(
                max(0.0, at - self._clock()), self._stop_timer_fired
            )
            self._stop_timer_at = at

    def _stop_timer_fired(self) -> None:
        self._stop_timer = self._stop_timer_at = None
        self._tell(cmd.StopDeadlinePassed())

    # ---- one timer per job (job timeout, or cleanup timeout of a cleanup job) ----

    def job_timer(self, job_id: str, seconds: float, command: cmd.Command) -> None:
        if job_id not in self._job_timers:
            self._job_timers[job_id] = asyncio.get_running_loop().call_later(
                max(0.0, seconds), self._tell, command
            )

    def retry(self, command: cmd.JobTimedOut | cmd.CleanupTimedOut | cmd.QueueTimedOut) -> float:
        """A timer's effect failed to commit: fire `command` (its retry number in
        `attempt`) again after a backoff. Returns the delay."""
        delay = retry_delay(command.attempt)
        if isinstance(command, cmd.QueueTimedOut):
            self.queue_timeout(delay, command)
            return delay
        old = self._job_timers.pop(command.job_id, None)
        if old is not None:
            old.cancel()
        self._job_timers[command.job_id] = asyncio.get_running_loop().call_later(
            delay, self._tell, command
        )
        return delay

    def job_ended(self, job_id: str) -> None:
        timer = self._job_timers.pop(job_id, None)
        if timer is not None:
            timer.cancel()
        if self._stop_deadlines.pop(job_id, None) is not None:
            self._arm_stop_timer()

    # ---- queue timeout ----

    def queue_timeout(self, seconds: float, command: cmd.QueueTimedOut | None = None) -> None:
        self.queue_left()
        self._queue_timer = asyncio.get_running_loop().call_later(
            max(0.0, seconds), self._tell, command or cmd.QueueTimedOut()
        )

    def queue_left(self) -> None:
        if self._queue_timer is not None:
            self._queue_timer.cancel()
            self._queue_timer = None

    # ---- all of them ----

    def restart(self) -> None:
        """The actor restarts from the store: drop the job and queue timers (it arms
        them again from the reloaded build) but keep the stop deadlines, which must
        not move because the actor restarted."""
        for timer in (self._queue_timer, *self._job_timers.values()):
            if timer is not None:
                timer.cancel()
        self._job_timers.clear()
        self._queue_timer = None
        self._arm_stop_timer()

    def cancel_all(self) -> None:
        for timer in (self._stop_timer, self._queue_timer, *self._job_timers.values()):
            if timer is not None:
                timer.cancel()
        self._stop_deadlines.clear()
        self._job_timers.clear()
        self._stop_timer = self._queue_timer = None
        self._stop_timer_at = None

    def close(self) -> None:
        """The actor is gone: cancel every timer and let go of the actor's `tell`.
        Holding it would keep the actor, its build and everything it references in a
        reference cycle (actor → timers → tell → actor) that only the cyclic garbage
        collector frees; let go, they are freed the moment the registry drops them."""
        self.cancel_all()
        self._tell = _retired


def _retired(command: cmd.Command) -> None:
    """What a closed BuildTimers tells (nothing: its timers are cancelled)."""
