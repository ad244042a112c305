"""A process of its own that watches pids die, for the agent-stop benchmark.

Reads one pid per line on stdin and answers `watching PID` once it holds a pidfd for
it, then `dead PID MONOTONIC` the moment the pidfd turns readable (the process exited;
time.monotonic(), one clock for the whole machine). Separate from the benchmark's
client and from the agent, so neither's event loop delays the observation.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time


def _dead(loop: asyncio.AbstractEventLoop, pid: int, descriptor: int) -> None:
    at = time.monotonic()
    loop.remove_reader(descriptor)
    os.close(descriptor)
    print(f"dead {pid} {at:.6f}", flush=True)


async def main() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        pid = int(line)
        try:
            descriptor = os.pidfd_open(pid)
        except ProcessLookupError:
            print(f"dead {pid} {time.monotonic():.6f}", flush=True)
            continue
        loop.add_reader(descriptor, _dead, loop, pid, descriptor)
        print(f"watching {pid}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
