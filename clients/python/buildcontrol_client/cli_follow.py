"""`watch` (and `submit --watch`): follow a build to its end, across server restarts.

A stream that breaks because the server went away (UNAVAILABLE, or an end without the
terminal state) is opened again with backoff; the new stream starts with a fresh
snapshot, and stderr says so. Only after `reconnect_for` seconds without a server does
the command give up (exit 3)."""

from __future__ import annotations

import asyncio
import sys
import time
from contextlib import aclosing, nullcontext

from buildcontrol_proto.v1 import build_control_pb2

from buildcontrol_client import cli_output
from buildcontrol_client.backoff import Backoff, BackoffPolicy
from buildcontrol_client.cli_live import BuildProgress, LiveView
from buildcontrol_client.client import BuildControlClient
from buildcontrol_client.errors import BuildControlError, StreamEndedEarly, Unavailable

# How long `watch` keeps trying to reach a server that went away (a restart, a rolling
# upgrade) before it exits 3.
RECONNECT_FOR_SECONDS = 300.0
RECONNECT_POLICY = BackoffPolicy(initial=0.2, maximum=5.0)


def _say(line: str) -> None:
    print(f"watch: {line}", file=sys.stderr, flush=True)


async def follow_events(
    client: BuildControlClient,
    build_id: str,
    progress: BuildProgress,
    emit_event: object,
    reconnect_for: float = RECONNECT_FOR_SECONDS,
) -> None:
    """Feed every watch event to `emit_event` until the build is terminal."""
    backoff = Backoff(RECONNECT_POLICY)
    lost_since: float | None = None
    while True:
        error: BuildControlError
        try:
            async with aclosing(client.watch(build_id)) as events:
                async for event in events:
                    if lost_since is not None:
                        _say("reconnected; the build again from a fresh snapshot")
                        lost_since = None
                        backoff.reset()
                    emit_event(event)  # type: ignore[operator]
            if progress.terminal:
                return
            error = StreamEndedEarly("the watch ended before the build was terminal")
        except (Unavailable, StreamEndedEarly) as failure:
            error = failure
        if progress.terminal:
            return
        now = time.monotonic()
        lost_since = now if lost_since is None else lost_since
        if now - lost_since >= reconnect_for:
            raise error
        delay = backoff.next_delay()
        _say(f"{error.details or error}; reconnecting in {delay:.1f} s")
        await asyncio.sleep(delay)  # backoff between attempts, not a wait for an event


async def follow_build(
    client: BuildControlClient,
    build_id: str,
    live: bool,
    as_json: bool,
    reconnect_for: float = RECONNECT_FOR_SECONDS,
) -> BuildProgress:
    progress = BuildProgress(build_id)
    with LiveView(progress) if live else nullcontext() as view:

        def show(event: build_control_pb2.WatchBuildResponse) -> None:
            if view is not None:
                view.watch_event(event)
                return
            progress.apply_watch(event)
            line = cli_output.to_json(event) if as_json else cli_output.watch_line(event)
            print(line, flush=True)

        await follow_events(client, build_id, progress, show, reconnect_for)
    return progress
