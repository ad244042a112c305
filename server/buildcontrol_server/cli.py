"""The `buildcontrol` command: `serve` here, the client commands from buildcontrol_client."""

from __future__ import annotations

import argparse
import asyncio
import difflib
import importlib
import os
import sys
from collections.abc import Callable
from pathlib import Path

from buildcontrol_server.cli_environment import apply_environment
from buildcontrol_server.config import Settings
from buildcontrol_server.observability.logs import LOG_FORMATS
from buildcontrol_server.observability.logs import configure as configure_logging
from buildcontrol_server.security import serve_flags, token_cli
from buildcontrol_server.store.factory import STORE_ENV, StoreUrlError, check_url
from buildcontrol_server.version import version

LOOPS = ("asyncio", "uvloop")

EXAMPLES = """\
examples (the first `serve` makes data/admin.token and data/agent.token):
  buildcontrol serve                                  # SQLite under ./data, gRPC on 127.0.0.1:50051
  buildcontrol agent --agent-id agent-1 --token-file data/agent.token --work-dir /tmp/bc-work
  export BUILDCONTROL_TOKEN=$(cat data/admin.token)
  B=$(buildcontrol submit examples/sleepy.yaml)
  buildcontrol cancel "$B" --reason "wrong branch" --grace 5s

exit codes: 0 ok, 1 build FAILED, 2 usage, 3 server unavailable, 4 not found or invalid,
5 build CANCELED, 6 permission denied, 130 interrupted (details in docs/cli.md)
"""


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT (e.g. 0.0.0.0:9464)")
    return host.strip("[]"), int(port)


def _serve_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    defaults = Settings()
    serve = subparsers.add_parser("serve", help="run the server")
    serve.add_argument(
        "--data-dir",
        type=Path,
        default=defaults.data_dir,
        help="directory of the SQLite database (buildcontrol.sqlite3) and the tokens",
    )
    serve.add_argument(
        "--store",
        type=_store_url,
        # From the environment so a password in the URL stays out of `ps` output.
        default=os.environ.get(STORE_ENV) or None,
        metavar="URL",
        help=f"postgresql://USER@HOST:PORT/DB to store builds in PostgreSQL (also ${STORE_ENV});"
        " none: SQLite under --data-dir",
    )
    serve.add_argument("--listen", default=defaults.listen, help="gRPC host:port")
    serve.add_argument(
        "--metrics-port", type=int, default=defaults.metrics_port, help="0 picks a free port"
    )
    serve.add_argument(
        "--metrics-listen",
        type=_host_port,
        metavar="HOST:PORT",
        help="address of /metrics (default 127.0.0.1:--metrics-port); 0.0.0.0:9464 lets a "
        "remote Prometheus scrape it",
    )
    serve.add_argument(
        "--default-grace",
        type=float,
        default=defaults.default_grace_period,
        help="seconds between SIGTERM and SIGKILL when a cancel gives none",
    )
    serve.add_argument(
        "--stop-ack-timeout",
        type=float,
        default=defaults.stop_ack_timeout,
        help="seconds an agent has after the grace to confirm a stop, else FORCED",
    )
    serve.add_argument(
        "--reconnect-window",
        type=float,
        default=defaults.reconnect_window,
        help="seconds a dropped agent's jobs wait for it before they end LOST/FORCED",
    )
    serve.add_argument(
        "--cleanup-timeout",
        type=float,
        default=defaults.cleanup_timeout,
        help="seconds the cleanup (run_on_cancel) steps of a job, or a cleanup job, may run",
    )
    serve.add_argument(
        "--job-timeout", type=float, default=defaults.job_timeout, help="seconds (default 1 h)"
    )
    serve.add_argument(
        "--queue-timeout", type=float, default=defaults.queue_timeout, help="seconds (default 24 h)"
    )
    serve.add_argument(
        "--audit-interval",
        type=float,
        default=defaults.audit_interval,
        help="seconds between invariant audits and stuck-cancel gauge refreshes (0: off)",
    )
    serve.add_argument(
        "--loop",
        choices=LOOPS,
        default="asyncio",
        help="event loop: asyncio, or uvloop (pip install uvloop)",
    )
    serve.add_argument(
        "--webhook-url",
        action="append",
        default=[],
        metavar="URL",
        help="POST every finished cancel to URL (repeatable; durable outbox, at least once)",
    )
    serve.add_argument(
        "--webhook-max-attempts",
        type=int,
        default=defaults.webhook_max_attempts,
        help="tries in a row per delivery before it is parked (resent when the endpoint is back)",
    )
    serve.add_argument(
        "--webhook-retry-delay",
        type=float,
        default=defaults.webhook_base_delay,
        help="seconds before the first retry; doubles per attempt",
    )
    serve.add_argument(
        "--webhook-timeout", type=float, default=defaults.webhook_request_timeout, help="seconds"
    )
    serve.add_argument(
        "--webhook-breaker-threshold", type=int, default=defaults.webhook_breaker_threshold
    )
    serve.add_argument(
        "--webhook-breaker-cooldown",
        type=float,
        default=defaults.webhook_breaker_cooldown,
        help="seconds",
    )
    serve.add_argument(
        "--webhook-queue-size",
        type=int,
        default=defaults.webhook_queue_size,
        help="deliveries held in memory per endpoint; past it the oldest waits in the outbox",
    )
    serve.add_argument(
        "--audit-batch",
        type=int,
        default=defaults.audit_batch,
        help="audit records written per transaction",
    )
    serve.add_argument(
        "--effects-stop-timeout",
        type=float,
        default=defaults.effects_stop_timeout,
        help="seconds the audit and webhooks get to flush at shutdown",
    )
    serve.add_argument(
        "--log-limit",
        type=int,
        default=defaults.log_limit_bytes,
        metavar="BYTES",
        help="most bytes of step output kept per job; past it one line says how much was dropped",
    )
    serve.add_argument(
        "--log-retention",
        type=float,
        default=defaults.log_retention_days,
        metavar="DAYS",
        help="days a job's log is kept after its last byte (0: forever)",
    )
    serve_flags.add_arguments(serve, defaults)  # --auth, --tokens-file, --tls-*, --max-*
    serve.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    serve.add_argument(
        "--log-format", choices=LOG_FORMATS, default="text", help="json: one object per line"
    )
    serve.set_defaults(func=_serve)


