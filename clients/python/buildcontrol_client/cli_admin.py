"""`buildcontrol admin purge`: the retention purge on demand, through the server's
Housekeeping RPC (an admin token when authentication is on). The server runs the
purge itself, beside its own writes, in small transactions; a tool writing to the
database behind a running server's back could not do that safely (SQLite's file is
locked by the server; on PostgreSQL it would race the server's purge)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import UTC, datetime

from buildcontrol_proto.v1 import housekeeping_pb2

from buildcontrol_client.cli_commands import connect, emit
from buildcontrol_client.cli_exit import EXIT_OK
from buildcontrol_client.cli_output import to_json


def date_or_time(text: str) -> float:
    """2026-01-31 (midnight UTC) or an ISO 8601 time (2026-01-31T12:00:00+01:00;
    UTC when it gives no offset): epoch seconds."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a date (2026-01-31) or an ISO 8601 time"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def summary(response: housekeeping_pb2.PurgeResponse) -> list[str]:
    verb = "would delete" if response.dry_run else "deleted"
    lines = [f"{verb}: " + ", ".join(f"{t.rows} {t.table}" for t in response.tables)]
    if response.HasField("builds_before"):
        lines.append(f"finished builds before {response.builds_before.ToJsonString()}")
    return lines


async def purge(args: argparse.Namespace) -> int:
    async with connect(args) as client:
        response = await client.purge(args.before, dry_run=args.dry_run)
    for line in [to_json(response)] if args.json else summary(response):
        emit(line)
    return EXIT_OK


def add_commands(
    parser: argparse.ArgumentParser,
    command: Callable[..., argparse.ArgumentParser],
    reports_errors: Callable[..., object],
) -> None:
    """The `admin` actions under `parser`, each made with cli.py's `_command`."""
    actions = parser.add_subparsers(dest="admin_command", metavar="ACTION", required=True)
    purging = command(
        actions,
        "purge",
        "delete finished builds past the retention policy, or finished before a date (admins)",
        "buildcontrol admin purge --dry-run --before 2026-01-01",
        "Without --before the server's --retain-* policy applies. Builds that are not "
        "finished are never deleted.",
    )
    purging.add_argument(
        "--before",
        type=date_or_time,
        metavar="DATE",
        help="what finished before this date or time (UTC unless it says otherwise)",
    )
    purging.add_argument("--dry-run", action="store_true", help="only count what would be deleted")
    purging.set_defaults(func=reports_errors(purge))
