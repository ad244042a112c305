"""The `buildcontrol` command: the server's commands (serve, token) from
buildcontrol_server, the client commands from buildcontrol_client, and `completion`."""

from __future__ import annotations

import argparse
import asyncio
import difflib
import os
import sys

import buildcontrol_client.cli as client_cli
from buildcontrol_server import cli as server_cli
from buildcontrol_server.observability.logs import configure as configure_logging
from buildcontrol_server.version import version

from buildcontrol_cli.environment import apply_environment

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="buildcontrol",
        description="gRPC control plane for CI builds",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"buildcontrol {version()}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    server_cli.register(subparsers)
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
    # Only `serve` has --log-format and --loop; the client commands log text.
    settings = server_cli.process_settings(args, os.environ)
    configure_logging(settings.log_level, settings.log_format)
    loop_factory = server_cli.loop_factory(settings.loop)
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
