"""Reconnect delays: exponential growth, a cap, and jitter.

Jitter matters when a server restarts: hundreds of agents lose their streams at the same
instant, and without it they would all come back in the same millisecond, every time.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class BackoffPolicy:
    """Delays start at `initial` seconds and double up to `maximum`."""

    initial: float = 0.2
    maximum: float = 5.0
    multiplier: float = 2.0
    # Each delay is drawn from [(1 - jitter) * d, d]: never zero, so a server that
    # keeps refusing is not hammered, and spread out so agents do not move in step.
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if not 0 < self.initial <= self.maximum:
            raise ValueError("backoff needs 0 < initial <= maximum")
        if self.multiplier < 1 or not 0 <= self.jitter <= 1:
            raise ValueError("backoff needs multiplier >= 1 and 0 <= jitter <= 1")


class Backoff:
    """The delay before each next attempt; `reset()` after a success."""

    def __init__(self, policy: BackoffPolicy, rng: random.Random | None = None) -> None:
        self.policy = policy
        self._rng = rng or random.Random()
        self._attempts = 0

    def next_delay(self) -> float:
        policy = self.policy
        ceiling = min(policy.maximum, policy.initial * policy.multiplier**self._attempts)
        # Stop counting once the cap is reached, so the power never overflows.
        if ceiling < policy.maximum:
            self._attempts += 1
        return self._rng.uniform((1 - policy.jitter) * ceiling, ceiling)

    def reset(self) -> None:
        self._attempts = 0
