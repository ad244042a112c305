"""Which live builds a `cancel-builds` selector names, read before anything is cancelled:
for `--dry-run` (print them, cancel nothing) and for the confirmation a terminal user
gets when more than one build would be cancelled."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from buildcontrol_proto.v1 import build_pb2

from buildcontrol_client.client import BuildControlClient
from buildcontrol_client.errors import NotFound

LIVE = frozenset(
    {
        build_pb2.BUILD_STATUS_QUEUED,
        build_pb2.BUILD_STATUS_RUNNING,
        build_pb2.BUILD_STATUS_CANCELING,
    }
)
_PAGE = 500


async def live_builds(
    client: BuildControlClient, args: argparse.Namespace
) -> list[build_pb2.Build]:
    """The live builds the selector matches now (the server decides again when asked)."""
    if args.ids:
        found = []
        for build_id in dict.fromkeys(args.ids):
            try:
                build = await client.get(build_id)
            except NotFound:
                continue
            if build.status in LIVE:
                found.append(build)
        return found
    matches: Callable[[build_pb2.Build], bool] = (
        (lambda b: b.pipeline == args.pipeline)
        if args.pipeline
        else (lambda b: b.concurrency_group == args.concurrency_group)
    )
    found, token = [], ""
    while True:
        page, token = await client.list(_PAGE, token, args.pipeline or "")
        found += [b for b in page if b.status in LIVE and matches(b)]
        if not token:
            return found


def confirmed(count: int) -> bool:
    """Ask on the terminal; anything but y/yes is a no."""
    print(f"cancel {count} builds? [y/N] ", end="", file=sys.stderr, flush=True)
    answer = sys.stdin.readline().strip().lower()
    return answer in ("y", "yes")


def asks_first(args: argparse.Namespace) -> bool:
    """A person at a terminal who did not say --yes (scripts and pipes are never asked)."""
    return not args.yes and sys.stdin.isatty() and sys.stderr.isatty()
