"""The server's commands of `buildcontrol`: `serve` and `token` (the `buildcontrol`
command itself, with the client commands, is buildcontrol_cli)."""

from __future__ import annotations

import argparse
import asyncio
import importlib
from collections.abc import Callable, Mapping

from buildcontrol_server import config_sources
from buildcontrol_server.config import Settings
from buildcontrol_server.security import token_cli

# A command whose parser has this default reads its variables itself (`serve`, with its
# config file: config_sources.py); the `buildcontrol` command sets no flag of it from
# the environment.
OWN_ENVIRONMENT = "reads_own_environment"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    _serve_parser(subparsers)
    token_cli.register(subparsers)


def process_settings(args: argparse.Namespace, environ: Mapping[str, str]) -> Settings:
    """`serve`'s settings, checked (exit 2 on a bad value; kept in args for `_serve`);
    the defaults for any other command (whose logs are text at INFO, on asyncio)."""
    if args.command != "serve":
        return Settings()
    settings: Settings = config_sources.settings_of(args, environ)
    args.settings = settings
    return settings


def _serve_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = subparsers.add_parser(
        "serve",
        help="run the server",
        description="Run the server. Each setting comes from its flag, else its "
        "BUILDCONTROL_* variable, else the --config file, else its default "
        "(docs/operations.md).",
    )
    config_sources.add_flags(serve)
    # The variables of serve's flags are read with the file's keys (config_sources.py).
    serve.set_defaults(func=_serve, **{OWN_ENVIRONMENT: True})


async def _serve(args: argparse.Namespace) -> int:
    from buildcontrol_server.app import serve

    settings: Settings = args.settings
    return await serve(settings)


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """None: asyncio's own loop. uvloop is optional (the `bench` extra installs it)."""
    if name == "uvloop":
        try:
            uvloop = importlib.import_module("uvloop")
        except ImportError:
            raise SystemExit(
                "buildcontrol: --loop uvloop needs uvloop (pip install uvloop)"
            ) from None
        factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
        return factory
    return None
