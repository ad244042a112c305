"""Server and agent processes started as a user starts them, and the process checks
e2e tests need (finding a job's step processes, waiting for them to be gone), and
`serve`: the server with its stderr in a file."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.step_processes import marked_processes

BUILDCONTROL = [sys.executable, "-m", "buildcontrol_cli"]
READY = re.compile(r"serving gRPC on (\S+):(\d+), metrics on http://(\S+):(\d+)/metrics")
WAIT = 20.0


@dataclass
class ServerProc:
    process: asyncio.subprocess.Process
    target: str
    metrics_url: str
    data_dir: Path
    port: int

    async def stop(self) -> int:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.process.wait(), WAIT)

    async def kill(self) -> None:
        self.process.kill()
        await self.process.wait()


# The log of every server process started in the running test: read at teardown
# (tests/conftest.py) for the invariant auditor's findings.
SERVER_LOGS: list[Path] = []
INVARIANT_VIOLATED = "invariant violated"


def logged_violations(log: Path) -> list[str]:
    """The invariant auditor's ERROR lines in a server's log."""
    try:
        text = log.read_text(errors="replace")
    except FileNotFoundError:
        return []
    return [line for line in text.splitlines() if INVARIANT_VIOLATED in line]


def audited(extra: tuple[str, ...]) -> list[str]:
    """The auditor every second (5 s by default: most of these tests are shorter),
    unless the test sets its own interval."""
    return [] if "--audit-interval" in extra else ["--audit-interval", "1"]


async def start_server(data_dir: Path, *extra: str, port: int = 0) -> ServerProc:
    # Authentication is on by default; these tests are about builds and processes, so
    # they turn it off unless they ask for it (tests/security start servers with it).
    auth = [] if "--auth" in extra else ["--auth", "off"]
    process = await asyncio.create_subprocess_exec(
        *BUILDCONTROL,
        "serve",
        "--data-dir",
        str(data_dir),
        "--listen",
        f"127.0.0.1:{port}",
        "--metrics-port",
        "0",
        *auth,
        *audited(extra),
        *extra,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    line = (await asyncio.wait_for(process.stdout.readline(), WAIT)).decode()
    match = READY.search(line)
    if match is None:
        await process.wait()
        error = (await process.stderr.read()).decode()
        raise RuntimeError(f"server did not start: {line!r} {error}")
    # Keep stderr drained so the server never blocks on a full pipe.
    log = data_dir / "server.log"
    SERVER_LOGS.append(log)
    asyncio.get_running_loop().create_task(_drain(process.stderr, log))
    host, grpc_port, mhost, mport = match.groups()
    return ServerProc(
        process, f"{host}:{grpc_port}", f"http://{mhost}:{mport}/metrics", data_dir, int(grpc_port)
    )


async def _drain(stream: asyncio.StreamReader, path: Path) -> None:
    with path.open("ab") as log:
        while chunk := await stream.read(65536):
            log.write(chunk)
            log.flush()


@dataclass
class AgentProc:
    agent_id: str
    process: asyncio.subprocess.Process
    log: Path

    async def stop(self) -> int:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.process.wait(), WAIT)


async def start_agent(
    target: str, agent_id: str, work: Path, labels: str = "os=linux", capacity: int = 2, *extra: str
) -> AgentProc:
    log = work / f"agent-{agent_id}.log"
    process = await asyncio.create_subprocess_exec(
        *BUILDCONTROL,
        "agent",
        "--server",
        target,
        "--agent-id",
        agent_id,
        "--labels",
        labels,
        "--capacity",
        str(capacity),
        "--reconnect-max",
        "0.5",
        *extra,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    asyncio.get_running_loop().create_task(_drain(process.stderr, log))
    return AgentProc(agent_id, process, log)


# When each step process job_pids found started (clock ticks after boot): this
# machine's pid_max is 32,768, so under load a pid comes round again within minutes,
# and a later process under a step's pid is not the step (wait_gone counts it gone).
_STARTED_AT: dict[int, int] = {}


def job_pids(job_id: str) -> set[int]:
    """Live processes of a job's steps (the agent sets BUILDCONTROL_JOB_ID)."""
    pids = set(marked_processes(job_id))
    for pid in pids:
        started = start_time(pid)
        if started is not None:
            _STARTED_AT[pid] = started
    return pids


def start_time(pid: int) -> int | None:
    """When process `pid` started (/proc/PID/stat's 22nd field); None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def process_command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


async def until(
    condition: Callable[[], bool], within: float = WAIT, what: str = "condition"
) -> None:
    """Wait for a condition that no event announces (a process appearing in /proc)."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def step_pids(
    job_id: str, command: str = "sleep 600", count: int = 1, within: float = WAIT
) -> set[int]:
    """The job's processes once `count` of them run `command`. The agent reports a
    step RUNNING before it spawns it, so the report alone does not mean the process
    is there (nor that it has exec'd into its command)."""

    def started() -> bool:
        return sum(process_command(p) == command for p in job_pids(job_id)) >= count

    await until(started, within, f"{count} x {command!r} of job {job_id}")
    return job_pids(job_id)


async def wait_gone(pids: set[int], within: float) -> None:
    """Wait for processes to exit, woken by their pidfds (Linux), not by polling."""
    loop = asyncio.get_running_loop()
    waiters = []
    fds = []
    for pid in pids:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        fds.append(fd)
        # Checked with the pidfd open: it holds the process the start time is read of.
        if not _same_process(pid):
            continue  # the step is gone, and its pid went to a later process
        done = loop.create_future()
        loop.add_reader(fd, lambda d=done: d.done() or d.set_result(None))
        waiters.append(done)
    try:
        if waiters:
            await asyncio.wait_for(asyncio.gather(*waiters), within)
    finally:
        for fd in fds:
            loop.remove_reader(fd)
            os.close(fd)
    # A pidfd turns readable at exit; a zombie not yet reaped by its parent counts as gone.
    assert not any(alive(pid) and _same_process(pid) for pid in pids)


def _same_process(pid: int) -> bool:
    """`pid` is still the process job_pids found under it (or one it never saw)."""
    started = _STARTED_AT.get(pid)
    return started is None or start_time(pid) == started


@dataclass
class Serve:
    process: asyncio.subprocess.Process
    target: str
    log: Path


@asynccontextmanager
async def serve(data_dir: Path, *extra: str) -> AsyncIterator[Serve]:
    """The server with its stderr in a file (complete once the process has exited,
    unlike a pipe drained by a task)."""
    await asyncio.to_thread(data_dir.mkdir, parents=True)
    log = data_dir / "server.log"
    SERVER_LOGS.append(log)
    with log.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            *BUILDCONTROL, "serve", "--data-dir", str(data_dir), "--listen", "127.0.0.1:0",
            # Authentication (on by default, issue 6) is tested in tests/security.
            "--metrics-port", "0", "--auth", "off",
            *audited(extra), *extra,
            stdout=asyncio.subprocess.PIPE, stderr=stderr,
        )  # fmt: skip
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), WAIT)).decode()
        ready = READY.search(line)
        assert ready is not None, f"server did not start: {line!r} {log.read_text()}"
        yield Serve(process, f"{ready[1]}:{ready[2]}", log)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
