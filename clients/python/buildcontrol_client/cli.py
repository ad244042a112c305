"""Client subcommands of the `buildcontrol` CLI: agent, submit, get, list, watch, cancel,
cancel-builds, agents. Their arguments are declared here; what they do is in
cli_commands.py; the exit codes in cli_exit.py.

The top-level parser (cli/buildcontrol_cli/main.py) calls `register(subparsers)` and
then `asyncio.run(args.func(args))`; the coroutine's result is the exit code.
"""

from __future__ import annotations

import argparse
import getpass
import os
import socket
import textwrap
from collections.abc import Awaitable, Callable
from functools import wraps
from pathlib import Path
from typing import TypeAlias

import grpc

from buildcontrol_client import (
    cli_admin,
    cli_agent,
    cli_commands,
    cli_health,
    cli_logs,
    cli_output,
    cli_webhooks,
)
from buildcontrol_client.arg_types import (
    non_negative_duration,
    positive_int,
)
from buildcontrol_client.auth import TOKEN_VARIABLE, TokenFileError
from buildcontrol_client.cli_exit import (
    EXIT_DENIED,
    EXIT_FAILED,
    EXIT_NOT_FOUND_OR_INVALID,
    EXIT_UNAVAILABLE,
    exit_codes_help,
)
from buildcontrol_client.cli_follow import RECONNECT_FOR_SECONDS
from buildcontrol_client.credentials import add_tls_arguments
from buildcontrol_client.errors import BuildControlError, StreamEndedEarly
from buildcontrol_client.pipeline_file import PipelineFileError

DEFAULT_SERVER = "127.0.0.1:50051"
# Like BUILDCONTROL_TOKEN: set once per shell instead of --server on every command.
SERVER_VARIABLE = "BUILDCONTROL_ADDR"

_EXIT_BY_CODE = {
    grpc.StatusCode.UNAVAILABLE: EXIT_UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED: EXIT_UNAVAILABLE,
    grpc.StatusCode.NOT_FOUND: EXIT_NOT_FOUND_OR_INVALID,
    grpc.StatusCode.INVALID_ARGUMENT: EXIT_NOT_FOUND_OR_INVALID,
    grpc.StatusCode.FAILED_PRECONDITION: EXIT_NOT_FOUND_OR_INVALID,
    # A request_id reused for another request.
    grpc.StatusCode.ALREADY_EXISTS: EXIT_NOT_FOUND_OR_INVALID,
    grpc.StatusCode.UNAUTHENTICATED: EXIT_DENIED,
    grpc.StatusCode.PERMISSION_DENIED: EXIT_DENIED,
}

Command = Callable[[argparse.Namespace], Awaitable[int]]
# argparse's class is subscriptable only in the stubs: a TypeAlias keeps it a type for
# mypy and a plain string at run time.
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"

_JSON_HELP = "print one JSON object per line (proto JSON field names, as grpcurl shows them)"
_OUTPUT_NOTE = (
    "On a terminal the progress is redrawn in place; piped, it is one plain line per event."
)


def register(subparsers: Subparsers) -> None:
    """Add the client subcommands; each sets `args.func`."""
    cli_agent.register(subparsers, _command)
    _register_submit(subparsers)
    _register_reads(subparsers)
    _register_cancels(subparsers)
    _register_fleet(subparsers)


def _register_submit(subparsers: Subparsers) -> None:
    submit = _command(
        subparsers,
        "submit",
        "submit a pipeline file as a new build",
        "buildcontrol submit examples/hello.yaml --watch",
        "Prints the new build's id and status. " + _OUTPUT_NOTE,
    )
    submit.add_argument("file", type=Path, help="pipeline file (YAML or JSON)")
    submit.add_argument("--watch", action="store_true", help="then watch the build to its end")
    _add_reconnect_for(submit)
    submit.add_argument(
        "--request-id",
        default="",
        help="idempotency key: a retry with the same key (and file) returns the build the "
        "first attempt made (default: a new UUID per run)",
    )
    submit.set_defaults(func=_reports_errors(cli_commands.submit))


