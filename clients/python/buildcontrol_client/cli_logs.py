"""`buildcontrol logs BUILD [JOB] [-f] [--since-offset N]`: what a build's steps
printed, and `watch --logs`' log lines.

One job: its log as it is. Several (no JOB): each line prefixed by its job's name, like
`docker compose logs`; with -f the jobs' lines interleave as they come. Bytes that are
not UTF-8 are shown with replacement characters. ANSI colour codes pass through to a
terminal (`logs` and `watch --logs`); piped output and --json get them stripped."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable

from buildcontrol_proto.v1 import build_pb2

from buildcontrol_client import cli_commands
from buildcontrol_client.cli_commands import connect
from buildcontrol_client.cli_exit import EXIT_NOT_FOUND_OR_INVALID, EXIT_OK
from buildcontrol_client.cli_output import print_error
from buildcontrol_client.client import BuildControlClient
from buildcontrol_client.log_text import LogText

# Ends a prefixed line that set a colour (SGR reset), on a terminal.
RESET = "\x1b[0m"

# After the build ended, how long `watch --logs` waits for its jobs' last log bytes.
WATCH_LOG_DRAIN_SECONDS = 5.0


def add_command(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    command: Callable[..., argparse.ArgumentParser],
    reports_errors: Callable[..., object],
) -> None:
    logs = command(
        subparsers,
        "logs",
        "print what a build's steps printed (one job, or every job prefixed by its name)",
        "buildcontrol logs BUILD_ID build -f",
        "JOB is a job's id or name. ANSI colours pass to a terminal and are stripped "
        "when piped or with --json.",
    )
    logs.add_argument("build_id")
    logs.add_argument("job", nargs="?", default="", help="job id or name (default: every job)")
    logs.add_argument(
        "-f", "--follow", action="store_true", help="keep printing until the jobs end"
    )
    logs.add_argument(
        "--since-offset",
        type=int,
        default=0,
        metavar="BYTES",
        help="start at this byte of each job's log (a reader's last offset)",
    )
    logs.set_defaults(func=reports_errors(logs_command))


class LogPrinter:
    """Writes log bytes to stdout: raw for one job, else line by line with a prefix.
    Each job's bytes go through its own LogText (log_text.py): escape sequences and
    UTF-8 characters cut by a chunk boundary are completed by the job's next chunk."""

    def __init__(
        self, jobs: dict[str, str], as_json: bool, keep_ansi: bool, prefixed: bool | None = None
    ) -> None:
        """`prefixed`: lines carry their job's name (default: when there are several)."""
        self._prefixed = len(jobs) > 1 if prefixed is None else prefixed
        width = max((len(name) for name in jobs.values()), default=0)
        self._prefix = {job: f"{name:<{width}} | " for job, name in jobs.items()}
        self._json = as_json
        self._keep_ansi = keep_ansi and not as_json
        self._texts: dict[str, LogText] = {}
        self._partial: dict[str, bytes] = {}
        self._ends: dict[str, int] = {}

    def _text(self, job_id: str) -> LogText:
        if job_id not in self._texts:
            self._texts[job_id] = LogText(self._keep_ansi)
        return self._texts[job_id]

    def write(self, job_id: str, offset: int, data: bytes) -> None:
        text = self._text(job_id)
        self._ends[job_id] = offset + len(data)
        if self._json:
            self._json_line(job_id, offset, text.text_of(data))
            return
        if not self._prefixed:
            sys.stdout.write(text.text_of(data))
            sys.stdout.flush()
            return
        lines = (self._partial.pop(job_id, b"") + text.bytes_of(data)).split(b"\n")
        self._partial[job_id] = lines.pop()
        for line in lines:
            self.line(job_id, line)

    def _json_line(self, job_id: str, offset: int, text: str) -> None:
        if text:  # a chunk that was all the start of a cut-off escape shows nothing yet
            print(json.dumps({"jobId": job_id, "offset": str(offset), "text": text}), flush=True)

    def line(self, job_id: str, line: bytes) -> None:
        shown = line.decode(errors="replace")
        if self._keep_ansi and "\x1b" in shown:
            # A colour left on would paint the next line's prefix (another job's).
            shown += RESET
        print(self._prefix.get(job_id, "") + shown, flush=True)

    def end(self, job_id: str) -> None:
        text = self._texts.pop(job_id, None)
        if text is None:
            return
        if self._json:
            self._json_line(job_id, self._ends.get(job_id, 0), text.rest())
        elif not self._prefixed:
            sys.stdout.write(text.rest())
            sys.stdout.flush()
        else:
            rest = self._partial.pop(job_id, b"") + text.rest_bytes()
            if rest:
                self.line(job_id, rest)


