"""Targets as multiples of a floor measured in the same run, and the noise of rounds.

A target names what it reads from one round's results, the floor measures it is a
multiple of (summed: a PostgreSQL cancel's floor is a unary RTT plus a bare commit),
and the limit of the ratio. Each scenario runs several rounds; the ratio is the median
of the rounds over the floor, and the spread says how far the rounds were apart.
Pure: no I/O, so that tests/tools can check it."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Results = Mapping[str, Any]


@dataclass(frozen=True)
class Target:
    key: str  # its name in the JSON
    label: str  # its row in the table
    value: Callable[[Results], float | None]  # read from one round (None: did not run)
    floor: tuple[str, ...] = ()  # floor measures it is a multiple of; (): a plain number
    limit: float | None = None  # None: shown, not judged
    at_most: bool = True  # ratio ≤ limit (latency); False: ratio ≥ limit (throughput)
    unit: str = "ms"


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def spread(values: Sequence[float]) -> float:
    """(max - min) / median of the rounds: 0.0 for one round or a zero median."""
    if len(values) < 2:
        return 0.0
    middle = median(values)
    return (max(values) - min(values)) / middle if middle else 0.0


def combine_floors(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    """The floor used for the ratios: the mean of the measures taken before and after
    the scenarios (a measure taken only once is used as it is)."""
    keys = [*before, *(key for key in after if key not in before)]
    combined: dict[str, float] = {}
    for key in keys:
        values = [side[key] for side in (before, after) if key in side]
        combined[key] = sum(values) / len(values)
    return combined


def drift(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    """after ÷ before per floor measure: how much the machine changed during the run."""
    return {key: after[key] / before[key] for key in before if before[key] and key in after}


def floor_value(floor: Mapping[str, float], keys: Sequence[str]) -> float | None:
    """The sum of the named floor measures; None when one of them was not measured."""
    if any(key not in floor for key in keys):
        return None
    return sum(floor[key] for key in keys)


def verdict(ratio: float | None, limit: float | None, at_most: bool) -> bool | None:
    if ratio is None or limit is None:
        return None
    return ratio <= limit if at_most else ratio >= limit


def evaluate(
    target: Target, rounds: Sequence[Results], floor: Mapping[str, float]
) -> dict[str, Any] | None:
    """The target over every round that measured it (None when none did)."""
    values = [value for results in rounds if (value := target.value(results)) is not None]
    if not values:
        return None
    middle = median(values)
    base = floor_value(floor, target.floor) if target.floor else 1.0
    ratio = middle / base if base else None
    return {
        "label": target.label,
        "unit": target.unit,
        "rounds": values,
        "median": middle,
        "spread": spread(values),
        "floor_of": " + ".join(target.floor),
        "floor": base if target.floor else None,
        "ratio": ratio,
        "limit": target.limit,
        "at_most": target.at_most,
        "met": verdict(ratio, target.limit, target.at_most),
    }


def evaluate_all(
    targets: Sequence[Target], rounds: Sequence[Results], floor: Mapping[str, float]
) -> dict[str, dict[str, Any]]:
    found = {}
    for target in targets:
        outcome = evaluate(target, rounds, floor)
        if outcome is not None:
            found[target.key] = outcome
    return found


def limit_text(outcome: Mapping[str, Any]) -> str:
    """'≤2.5x' (a multiple of a floor, or a ratio), '≥50' (a plain number), or ''
    when not judged."""
    if outcome["limit"] is None:
        return ""
    sign = "≤" if outcome["at_most"] else "≥"
    times = "x" if outcome["floor_of"] or outcome["unit"] == "x" else ""
    return f"{sign}{outcome['limit']:g}{times}"