def _register_reads(subparsers: Subparsers) -> None:
    """get, list, watch."""
    get = _command(
        subparsers,
        "get",
        "show a build with its jobs and steps",
        "buildcontrol get BUILD_ID --json | jq .status",
    )
    get.add_argument("build_id")
    get.set_defaults(func=_reports_errors(cli_commands.get))

    listing = _command(
        subparsers,
        "list",
        "list builds, newest first",
        "buildcontrol list --pipeline hello --page-size 20",
        "The next page's token, if any, goes to stderr.",
    )
    listing.add_argument("--pipeline", default="")
    listing.add_argument("--page-size", type=positive_int, default=0)
    listing.add_argument("--page-token", default="")
    listing.set_defaults(func=_reports_errors(cli_commands.list_builds))

    watch = _command(
        subparsers,
        "watch",
        "follow a build until it ends; the exit code tells how it ended",
        "buildcontrol watch BUILD_ID && echo deployed",
        _OUTPUT_NOTE,
    )
    watch.add_argument("build_id")
    _add_reconnect_for(watch)
    watch.add_argument(
        "--logs",
        action="store_true",
        help="interleave the jobs' output (prefixed by job) with the state changes",
    )
    watch.set_defaults(func=_reports_errors(cli_logs.watch_command))

    cli_logs.add_command(subparsers, _command, _reports_errors)


def _register_cancels(subparsers: Subparsers) -> None:
    """cancel, cancel-builds."""
    cancel = _command(
        subparsers,
        "cancel",
        "cancel a build and follow its jobs stopping",
        'buildcontrol cancel BUILD_ID --reason "wrong branch" --grace 5',
        "Ends once every job stopped (and its cleanup steps ran). " + _OUTPUT_NOTE,
    )
    cancel.add_argument("build_id")
    _add_cancel_options(cancel)
    cancel.set_defaults(func=_reports_errors(cli_commands.cancel))

    batch = _command(
        subparsers,
        "cancel-builds",
        "cancel every live build chosen by ids, pipeline or concurrency group",
        "buildcontrol cancel-builds --pipeline deploy --reason freeze",
        "Prints one line per build as it ends, then a summary. Exits 4 if a named build "
        "was not found or had already finished.",
    )
    selector = batch.add_mutually_exclusive_group(required=True)
    selector.add_argument("--ids", nargs="+", metavar="BUILD_ID", help="these builds")
    selector.add_argument("--pipeline", help="every live build of this pipeline")
    selector.add_argument("--concurrency-group", help="every live build of this group")
    _add_cancel_options(batch)
    batch.add_argument(
        "--dry-run", action="store_true", help="list the live builds it would cancel; cancel none"
    )
    batch.add_argument(
        "--yes", "-y", action="store_true", help="do not ask on a terminal before cancelling >1"
    )
    batch.set_defaults(func=_reports_errors(cli_commands.cancel_builds))


def _register_fleet(subparsers: Subparsers) -> None:
    """agents, health, webhooks."""
    agents = _command(
        subparsers,
        "agents",
        "list the agents the server knows (connected, and awaited after a drop)",
        "buildcontrol agents --json",
    )
    agents.set_defaults(func=_reports_errors(cli_commands.agents))

    health = _command(
        subparsers,
        "health",
        "ask the server's gRPC health service (for HEALTHCHECKs and probes)",
        "buildcontrol health --server 127.0.0.1:50051",
        "Prints SERVING or NOT_SERVING; needs no token.",
    )
    cli_health.add_arguments(health)
    health.set_defaults(func=_reports_errors(cli_health.health))
    webhooks = subparsers.add_parser(
        "webhooks",
        help="the webhook outbox: list deliveries, redeliver one (admins)",
        description="The webhook outbox and its delivery log, through the admin RPCs.",
    )
    cli_webhooks.add_commands(webhooks, _command, _reports_errors)
    admin = subparsers.add_parser(
        "admin",
        help="housekeeping of the server's database: purge (admins)",
        description="Housekeeping of the server's database, through its admin RPCs.",
    )
    cli_admin.add_commands(admin, _command, _reports_errors)


