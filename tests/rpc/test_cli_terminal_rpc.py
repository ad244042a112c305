"""The `buildcontrol` command as a process, reading a real server's logs of a real agent's
step that prints colours: on a terminal (a pseudo-terminal) `logs` and `watch --logs`
pass the colour codes through; piped, and with --json also on a terminal, they are
stripped."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import tty
from pathlib import Path

from tests.rpc.job_log_calls import finished_build
from tests.support.processes import BUILDCONTROL
from tests.support.servers import Running

GREEN = "\x1b[32mgreen\x1b[0m"
WAIT = 30.0


def environment() -> dict[str, str]:
    """The test's environment without a BUILDCONTROL_* setting of its own."""
    return {k: v for k, v in os.environ.items() if not k.startswith("BUILDCONTROL_")}


class _Collect(asyncio.Protocol):
    def __init__(self) -> None:
        self.data = bytearray()
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self.data += data

    def connection_lost(self, exc: Exception | None) -> None:
        # A pseudo-terminal's reader gets EIO once the program on it has exited.
        if not self.done.done():
            self.done.set_result(None)


async def on_terminal(server: Running, *argv: str) -> tuple[int, str]:
    """Run `buildcontrol ARGV --server …` with stdout on a pseudo-terminal: (exit, output)."""
    leader, follower = pty.openpty()
    tty.setraw(follower)  # no "\n" → "\r\n": the bytes exactly as the program wrote them
    try:
        process = await asyncio.create_subprocess_exec(
            *BUILDCONTROL, *argv, "--server", server.target,
            stdin=asyncio.subprocess.DEVNULL, stdout=follower, stderr=asyncio.subprocess.PIPE,
            env=environment(),
        )  # fmt: skip
    finally:
        os.close(follower)
    loop = asyncio.get_running_loop()
    collect = _Collect()
    transport, _ = await loop.connect_read_pipe(lambda: collect, os.fdopen(leader, "rb", 0))
    try:
        await asyncio.wait_for(collect.done, WAIT)
        _, err = await asyncio.wait_for(process.communicate(), WAIT)
    finally:
        transport.close()
    assert err == b"", err
    assert process.returncode is not None
    return process.returncode, collect.data.decode()


async def piped(server: Running, *argv: str) -> tuple[int, str]:
    """The same with stdout a pipe."""
    process = await asyncio.create_subprocess_exec(
        *BUILDCONTROL, *argv, "--server", server.target,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=environment(),
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), WAIT)
    assert err == b"", err
    assert process.returncode is not None
    return process.returncode, out.decode()


async def test_logs_pass_colours_to_a_terminal_and_strip_them_when_piped_or_json(
    server: Running, tmp_path: Path
) -> None:
    build_id = await finished_build(server, tmp_path)

    code, shown = await on_terminal(server, "logs", build_id, "compile")
    assert (code, shown) == (0, f"--- step 0: print\na1\n{GREEN}\n\ufffdend")
    code, shown = await piped(server, "logs", build_id, "compile")
    assert (code, shown) == (0, "--- step 0: print\na1\ngreen\n\ufffdend")
    code, shown = await on_terminal(server, "logs", build_id, "compile", "--json")
    assert code == 0 and "\x1b" not in shown
    texts = "".join(json.loads(line)["text"] for line in shown.splitlines())
    assert texts == "--- step 0: print\na1\ngreen\n\ufffdend"


async def test_watch_with_logs_passes_colours_to_a_terminal_and_strips_them_when_piped(
    server: Running, tmp_path: Path
) -> None:
    build_id = await finished_build(server, tmp_path)

    code, shown = await on_terminal(server, "watch", build_id, "--logs")
    assert code == 0
    assert f"compile | {GREEN}\x1b[0m" in shown.splitlines()
    code, shown = await piped(server, "watch", build_id, "--logs")
    assert code == 0 and "\x1b" not in shown
    assert "compile | green" in shown.splitlines()
