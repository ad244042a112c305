"""A process holding many load agents (load_agent.py), driven by the benchmark over its
stdin/stdout: one JSON request per line in, one JSON answer per line out.

Agents live in their own process so that the server's event loop and the process
sending Cancels do not also carry them (on 2 cores the load generator competes with the
server either way; this way it at least does not share a loop with either).

Requests ({"op": ...}):
  connect   count, capacity, mode (push|poll), prefix, poll_interval
            → {"connected": n}
  connect   ... target: the agents connect there (default: the fleet's target)
  wait_jobs count, timeout → {"jobs": {job_id: build_id}} once the agents hold `count`
            jobs (taken and not stopped)
  move      agents (ids), target → {"moved": n} once each said Hello there with its
            jobs (its old stream dropped without Goodbye: a reconnect elsewhere)
  placement → {"jobs": {job_id: target of the stream of the agent holding it}}
  stops     → {"stops": {job_id: monotonic seconds the agent learned of its stop},
               "pushes_ignored": n, "polls": n}
  close     → {"closed": n}, then the process exits

Run by fleet_control.Fleet; not meant to be started by hand."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from load_agent import PUSH, LoadAgent
from loops import install_loop

CONNECTS_AT_ONCE = 50


class Fleet:
    def __init__(self, target: str) -> None:
        self.target = target
        self.agents: list[LoadAgent] = []
        self._changed = asyncio.Event()

    def _on_change(self) -> None:
        self._changed.set()

    def held(self) -> dict[str, str]:
        return {job: build for agent in self.agents for job, build in agent.jobs.items()}

    async def connect(self, request: dict[str, Any]) -> dict[str, Any]:
        new = [
            LoadAgent(
                request.get("target", self.target),
                f"{request.get('prefix', 'agent')}-{i}",
                capacity=int(request["capacity"]),
                mode=request.get("mode", PUSH),
                poll_interval=float(request.get("poll_interval", 2.0)),
                on_change=self._on_change,
            )
            for i in range(int(request["count"]))
        ]
        for start in range(0, len(new), CONNECTS_AT_ONCE):
            await asyncio.gather(*(a.start() for a in new[start : start + CONNECTS_AT_ONCE]))
        self.agents += new
        return {"connected": len(new)}

    async def wait_jobs(self, request: dict[str, Any]) -> dict[str, Any]:
        count = int(request["count"])
        loop = asyncio.get_running_loop()
        until = loop.time() + float(request.get("timeout", 120))
        while len(held := self.held()) < count:
            self._changed.clear()
            left = until - loop.time()
            if left <= 0:
                return {"error": f"agents hold {len(held)} jobs, wanted {count}"}
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(left, 1.0))
        return {"jobs": held}

    async def move(self, request: dict[str, Any]) -> dict[str, Any]:
        wanted = set(request["agents"])
        moving = [agent for agent in self.agents if agent.agent_id in wanted]
        for start in range(0, len(moving), CONNECTS_AT_ONCE):
            batch = moving[start : start + CONNECTS_AT_ONCE]
            await asyncio.gather(*(agent.move(request["target"]) for agent in batch))
        return {"moved": len(moving)}

    def placement(self) -> dict[str, Any]:
        return {"jobs": {job: a.target for a in self.agents for job in a.jobs}}

    def stops(self) -> dict[str, Any]:
        stops: dict[str, float] = {}
        for agent in self.agents:
            stops.update(agent.stop_learned)
        return {
            "stops": stops,
            "pushes_ignored": sum(a.pushes_ignored for a in self.agents),
            "polls": sum(a.polls for a in self.agents),
        }

    async def close(self) -> dict[str, Any]:
        await asyncio.gather(*(a.close() for a in self.agents), return_exceptions=True)
        return {"closed": len(self.agents)}


async def serve(target: str) -> None:
    fleet = Fleet(target)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 26)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        request = json.loads(line)
        op = request["op"]
        try:
            if op == "connect":
                answer = await fleet.connect(request)
            elif op == "wait_jobs":
                answer = await fleet.wait_jobs(request)
            elif op == "move":
                answer = await fleet.move(request)
            elif op == "placement":
                answer = fleet.placement()
            elif op == "stops":
                answer = fleet.stops()
            elif op == "close":
                answer = await fleet.close()
            else:
                answer = {"error": f"unknown op {op!r}"}
        except Exception as error:  # reported to the benchmark, which fails loudly
            answer = {"error": f"{type(error).__name__}: {error}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
        if op == "close":
            return


def main() -> None:
    target, loop_name = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "asyncio"
    install_loop(loop_name)
    asyncio.run(serve(target))


if __name__ == "__main__":
    main()