def _store_url(text: str) -> str:
    try:
        return check_url(text)
    except StoreUrlError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


async def _serve(args: argparse.Namespace) -> int:
    from buildcontrol_server.app import serve

    defaults = Settings()

    settings = Settings(
        data_dir=args.data_dir,
        store_url=args.store,
        listen=args.listen,
        metrics_host=args.metrics_listen[0] if args.metrics_listen else defaults.metrics_host,
        metrics_port=args.metrics_listen[1] if args.metrics_listen else args.metrics_port,
        default_grace_period=args.default_grace,
        stop_ack_timeout=args.stop_ack_timeout,
        reconnect_window=args.reconnect_window,
        cleanup_timeout=args.cleanup_timeout,
        job_timeout=args.job_timeout,
        queue_timeout=args.queue_timeout,
        audit_interval=args.audit_interval,
        **serve_flags.settings_of(args),
        webhook_urls=tuple(args.webhook_url),
        webhook_max_attempts=args.webhook_max_attempts,
        webhook_base_delay=args.webhook_retry_delay,
        webhook_request_timeout=args.webhook_timeout,
        webhook_breaker_threshold=args.webhook_breaker_threshold,
        webhook_breaker_cooldown=args.webhook_breaker_cooldown,
        webhook_queue_size=args.webhook_queue_size,
        audit_batch=args.audit_batch,
        effects_stop_timeout=args.effects_stop_timeout,
        log_limit_bytes=args.log_limit,
        log_retention_days=args.log_retention,
    )
    return await serve(settings)


def _loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
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


def build_parser() -> argparse.ArgumentParser:
    import buildcontrol_client.cli as client_cli

    parser = argparse.ArgumentParser(
        prog="buildcontrol",
        description="gRPC control plane for CI builds",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"buildcontrol {version()}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    _serve_parser(subparsers)
    token_cli.register(subparsers)
    client_cli.register(subparsers)
    _completion(subparsers)
    return parser


def _completion(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    completion = subparsers.add_parser(
        "completion",
        help="print a shell completion script",
        description='Print a completion script: eval "$(buildcontrol completion bash)" in '
        "~/.bashrc, or buildcontrol completion zsh > ~/.zfunc/_buildcontrol.",
    )
    completion.add_argument("shell", choices=("bash", "zsh", "tcsh"))
    completion.set_defaults(func=_print_completion)


async def _print_completion(args: argparse.Namespace) -> int:
    import shtab

    print(shtab.complete(build_parser(), shell=args.shell))
    return 0


def _suggest(parser: argparse.ArgumentParser, argv: list[str]) -> None:
    """`buildcontrol cancle`: say what was meant instead of listing every command."""
    commands = next(
        action.choices
        for action in parser._actions
        if isinstance(action, argparse._SubParsersAction)
    )
    word = next((a for a in argv if not a.startswith("-")), None)
    if word is None or word in commands:
        return
    close = difflib.get_close_matches(word, list(commands), n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else f" (commands: {', '.join(commands)})"
    parser.error(f"unknown command {word!r}{hint}")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    _suggest(parser, argv)
    apply_environment(parser, argv, os.environ)
    args = parser.parse_args(argv)
    # Only `serve` has --log-format; the client commands log text.
    configure_logging(getattr(args, "log_level", "INFO"), getattr(args, "log_format", "text"))
    loop_factory = _loop_factory(getattr(args, "loop", "asyncio"))
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            code: int = runner.run(args.func(args))
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:
        # `buildcontrol get ID | head -1`: the reader left; say nothing, like cat or git.
        # stdout is pointed at /dev/null so the interpreter's last flush cannot fail.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 141  # 128 + SIGPIPE, what a shell reports for a tool killed by SIGPIPE
    return code


if __name__ == "__main__":
    sys.exit(main())
