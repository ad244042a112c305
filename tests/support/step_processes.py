"""Finding a job's step processes, and a FIFO steps signal readiness through: shared
by the agent's unit tests and the e2e tests."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path


def marked_processes(job_id: str) -> list[int]:
    """Live (non-zombie) processes whose environment holds BUILDCONTROL_JOB_ID=job_id
    (the reference agent sets it for every step)."""
    needle = f"BUILDCONTROL_JOB_ID={job_id}".encode()
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as environ:
                variables = environ.read().split(b"\0")
            with open(f"/proc/{entry.name}/stat", "rb") as stat_file:
                stat = stat_file.read()
        except OSError:
            continue  # exited meanwhile, or not readable by us: not one of ours
        state = stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3]
        if needle in variables and state != b"Z":
            pids.append(int(entry.name))
    return pids


class Fifo:
    """A named pipe a step writes lines to; reading it is an event, not a poll."""

    def __init__(self, path: Path) -> None:
        os.mkfifo(path)
        self.path = path
        # O_RDWR: opening never blocks and the pipe never reports end-of-file.
        self._fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
        self._buffer = b""

    async def read_line(self, seconds: float = 10.0) -> str:
        loop = asyncio.get_running_loop()
        while b"\n" not in self._buffer:
            readable: asyncio.Future[None] = loop.create_future()
            loop.add_reader(self._fd, lambda f=readable: f.done() or f.set_result(None))
            try:
                await asyncio.wait_for(readable, seconds)
            finally:
                loop.remove_reader(self._fd)
            self._buffer += os.read(self._fd, 4096)
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode()

    def write_line(self, text: str) -> None:
        os.write(self._fd, f"{text}\n".encode())

    def close(self) -> None:
        os.close(self._fd)


async def at_least(job_id: str, count: int, within: float = 1.0) -> list[int]:
    """The job's processes once there are `count` of them. A process in the middle of
    exec shows an empty environ for an instant, so a scan can miss it: look again
    (bounded) rather than fail on that instant. No event announces a process in /proc."""
    deadline = asyncio.get_running_loop().time() + within
    while len(found := marked_processes(job_id)) < count:
        if asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.01)
    return found
