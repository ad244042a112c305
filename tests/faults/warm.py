"""`buildcontrol serve` and `buildcontrol agent` processes started warm.

A `buildcontrol` process spends most of its start importing (about a second, several
on a loaded machine), and a walk that SIGKILLs servers and agents starts many. A spare
is a Python process that has already imported the CLI and waits on its stdin for the
arguments; given them it runs exactly what `python -m buildcontrol_cli ARGS` runs
(`buildcontrol_cli.main.main`). The process a walk kills, and the one that takes over, are real
processes with real signals; only the imports happened before the arguments came.
One spare of each kind is kept ready: taking it starts the next."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from tests.support.processes import READY, AgentProc, ServerProc

SPARE = (
    "import json, sys\n"
    "from buildcontrol_cli.main import main\n"
    # What `main` imports only once it runs: the server, its store and webhook
    # client's transport, the agent.
    "import buildcontrol_server.app, buildcontrol_server.store.sqlite\n"
    "import buildcontrol_client.agent\n"
    "import anyio, encodings.idna, h2.connection, httpcore\n"
    "line = sys.stdin.readline()\n"
    "sys.exit(main(json.loads(line)) if line.strip() else 0)\n"
)
# A start is a second or two; on a machine loaded tenfold (other suites, chaos runs)
# it has taken over 20 s, which is slow, not broken.
WAIT = 60.0


class Spares:
    """Warm processes of one kind; `stdout`: a pipe (servers print their address) or
    nothing (agents)."""

    def __init__(self, stdout: int) -> None:
        self._stdout = stdout
        self._next: asyncio.Task[asyncio.subprocess.Process] | None = None

    def _spawn(self) -> asyncio.Task[asyncio.subprocess.Process]:
        return asyncio.ensure_future(
            asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                SPARE,
                stdin=asyncio.subprocess.PIPE,
                stdout=self._stdout,
                stderr=asyncio.subprocess.PIPE,
            )
        )

    async def run(self, args: list[str]) -> asyncio.subprocess.Process:
        """A process running `buildcontrol ARGS` (the spare kept ready, given them)."""
        # Taken before the await: two walks starting at once (the pool's first servers)
        # would otherwise both await the same spare and both give it arguments.
        taken, self._next = self._next or self._spawn(), self._spawn()
        process = await taken
        assert process.stdin is not None
        process.stdin.write((json.dumps(args) + "\n").encode())
        await process.stdin.drain()
        process.stdin.close()
        return process

    async def close(self) -> None:
        """End the spare kept ready (it never got its arguments)."""
        if self._next is not None:
            process = await self._next
            self._next = None
            assert process.stdin is not None
            process.stdin.close()  # an empty line: it exits 0
            await process.wait()


async def start_server(spares: Spares, data_dir: Path, *flags: str, port: int) -> ServerProc:
    """As tests/e2e/processes.start_server, from a spare."""
    process = await spares.run(
        [
            "serve",
            "--data-dir",
            str(data_dir),
            "--listen",
            f"127.0.0.1:{port}",
            "--metrics-port",
            "0",
            "--auth",
            "off",
            *flags,
        ]
    )
    assert process.stdout is not None and process.stderr is not None
    async with asyncio.timeout(WAIT):
        line = (await process.stdout.readline()).decode()
    match = READY.search(line)
    if match is None:
        await process.wait()
        error = (await process.stderr.read()).decode()
        raise RuntimeError(f"server did not start: {line!r} {error}")
    drain(process.stderr, data_dir / "server.log")
    host, grpc_port, mhost, mport = match.groups()
    return ServerProc(
        process, f"{host}:{grpc_port}", f"http://{mhost}:{mport}/metrics", data_dir, int(grpc_port)
    )


async def start_agent(
    spares: Spares, target: str, agent_id: str, work: Path, labels: str, *extra: str
) -> AgentProc:
    """As tests/e2e/processes.start_agent (capacity 2), from a spare."""
    log = work / f"agent-{agent_id}.log"
    process = await spares.run(
        [
            "agent",
            "--server",
            target,
            "--agent-id",
            agent_id,
            "--labels",
            labels,
            "--capacity",
            "2",
            "--reconnect-max",
            "0.5",
            *extra,
        ]
    )
    assert process.stderr is not None
    drain(process.stderr, log)
    return AgentProc(agent_id, process, log)


def drain(stream: asyncio.StreamReader, path: Path) -> None:
    """Keep a pipe read into `path`, so the process never blocks on a full pipe."""

    async def copy() -> None:
        with path.open("ab") as log:
            while chunk := await stream.read(65536):
                log.write(chunk)
                log.flush()

    task = asyncio.ensure_future(copy())
    _draining.add(task)
    task.add_done_callback(_draining.discard)


_draining: set[asyncio.Future[None]] = set()
