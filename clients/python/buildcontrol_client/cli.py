"""Client subcommands of the `buildcontrol` CLI: agent, submit, get, list, watch, cancel.

The top-level parser (server/buildcontrol_server/cli.py) calls `register(subparsers)` and
then `asyncio.run(args.func(args))`; the coroutine's result is the exit code:

    0 ok · 1 the build FAILED or was CANCELED (watch, submit --watch), or another error
    2 usage · 3 server unavailable · 4 not found or invalid input
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from functools import wraps
from pathlib import Path

import grpc
from buildcontrol.v1 import build_pb2

from buildcontrol_client import cli_output
from buildcontrol_client.agent import Agent, AgentOptions
from buildcontrol_client.backoff import BackoffPolicy
from buildcontrol_client.client import BuildControlClient
from buildcontrol_client.errors import BuildControlError, StreamEndedEarly
from buildcontrol_client.pipeline_file import PipelineFileError, load_pipeline_file

EXIT_OK = 0
EXIT_BUILD_NOT_SUCCEEDED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_NOT_FOUND_OR_INVALID = 4

DEFAULT_SERVER = "127.0.0.1:50051"

_EXIT_BY_CODE = {
    grpc.StatusCode.UNAVAILABLE: EXIT_UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED: EXIT_UNAVAILABLE,
    grpc.StatusCode.NOT_FOUND: EXIT_NOT_FOUND_OR_INVALID,
    grpc.StatusCode.INVALID_ARGUMENT: EXIT_NOT_FOUND_OR_INVALID,
    grpc.StatusCode.FAILED_PRECONDITION: EXIT_NOT_FOUND_OR_INVALID,
}
_TERMINAL_EXIT = {
    build_pb2.BUILD_STATUS_SUCCEEDED: EXIT_OK,
    build_pb2.BUILD_STATUS_FAILED: EXIT_BUILD_NOT_SUCCEEDED,
    build_pb2.BUILD_STATUS_CANCELED: EXIT_BUILD_NOT_SUCCEEDED,
}

Command = Callable[[argparse.Namespace], Awaitable[int]]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the client subcommands; each sets `args.func`."""
    agent = subparsers.add_parser("agent", help="run a build agent")
    _add_server(agent)
    agent.add_argument("--agent-id", default=f"{socket.gethostname()}-{os.getpid()}")
    agent.add_argument(
        "--labels",
        action="append",
        default=[],
        type=_labels,
        metavar="K=V[,K=V]",
        help="labels offered to jobs (repeatable or comma separated)",
    )
    agent.add_argument("--capacity", type=_positive_int, default=1, help="jobs at once")
    agent.add_argument(
        "--work-dir", type=Path, help="run jobs in DIR/<job id>, output in DIR/<job id>.log"
    )
    agent.add_argument(
        "--shutdown-grace",
        type=_non_negative_float,
        default=5.0,
        metavar="SECONDS",
        help="SIGTERM-to-SIGKILL time for own jobs when the agent stops",
    )
    agent.add_argument(
        "--reconnect-max",
        type=_positive_float,
        default=5.0,
        metavar="SECONDS",
        help="cap of the reconnect backoff",
    )
    agent.set_defaults(func=_agent)

    submit = subparsers.add_parser("submit", help="submit a pipeline file as a new build")
    _add_server(submit)
    _add_json(submit)
    submit.add_argument("file", type=Path, help="pipeline file (YAML or JSON)")
    submit.add_argument("--watch", action="store_true", help="then watch the build to its end")
    submit.set_defaults(func=_submit)

    get = subparsers.add_parser("get", help="show a build with its jobs and steps")
    _add_server(get)
    _add_json(get)
    get.add_argument("build_id")
    get.set_defaults(func=_get)

    listing = subparsers.add_parser("list", help="list builds, newest first")
    _add_server(listing)
    _add_json(listing)
    listing.add_argument("--pipeline", default="")
    listing.add_argument("--page-size", type=_positive_int, default=0)
    listing.add_argument("--page-token", default="")
    listing.set_defaults(func=_list)

    watch = subparsers.add_parser("watch", help="print a build's changes until it ends")
    _add_server(watch)
    _add_json(watch)
    watch.add_argument("build_id")
    watch.set_defaults(func=_watch)

    cancel = subparsers.add_parser("cancel", help="cancel a build and follow its jobs stopping")
    _add_server(cancel)
    _add_json(cancel)
    cancel.add_argument("build_id")
    cancel.add_argument("--reason", default="")
    cancel.add_argument(
        "--grace",
        type=_non_negative_float,
        metavar="SECONDS",
        help="time between SIGTERM and SIGKILL (default: the server's)",
    )
    cancel.add_argument("--force", action="store_true", help="skip the grace period")
    cancel.add_argument("--requested-by", default=_who_am_i())
    cancel.set_defaults(func=_cancel)


