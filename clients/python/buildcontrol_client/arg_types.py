"""argparse value types shared by the client commands and `buildcontrol serve`."""

from __future__ import annotations

import argparse
import re


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value


def non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


_DURATION_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|h|m|s)")


def parse_duration(text: str) -> float:
    """Seconds from `90`, `1.5`, `5s`, `2m`, `1h30m` or `250ms` (Go's and kubectl's
    spelling; plain numbers are seconds). Raises ValueError for anything else."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    position, total = 0, 0.0
    for part in _DURATION_PART.finditer(text):
        if part.start() != position:
            break
        total += float(part.group(1)) * _DURATION_UNITS[part.group(2)]
        position = part.end()
    if position == 0 or position != len(text):
        raise ValueError(f"{text!r} is not a duration (examples: 30, 5s, 2m, 1h30m, 250ms)")
    return total


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def non_negative_duration(text: str) -> float:
    value = _duration(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def positive_duration(text: str) -> float:
    value = _duration(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value
