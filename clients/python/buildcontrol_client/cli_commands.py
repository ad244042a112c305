"""What each client subcommand does (cli.py declares their arguments).

Output goes one of three ways, chosen once per command by `OutputMode`:
- `--json`: one JSON object per line on stdout (proto JSON, the names grpcurl shows);
- a terminal: `watch` and `cancel` redraw a live picture of the build (cli_live.py);
- anything else (a pipe, a file, TERM=dumb): plain lines, one per event, no control
  characters.
Errors always go to stderr as one plain line; the exit code says what happened.
"""

from __future__ import annotations

import argparse
import asyncio
import enum
import os
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing

from buildcontrol_proto.v1 import build_control_pb2, build_pb2

from buildcontrol_client import cli_batch_selection, cli_output
from buildcontrol_client.auth import read_token
from buildcontrol_client.cli_exit import (
    EXIT_CANCELED,
    EXIT_FAILED,
    EXIT_NOT_FOUND_OR_INVALID,
    EXIT_OK,
)
from buildcontrol_client.cli_follow import RECONNECT_FOR_SECONDS, follow_build
from buildcontrol_client.cli_live import BuildProgress, LiveView
from buildcontrol_client.client import BuildControlClient
from buildcontrol_client.credentials import tls_from
from buildcontrol_client.errors import BuildControlError, StreamEndedEarly
from buildcontrol_client.pipeline_file import load_pipeline_file

_TERMINAL_EXIT = {
    build_pb2.BUILD_STATUS_SUCCEEDED: EXIT_OK,
    build_pb2.BUILD_STATUS_FAILED: EXIT_FAILED,
    build_pb2.BUILD_STATUS_CANCELED: EXIT_CANCELED,
}
# After a cancel finished, how long the live view waits for its watch stream to deliver
# the last changes (it ends by itself once the build is terminal).
_WATCH_DRAIN_SECONDS = 2.0


class OutputMode(enum.Enum):
    JSON = "json"
    LIVE = "live"
    PLAIN = "plain"

    @classmethod
    def of(cls, args: argparse.Namespace) -> OutputMode:
        if args.json:
            return cls.JSON
        if sys.stdout.isatty() and os.environ.get("TERM", "") != "dumb":
            return cls.LIVE
        return cls.PLAIN


def connect(args: argparse.Namespace) -> BuildControlClient:
    return BuildControlClient(args.server, token=read_token(args.token_file), tls=tls_from(args))


def emit(line: str) -> None:
    # Flushed per line: a pipe reader (or a test) sees each event as it happens.
    print(line, flush=True)


async def submit(args: argparse.Namespace) -> int:
    request = load_pipeline_file(args.file)
    mode = OutputMode.of(args)
    async with connect(args) as client:
        # A key per invocation; pass --request-id to make a retried command idempotent.
        build = await client.submit(request, args.request_id or str(uuid.uuid4()))
        if mode is OutputMode.JSON:
            emit(cli_output.to_json(build))
        elif mode is OutputMode.PLAIN:
            emit(build.build_id)  # piped: B=$(buildcontrol submit f.yaml) is the id
        else:
            emit(f"{build.build_id} {cli_output.build_status(build.status)}")
        if args.watch:
            return await follow(client, build.build_id, mode, args.reconnect_for)
    return EXIT_OK


async def get(args: argparse.Namespace) -> int:
    async with connect(args) as client:
        build = await client.get(args.build_id)
    if args.json:
        emit(cli_output.to_json(build))
    else:
        for line in cli_output.build_details(build):
            emit(line)
    return EXIT_OK


async def list_builds(args: argparse.Namespace) -> int:
    async with connect(args) as client:
        builds, next_token = await client.list(args.page_size, args.page_token, args.pipeline)
    for build in builds:
        emit(cli_output.to_json(build) if args.json else cli_output.build_line(build))
    if next_token:
        # On stderr, so stdout stays one build per line for pipes.
        print(f"next page: --page-token {next_token}", file=sys.stderr, flush=True)
    return EXIT_OK


async def watch(args: argparse.Namespace) -> int:
    async with connect(args) as client:
        return await follow(client, args.build_id, OutputMode.of(args), args.reconnect_for)


async def follow(
    client: BuildControlClient,
    build_id: str,
    mode: OutputMode,
    reconnect_for: float = RECONNECT_FOR_SECONDS,
) -> int:
    """Show each watch event; the exit code follows the build's terminal status."""
    live = mode is OutputMode.LIVE
    progress = await follow_build(client, build_id, live, mode is OutputMode.JSON, reconnect_for)
    if live:
        emit(progress.headline())
    return _TERMINAL_EXIT[progress.status]