def _reports_errors(command: Command) -> Command:
    """Turn the errors a user can cause into a message on stderr and an exit code."""

    @wraps(command)
    async def run(args: argparse.Namespace) -> int:
        try:
            return await command(args)
        except StreamEndedEarly as error:
            # A stream ending without its last message means the server went away.
            print(f"error: {cli_output.clean(error.details)}", file=sys.stderr, flush=True)
            return EXIT_UNAVAILABLE
        except BuildControlError as error:
            print(f"error: {cli_output.clean(str(error))}", file=sys.stderr, flush=True)
            return _EXIT_BY_CODE.get(error.code, EXIT_BUILD_NOT_SUCCEEDED)
        except (PipelineFileError, OSError) as error:
            print(f"error: {cli_output.clean(str(error))}", file=sys.stderr, flush=True)
            return EXIT_NOT_FOUND_OR_INVALID

    return run


async def _agent(args: argparse.Namespace) -> int:
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s"
        )
    labels: dict[str, str] = {}
    for group in args.labels:
        labels.update(group)
    options = AgentOptions(
        work_dir=args.work_dir,
        shutdown_grace_seconds=args.shutdown_grace,
        backoff=BackoffPolicy(initial=min(0.2, args.reconnect_max), maximum=args.reconnect_max),
    )
    agent = Agent(args.server, args.agent_id, labels, args.capacity, options=options)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, agent.request_shutdown, sig.name)
    try:
        await agent.run()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    return EXIT_OK


@_reports_errors
async def _submit(args: argparse.Namespace) -> int:
    request = load_pipeline_file(args.file)
    async with BuildControlClient(args.server) as client:
        build = await client.submit(request)
        _print(cli_output.to_json(build) if args.json else f"{build.build_id} {_status(build)}")
        if args.watch:
            return await _follow(client, build.build_id, args.json)
    return EXIT_OK


@_reports_errors
async def _get(args: argparse.Namespace) -> int:
    async with BuildControlClient(args.server) as client:
        build = await client.get(args.build_id)
    if args.json:
        _print(cli_output.to_json(build))
    else:
        for line in cli_output.build_details(build):
            _print(line)
    return EXIT_OK


@_reports_errors
async def _list(args: argparse.Namespace) -> int:
    async with BuildControlClient(args.server) as client:
        builds, next_token = await client.list(args.page_size, args.page_token, args.pipeline)
    for build in builds:
        _print(cli_output.to_json(build) if args.json else cli_output.build_line(build))
    if next_token:
        # On stderr, so stdout stays one build per line for pipes.
        print(f"next page: --page-token {next_token}", file=sys.stderr, flush=True)
    return EXIT_OK


@_reports_errors
async def _watch(args: argparse.Namespace) -> int:
    async with BuildControlClient(args.server) as client:
        return await _follow(client, args.build_id, args.json)


@_reports_errors
async def _cancel(args: argparse.Namespace) -> int:
    async with BuildControlClient(args.server) as client:
        events = client.cancel(
            args.build_id,
            reason=args.reason,
            force=args.force,
            grace_period_seconds=args.grace,
            requested_by=args.requested_by,
        )
        async with aclosing(events):
            async for event in events:
                _print(cli_output.to_json(event) if args.json else cli_output.cancel_line(event))
                if event.HasField("finished"):
                    return EXIT_OK
    raise StreamEndedEarly("the server ended the Cancel stream before the build was terminal")


async def _follow(client: BuildControlClient, build_id: str, as_json: bool) -> int:
    """Print each watch event; the exit code follows the build's terminal status."""
    status = build_pb2.BUILD_STATUS_UNSPECIFIED
    async with aclosing(client.watch(build_id)) as events:
        async for event in events:
            _print(cli_output.to_json(event) if as_json else cli_output.watch_line(event))
            if event.HasField("snapshot"):
                status = event.snapshot.status
            elif event.HasField("build_changed"):
                status = event.build_changed.status
    if status not in _TERMINAL_EXIT:
        raise StreamEndedEarly("the watch ended before the build was terminal")
    return _TERMINAL_EXIT[status]


def _print(line: str) -> None:
    # Flushed per line: a pipe reader (or a test) sees each event as it happens.
    print(line, flush=True)


def _status(build: build_pb2.Build) -> str:
    return cli_output.build_status(build.status)


def _add_server(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--server", default=DEFAULT_SERVER, help=f"server address (default {DEFAULT_SERVER})"
    )


def _add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object per line")


def _labels(text: str) -> dict[str, str]:
    labels: dict[str, str] = {}
    for item in text.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep or not key.strip():
            raise argparse.ArgumentTypeError(f"label {item!r} is not KEY=VALUE")
        labels[key.strip()] = value.strip()
    return labels


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def _who_am_i() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"  # no login name in the environment or the password database
    return f"{user}@{socket.gethostname()}"