def chosen_jobs(build: build_pb2.Build, job: str) -> dict[str, str] | None:
    """Job id -> name of the jobs to show (in the build's order); None: no such job."""
    jobs = {j.job_id: j.name or j.job_id for stage in build.stages for j in stage.jobs}
    if not job:
        return jobs
    picked = {i: n for i, n in jobs.items() if job in (i, n)}
    return picked or None


async def print_log(
    client: BuildControlClient,
    build_id: str,
    job_id: str,
    offset: int,
    follow: bool,
    printer: LogPrinter,
) -> None:
    if follow:
        async for piece in client.follow_job_log(build_id, job_id, offset):
            printer.write(job_id, piece.offset, piece.data)
    else:
        while True:
            page = await client.get_job_log(build_id, job_id, offset)
            if not page.data:
                break
            printer.write(job_id, page.offset, page.data)
            offset = page.offset + len(page.data)
    printer.end(job_id)


async def print_logs(
    client: BuildControlClient,
    build: build_pb2.Build,
    jobs: dict[str, str],
    printer: LogPrinter,
    follow: bool,
    offset: int = 0,
) -> None:
    """Every chosen job's log: one after another, or all at once when following."""
    if follow:
        async with asyncio.TaskGroup() as group:
            for job_id in jobs:
                group.create_task(print_log(client, build.build_id, job_id, offset, True, printer))
        return
    for job_id in jobs:
        await print_log(client, build.build_id, job_id, offset, False, printer)


async def logs_command(args: argparse.Namespace) -> int:
    if args.since_offset < 0:
        print_error("INVALID_ARGUMENT: --since-offset must not be negative")
        return EXIT_NOT_FOUND_OR_INVALID
    async with connect(args) as client:
        build = await client.get(args.build_id)
        jobs = chosen_jobs(build, args.job)
        if jobs is None:
            print_error(f"NOT_FOUND: build {args.build_id} has no job {args.job}")
            return EXIT_NOT_FOUND_OR_INVALID
        keep_ansi = sys.stdout.isatty() and not args.json
        printer = LogPrinter(jobs, args.json, keep_ansi)
        await print_logs(client, build, jobs, printer, args.follow, args.since_offset)
    return EXIT_OK


async def watch_command(args: argparse.Namespace) -> int:
    """`watch`, and with --logs the jobs' output interleaved with the state changes
    (plain lines then, even on a terminal: a redrawn picture cannot interleave)."""
    if not args.logs:
        return await cli_commands.watch(args)
    mode = cli_commands.OutputMode.of(args)
    if mode is cli_commands.OutputMode.LIVE:
        mode = cli_commands.OutputMode.PLAIN
    async with connect(args) as client:
        build = await client.get(args.build_id)
        jobs = chosen_jobs(build, "") or {}
        # Prefixed even for one job: state lines come in between. Colours pass to a
        # terminal, as for `logs`.
        keep_ansi = sys.stdout.isatty() and not args.json
        printer = LogPrinter(jobs, args.json, keep_ansi, prefixed=True)
        async with asyncio.TaskGroup() as group:
            logs = group.create_task(print_logs(client, build, jobs, printer, follow=True))
            code = await cli_commands.follow(client, args.build_id, mode, args.reconnect_for)
            # The build is over: its jobs' logs end by themselves; do not wait long.
            await asyncio.wait({logs}, timeout=WATCH_LOG_DRAIN_SECONDS)
            logs.cancel()
    return code
