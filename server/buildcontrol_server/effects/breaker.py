"""A circuit breaker for one webhook endpoint: stop sending to a receiver that keeps
failing, and try again, once, after a cool-down.

closed ──(threshold failures in a row)──► open ──(cooldown passed)──► half-open
  ▲                                        ▲                             │
  └──────────────── trial succeeded ───────┼──────── trial failed ───────┘

A failure is one failed request (timeout, connection error, 5xx, 429), not one
notification after all its retries: a dead receiver then costs `threshold` requests,
not `threshold * max_attempts` requests and their backoff waits, before the queue
stops waiting on it. The breaker is used by its endpoint's one worker only, so there
is never more than one request in flight, and so never more than one trial.

Pure logic with an injected clock (monotonic seconds), so tests move time by hand.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import IntEnum


class BreakerState(IntEnum):
    # The values are what the buildcontrol_webhook_breaker_state gauge shows.
    CLOSED = 0
    OPEN = 1
    HALF_OPEN = 2


class CircuitBreaker:
    def __init__(self, threshold: int, cooldown: float, clock: Callable[[], float]) -> None:
        if threshold < 1:
            raise ValueError(f"breaker threshold must be at least 1, not {threshold}")
        if cooldown < 0:
            raise ValueError(f"breaker cooldown must not be negative, not {cooldown}")
        self.threshold = threshold
        self.cooldown = cooldown
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._failures = 0  # consecutive, while closed
        self._opened_at = 0.0

    @property
    def state(self) -> BreakerState:
        return self._state

    def allow(self) -> bool:
        """May a request go out now? Moves open → half-open once the cooldown passed."""
        if self._state is BreakerState.OPEN:
            if self._clock() - self._opened_at < self.cooldown:
                return False
            self._state = BreakerState.HALF_OPEN
        return True

    def succeeded(self) -> None:
        """The receiver answered (2xx, or a 4xx it meant: it is up)."""
        self._state = BreakerState.CLOSED
        self._failures = 0

    def failed(self) -> None:
        if self._state is BreakerState.HALF_OPEN:
            self._open()  # the trial failed: another full cooldown
            return
        self._failures += 1
        if self._failures >= self.threshold:
            self._open()

    def _open(self) -> None:
        self._state = BreakerState.OPEN
        self._opened_at = self._clock()
        self._failures = 0