async def cancel(args: argparse.Namespace) -> int:
    try:
        return await _cancel(args)
    except asyncio.CancelledError:
        # Ctrl-C ends this command, not the cancel: the server goes on with it.
        print(
            f"interrupted: the cancel of {args.build_id} goes on on the server (if it got "
            f"there); follow it with: buildcontrol watch {args.build_id}",
            file=sys.stderr,
            flush=True,
        )
        raise


async def _cancel(args: argparse.Namespace) -> int:
    mode = OutputMode.of(args)
    async with connect(args) as client:
        events = client.cancel(
            args.build_id,
            reason=args.reason,
            force=args.force,
            grace_period_seconds=args.grace,
            requested_by=args.requested_by,
        )
        async with aclosing(events):
            if mode is OutputMode.LIVE:
                finished = await _cancel_live(client, args.build_id, events)
            else:
                finished = None
                async for event in events:
                    json_or_line = mode is OutputMode.JSON
                    emit(
                        cli_output.to_json(event) if json_or_line else cli_output.cancel_line(event)
                    )
                    if event.HasField("finished"):
                        finished = event.finished
                        break
    if finished is None:
        raise StreamEndedEarly("the server ended the Cancel stream before the build was terminal")
    if mode is OutputMode.LIVE:
        emit(cli_output.cancel_line(build_control_pb2.CancelResponse(finished=finished)))
    return EXIT_OK


async def _cancel_live(
    client: BuildControlClient,
    build_id: str,
    events: AsyncIterator[build_control_pb2.CancelResponse],
) -> build_control_pb2.CancelFinished | None:
    """The Cancel stream says when jobs stop; a WatchBuild beside it shows the steps
    (which one is being stopped, which cleanup step runs) while that happens."""
    progress = BuildProgress(build_id)
    finished: build_control_pb2.CancelFinished | None = None
    with LiveView(progress) as view:
        watcher = asyncio.create_task(_feed_watch(client, build_id, view))
        try:
            async for event in events:
                view.cancel_event(event)
                if event.HasField("finished"):
                    finished = event.finished
                    break
            if finished is not None:
                # Let the watch deliver the build's last changes, so the final picture is
                # the whole story; then the Cancel stream's own word is applied last.
                await asyncio.wait({watcher}, timeout=_WATCH_DRAIN_SECONDS)
                view.cancel_event(build_control_pb2.CancelResponse(finished=finished))
        finally:
            watcher.cancel()
            await asyncio.wait({watcher})
    return finished


async def _feed_watch(client: BuildControlClient, build_id: str, view: LiveView) -> None:
    try:
        async with aclosing(client.watch(build_id)) as events:
            async for event in events:
                view.watch_event(event)
    except BuildControlError:
        # The watch only adds detail to the picture; the Cancel stream is the authority
        # and reports its own errors. A failed watch leaves the picture coarser, no more.
        return


async def cancel_builds(args: argparse.Namespace) -> int:
    async with connect(args) as client:
        if args.dry_run or cli_batch_selection.asks_first(args):
            selected = await cli_batch_selection.live_builds(client, args)
            if args.dry_run:
                for build in selected:
                    emit(cli_output.to_json(build) if args.json else cli_output.build_line(build))
                print(f"dry run: {len(selected)} build(s) would be cancelled", file=sys.stderr)
                return EXIT_OK
            if len(selected) > 1 and not cli_batch_selection.confirmed(len(selected)):
                print("nothing cancelled", file=sys.stderr)
                return EXIT_OK
        events = client.cancel_builds(
            args.ids or (),
            pipeline=args.pipeline or "",
            concurrency_group=args.concurrency_group or "",
            reason=args.reason,
            force=args.force,
            grace_period_seconds=args.grace,
            requested_by=args.requested_by,
        )
        summary: build_control_pb2.CancelBuildsSummary | None = None
        async with aclosing(events):
            async for event in events:
                emit(cli_output.to_json(event) if args.json else cli_output.batch_line(event))
                if event.HasField("summary"):
                    summary = event.summary
                    break
    if summary is None:
        raise StreamEndedEarly("the CancelBuilds stream ended without its summary")
    if summary.not_found or summary.not_cancelable:
        return EXIT_NOT_FOUND_OR_INVALID  # some named builds could not be cancelled
    return EXIT_OK


async def agents(args: argparse.Namespace) -> int:
    async with connect(args) as client:
        found = await client.list_agents()
    for agent in found:
        emit(cli_output.to_json(agent) if args.json else cli_output.agent_line(agent))
    return EXIT_OK