def _command(
    subparsers: Subparsers, name: str, summary: str, example: str, notes: str = ""
) -> argparse.ArgumentParser:
    """A subcommand whose --help ends with an example and the exit codes."""
    parser = subparsers.add_parser(
        name,
        help=summary,
        description=textwrap.fill(f"{summary[0].upper()}{summary[1:]}. {notes}".strip(), 80),
        epilog=f"example:\n  {example}\n\n{exit_codes_help()}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_server(parser)
    parser.add_argument(
        "--token-file",
        type=Path,
        metavar="FILE",
        help=f"bearer token for a server with authentication on (default: ${TOKEN_VARIABLE})",
    )
    add_tls_arguments(parser)  # --tls, --tls-ca, --tls-cert, --tls-key (credentials.py)
    parser.add_argument("--json", action="store_true", help=_JSON_HELP)
    return parser


def _add_reconnect_for(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--reconnect-for",
        type=non_negative_duration,
        default=RECONNECT_FOR_SECONDS,
        metavar="DURATION",
        help="keep reconnecting to a server that went away this long, then exit 3 "
        f"(default {RECONNECT_FOR_SECONDS:g}s; 0: give up at once)",
    )


def _add_cancel_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reason", default="", help="why (kept with the build)")
    parser.add_argument(
        "--grace",
        type=non_negative_duration,
        metavar="DURATION",
        help="time between SIGTERM and SIGKILL: 30, 5s, 2m, 1h30m (default: the server's)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="SIGKILL at once and skip cleanup steps; escalates a cancel already under way",
    )
    parser.add_argument(
        "--requested-by", default=_who_am_i(), help="who cancels (default: user@host)"
    )


def _reports_errors(command: Command) -> Command:
    """Turn the errors a user can cause into a message on stderr and an exit code."""

    @wraps(command)
    async def run(args: argparse.Namespace) -> int:
        try:
            return await command(args)
        except StreamEndedEarly as error:
            # A stream ending without its last message means the server went away.
            _error(f"UNAVAILABLE: {error.details}")
            return EXIT_UNAVAILABLE
        except BuildControlError as error:
            _error(str(error))  # already "CODE: message"
            return _EXIT_BY_CODE.get(error.code, EXIT_FAILED)
        except (PipelineFileError, TokenFileError) as error:
            _error(f"INVALID_ARGUMENT: {error}")
            return EXIT_NOT_FOUND_OR_INVALID
        except BrokenPipeError:
            raise  # stdout's reader went away: main() ends quietly
        except OSError as error:
            _error(f"{_os_error_code(error)}: {_os_error_text(error)}")
            return EXIT_NOT_FOUND_OR_INVALID

    return run


def _os_error_code(error: OSError) -> str:
    """The gRPC code name a local failure is closest to: one vocabulary for every error."""
    if isinstance(error, FileNotFoundError):
        return "NOT_FOUND"
    if isinstance(error, PermissionError):
        return "PERMISSION_DENIED"
    return "INVALID_ARGUMENT"


def _os_error_text(error: OSError) -> str:
    if error.filename is None:
        return error.strerror or str(error)
    return f"{error.strerror}: {error.filename}"


def _error(message: str) -> None:
    cli_output.print_error(message)


def _add_server(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--server",
        default=os.environ.get(SERVER_VARIABLE) or DEFAULT_SERVER,
        help=f"server address HOST:PORT, or several servers as ipv4:HOST:PORT,HOST:PORT or"
        f" dns:///NAME:PORT, calls spread over them (default ${SERVER_VARIABLE}, else"
        f" {DEFAULT_SERVER})",
    )


def _who_am_i() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"  # no login name in the environment or the password database
    return f"{user}@{socket.gethostname()}"
