"""Delays between retries: exponential, capped, and (for many clients of one server)
with full jitter.

Full jitter (a uniform draw between 0 and the capped exponential) spreads the retries
of many senders over the whole window, so a receiver that comes back is not hit by
every retry at the same instant; the expected wait is half the capped delay.
"""

from __future__ import annotations

import random
from collections.abc import Callable


def capped_exponential(attempt: int, base: float, cap: float) -> float:
    """`base * 2**(attempt-1)`, at most `cap`: the wait after the `attempt`-th failure."""
    if attempt < 1:
        raise ValueError(f"attempt counts from 1, not {attempt}")
    # min() on the exponent first: 2**attempt overflows a float after ~1,000 attempts,
    # and the audit writer retries without limit.
    exponent = min(attempt - 1, 62)
    return min(cap, base * float(2**exponent))


def full_jitter(
    attempt: int, base: float, cap: float, draw: Callable[[], float] = random.random
) -> float:
    """A uniform draw in [0, capped_exponential): `draw` returns a float in [0, 1)."""
    return draw() * capped_exponential(attempt, base, cap)
