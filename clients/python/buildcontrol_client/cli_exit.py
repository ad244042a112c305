"""Exit codes of the client subcommands: one table, shown by every `--help` and in
docs/cli.md (a test keeps the two in step)."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_NOT_FOUND_OR_INVALID = 4
EXIT_CANCELED = 5
EXIT_DENIED = 6

EXIT_CODES: tuple[tuple[int, str], ...] = (
    (EXIT_OK, "success (for watch: the build SUCCEEDED; for cancel: it is CANCELED)"),
    (EXIT_FAILED, "the build FAILED (watch, submit --watch), or an unexpected server error"),
    (EXIT_USAGE, "usage: bad arguments"),
    (EXIT_UNAVAILABLE, "server unavailable, timed out, or a stream ended early"),
    (
        EXIT_NOT_FOUND_OR_INVALID,
        "not found, invalid input (pipeline file, ids), or the build is already finished",
    ),
    (EXIT_CANCELED, "the build was CANCELED (watch, submit --watch)"),
    (EXIT_DENIED, "no valid token (UNAUTHENTICATED), or the token's role may not do this"),
)
# Not ours but worth knowing: Ctrl-C ends any command with 130.


def exit_codes_help() -> str:
    lines = ["exit codes:"]
    lines += [f"  {code:>3}  {meaning}" for code, meaning in EXIT_CODES]
    lines.append("  130  interrupted (Ctrl-C)")
    return "\n".join(lines)
