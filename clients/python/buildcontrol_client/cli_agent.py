"""`buildcontrol agent`: its flags, and running the reference agent until a signal
stops it (registered by cli.py, whose `_command` gives it the common flags)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeAlias

from buildcontrol_client import cli_output
from buildcontrol_client.agent import Agent, AgentOptions
from buildcontrol_client.agent_refusals import AgentRefused
from buildcontrol_client.arg_types import non_negative_duration, positive_duration, positive_int
from buildcontrol_client.auth import TokenFileError, read_token
from buildcontrol_client.backoff import BackoffPolicy
from buildcontrol_client.cli_exit import EXIT_DENIED, EXIT_NOT_FOUND_OR_INVALID, EXIT_OK
from buildcontrol_client.credentials import tls_from
from buildcontrol_client.process_privileges import make_undumpable
from buildcontrol_client.step_environment import StepUser

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
CommandFactory = Callable[..., argparse.ArgumentParser]


def register(subparsers: Subparsers, command: CommandFactory) -> None:
    """Add `buildcontrol agent`; `command` makes a subcommand with the common flags."""
    agent = command(
        subparsers,
        "agent",
        "run a build agent",
        "buildcontrol agent --labels os=linux --capacity 2 --work-dir /var/lib/bc",
        "Runs until SIGTERM or Ctrl-C; logs go to stderr (--json: one JSON object per log record).",
    )
    agent.add_argument("--agent-id", default=f"{socket.gethostname()}-{os.getpid()}")
    agent.add_argument(
        "--labels",
        action="append",
        default=[],
        type=_labels,
        metavar="K=V[,K=V]",
        help="labels offered to jobs (repeatable or comma separated)",
    )
    agent.add_argument("--capacity", type=positive_int, default=1, help="jobs at once")
    agent.add_argument(
        "--work-dir", type=Path, help="run jobs in DIR/<job id>, output in DIR/<job id>.log"
    )
    agent.add_argument(
        "--cgroup-root",
        type=Path,
        metavar="DIR",
        help="make each job's cgroup (v2) under DIR (default: the agent's own cgroup)",
    )
    agent.add_argument(
        "--no-cgroups",
        action="store_true",
        help="process groups only: a step that calls setsid may outlive an agent crash",
    )
    agent.add_argument(
        "--step-user",
        type=_step_user,
        metavar="USER",
        help="run steps as USER (the agent must be root): the token file is out of their reach",
    )
    agent.add_argument(
        "--shutdown-grace",
        type=non_negative_duration,
        default=5.0,
        metavar="DURATION",
        help="SIGTERM-to-SIGKILL time for own jobs when the agent stops",
    )
    agent.add_argument(
        "--reconnect-max",
        type=positive_duration,
        default=5.0,
        metavar="DURATION",
        help="cap of the reconnect backoff",
    )
    agent.set_defaults(func=_agent)


class JsonLogFormatter(logging.Formatter):
    """One JSON object per log record, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


async def _agent(args: argparse.Namespace) -> int:
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(
            level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s"
        )
    if args.json:
        for handler in root.handlers:
            handler.setFormatter(JsonLogFormatter())
    labels: dict[str, str] = {}
    for group in args.labels:
        labels.update(group)
    try:
        token = read_token(args.token_file)
        tls = tls_from(args)
    except (TokenFileError, OSError) as error:
        cli_output.print_error(str(error))
        return EXIT_NOT_FOUND_OR_INVALID
    # Steps run as the agent's user by default: they must not read its memory or the
    # environment it got its token from (/proc/AGENT/environ).
    make_undumpable()
    options = AgentOptions(
        token=token,
        tls=tls,
        use_cgroups=not args.no_cgroups,
        cgroup_root=args.cgroup_root,
        subreaper=True,
        step_user=args.step_user,
        work_dir=args.work_dir,
        shutdown_grace_seconds=args.shutdown_grace,
        backoff=BackoffPolicy(initial=min(0.2, args.reconnect_max), maximum=args.reconnect_max),
    )
    agent = Agent(args.server, args.agent_id, labels, args.capacity, options=options)
    _wait_for_steps_with_pidfds()
    loop = asyncio.get_running_loop()
    # SIGTERM, SIGINT and SIGHUP (a closed terminal, `systemctl reload`): drain, giving
    # jobs their --shutdown-grace; SIGQUIT: kill the jobs at once. Either way the jobs
    # are stopped and reported before the agent exits: none outlives it.
    for sig in GRACEFUL_SIGNALS:
        loop.add_signal_handler(sig, agent.request_shutdown, sig.name)
    loop.add_signal_handler(signal.SIGQUIT, _quit_now, agent)
    try:
        await agent.run()
    except AgentRefused as refused:
        cli_output.print_error(
            f"{refused} (check --token-file / $BUILDCONTROL_TOKEN and --agent-id)"
        )
        return EXIT_DENIED
    finally:
        for sig in (*GRACEFUL_SIGNALS, signal.SIGQUIT):
            loop.remove_signal_handler(sig)
    return EXIT_OK


GRACEFUL_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def _quit_now(agent: Agent) -> None:
    agent.request_shutdown("SIGQUIT")
    agent.request_shutdown("SIGQUIT")  # a second request kills the jobs without grace


def _wait_for_steps_with_pidfds() -> None:
    """Python < 3.12 waits for each child process in a thread of its own, which wakes the
    loop late on a busy machine; a pidfd per child is an event on the loop itself (the
    default from 3.12 on)."""
    if sys.version_info < (3, 12) and hasattr(os, "pidfd_open"):
        watcher = asyncio.PidfdChildWatcher()
        watcher.attach_loop(asyncio.get_running_loop())
        asyncio.get_event_loop_policy().set_child_watcher(watcher)


def _step_user(name: str) -> StepUser:
    try:
        user = StepUser.named(name)
    except KeyError:
        raise argparse.ArgumentTypeError(f"no user {name!r}") from None
    if os.geteuid() != 0:
        raise argparse.ArgumentTypeError("--step-user needs an agent running as root")
    return user


def _labels(text: str) -> dict[str, str]:
    labels: dict[str, str] = {}
    for item in text.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep or not key.strip():
            raise argparse.ArgumentTypeError(f"label {item!r} is not KEY=VALUE")
        labels[key.strip()] = value.strip()
    return labels
