"""Start and drive an agent fleet process (fleet.py) from the benchmark."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

FLEET = Path(__file__).parent / "fleet.py"


class Fleet:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self._process = process
        self._lock = asyncio.Lock()

    @property
    def pid(self) -> int:
        return self._process.pid

    @classmethod
    async def start(cls, target: str, loop: str = "asyncio") -> Fleet:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(FLEET),
            target,
            loop,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=1 << 26,  # one answer may list 10,000 jobs
        )
        return cls(process)

    async def ask(self, op: str, seconds: float = 300, **fields: Any) -> dict[str, Any]:
        assert self._process.stdin is not None and self._process.stdout is not None
        async with self._lock:
            self._process.stdin.write((json.dumps({"op": op, **fields}) + "\n").encode())
            await self._process.stdin.drain()
            line = await asyncio.wait_for(self._process.stdout.readline(), seconds)
        if not line:
            raise RuntimeError(f"agent fleet {self.pid} exited (op {op})")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"agent fleet {self.pid}, op {op}: {answer['error']}")
        return answer

    async def connect(
        self,
        count: int,
        capacity: int,
        mode: str,
        prefix: str,
        poll_interval: float = 2.0,
        target: str | None = None,
    ) -> None:
        """`target`: where these agents connect (None: the fleet's target)."""
        where = {} if target is None else {"target": target}
        await self.ask(
            "connect",
            count=count,
            capacity=capacity,
            mode=mode,
            prefix=prefix,
            poll_interval=poll_interval,
            **where,
        )

    async def move(self, agent_ids: list[str], target: str) -> None:
        """These agents drop their streams and reconnect to `target` with their jobs."""
        await self.ask("move", agents=agent_ids, target=target)

    async def placement(self) -> dict[str, str]:
        """{job_id: the target the stream of the agent holding it goes to}."""
        jobs: dict[str, str] = (await self.ask("placement"))["jobs"]
        return jobs

    async def wait_jobs(self, count: int, seconds: float = 120) -> dict[str, str]:
        """{job_id: build_id} once the agents hold `count` jobs."""
        answer = await self.ask("wait_jobs", seconds=seconds + 10, count=count, timeout=seconds)
        jobs: dict[str, str] = answer["jobs"]
        return jobs

    async def stops(self) -> dict[str, Any]:
        return await self.ask("stops")

    async def close(self) -> None:
        """Agents say Goodbye and the process exits (killed if it does not)."""
        try:
            if self._process.returncode is None:
                await self.ask("close", seconds=60)
            await asyncio.wait_for(self._process.wait(), 30)
        except (TimeoutError, RuntimeError, BrokenPipeError, ConnectionResetError):
            if self._process.returncode is None:
                self._process.kill()
                await self._process.wait()
