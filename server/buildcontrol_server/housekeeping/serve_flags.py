"""The `serve` flags of retention and housekeeping, and the Settings they make (as
security/serve_flags.py: the server CLI only calls `add_arguments` and `settings_of`)."""

from __future__ import annotations

import argparse
from typing import Any

from buildcontrol_client.arg_types import positive_int

from buildcontrol_server.config import Settings
from buildcontrol_server.domain.errors import InvalidArgument


def _days(text: str) -> float:
    try:
        days = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of days") from None
    if days < 0 or days != days:
        raise argparse.ArgumentTypeError(f"{text!r}: days cannot be negative")
    return days


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if seconds < 0 or seconds != seconds:
        raise argparse.ArgumentTypeError(f"{text!r}: seconds cannot be negative")
    return seconds


def add_arguments(serve: argparse.ArgumentParser, defaults: Settings) -> None:
    serve.add_argument(
        "--retain-builds-days",
        type=_days,
        default=defaults.retain_builds_days,
        help="days finished builds are kept, with their jobs, steps and logs (0: for ever)",
    )
    serve.add_argument(
        "--retain-builds-max",
        type=positive_int,
        default=defaults.retain_builds_max,
        help="most finished builds kept; the oldest go first (default: no cap)",
    )
    serve.add_argument(
        "--retain-audit-days",
        type=_days,
        default=defaults.retain_audit_days,
        help="days cancel audit records are kept, once their build is gone (0: for ever)",
    )
    serve.add_argument(
        "--retain-deliveries-days",
        type=_days,
        default=defaults.retain_deliveries_days,
        help="days finished webhook deliveries are kept (0: for ever)",
    )
    serve.add_argument(
        "--housekeeping-interval",
        type=_seconds,
        default=defaults.housekeeping_interval,
        help="seconds between retention purges and compactions (0: off)",
    )
    serve.add_argument(
        "--housekeeping-pause",
        type=_seconds,
        default=defaults.housekeeping_pause,
        help="seconds between two purge transactions (at most 1,000 rows each)",
    )


def settings_of(args: argparse.Namespace) -> dict[str, Any]:
    """Settings fields from the flags above; 0 days means for ever."""
    fields: dict[str, Any] = {
        "retain_builds_days": args.retain_builds_days or None,
        "retain_builds_max": args.retain_builds_max,
        "retain_audit_days": args.retain_audit_days or None,
        "retain_deliveries_days": args.retain_deliveries_days or None,
        "housekeeping_interval": args.housekeeping_interval,
        "housekeeping_pause": args.housekeeping_pause,
    }
    try:
        Settings(**fields).retention_policy  # noqa: B018 (checks the combination)
    except InvalidArgument as error:
        raise SystemExit(f"buildcontrol: {error}") from None
    return fields
