"""Two `buildcontrol serve --replicas on` processes on one PostgreSQL schema for the
replicas scenario, and what the database says about them: which replica owns each
build's shard, which holds each agent's stream. Another process's state is only seen
there, so these reads wait for it with a bound."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from buildcontrol_proto.v1 import build_control_pb2, build_control_pb2_grpc
from buildcontrol_server.replicas.leases import shard_of
from server_process import TICKS, ServerProcess, start_server

SHARDS = 64  # the servers' default (--replicas-shards)
# Long enough that no agent moved between replicas is taken for lost during a round:
# the benchmark measures stops, not the reconnect window.
COMMON_FLAGS = ("--reconnect-window", "600")
LEASES = (
    "SELECT l.shard, r.name FROM shard_leases l JOIN replicas r ON r.instance_id = l.owner"
    " WHERE l.expires_at > now()"
)
SESSIONS = (
    "SELECT s.agent_id, r.name FROM agent_sessions s"
    " JOIN replicas r ON r.instance_id = s.instance_id"
)


async def _rows(url: str, sql: str) -> dict[object, str]:
    connection = await asyncpg.connect(url)
    try:
        return {row[0]: str(row[1]) for row in await connection.fetch(sql)}
    finally:
        await connection.close()


async def until_rows(url: str, sql: str, wanted: dict[object, str], within: float) -> None:
    """Wait until `sql` gives exactly `wanted` (its first column → its second)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while (found := await _rows(url, sql)) != wanted:
        if loop.time() > deadline:
            missing = {key: value for key, value in wanted.items() if found.get(key) != value}
            raise TimeoutError(f"{len(missing)} rows not as wanted after {within} s: {missing}")
        await asyncio.sleep(0.05)


async def owners(url: str, build_ids: Iterable[str]) -> dict[str, str]:
    """{build_id: the address of the replica whose lease holds its shard now}."""
    leases = await _rows(url, LEASES)
    return {build: leases[shard_of(build, SHARDS)] for build in build_ids}


async def until_held(url: str, holders: dict[str, str], within: float = 60) -> None:
    """Wait until agent_sessions says each agent's stream is held where `holders`
    says ({agent_id: replica address}): a replica an agent left forgets it within
    its next second, and no stop goes to a stream the owner still believes live."""
    await until_rows(url, SESSIONS, dict(holders), within)


def database_cpu_seconds(data_dir: Path) -> float:
    """CPU time PostgreSQL used so far: its postmaster and the processes it started
    (the servers' connections are long-lived; a backend that exited took its share)."""
    postmaster = int((data_dir / "postmaster.pid").read_text().split()[0])
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue  # exited meanwhile
        if postmaster in (int(stat.parent.name), int(fields[1])):
            total += int(fields[11]) + int(fields[12])
    return total / TICKS


@dataclass
class Replicas:
    """Replicas seen as one server by the throughput level (throughput.level): their
    CPU and counters summed."""

    servers: Sequence[ServerProcess]
    label: str  # names their profiles: LABEL_PHASE_N.txt

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        return sum(s.metric(name, labels) for s in self.servers if s.process.returncode is None)

    def cpu_seconds(self) -> float:
        return sum(s.cpu_seconds() for s in self.servers if s.process.returncode is None)

    @asynccontextmanager
    async def profiled(self, phase: str) -> AsyncIterator[None]:
        """Each replica's profile of the phase (LABEL_PHASE_0.txt, _1.txt) when the
        replicas were started with a profile_dir."""
        async with AsyncExitStack() as stack:
            for number, server in enumerate(self.servers):
                name = f"{self.label}_{phase}_{number}"
                await stack.enter_async_context(server.profiled(name))
            yield


class Receivers:
    """A Cancel stub that sends each build's Cancel to the replica chosen for it."""

    def __init__(self, chosen: dict[str, build_control_pb2_grpc.BuildControlStub]) -> None:
        self._chosen = chosen

    def Cancel(self, request: build_control_pb2.CancelRequest) -> object:
        return self._chosen[request.build_id].Cancel(request)


async def start_pair(
    store: Sequence[str], lease: float, loop: str | None, profile_dir: Path | None
) -> list[ServerProcess]:
    """Replicas a and b on the `store` flags' schema, once each holds half the shards
    (the second one's share comes from the first handing its surplus back)."""
    flags = [*store, *COMMON_FLAGS, "--replicas", "on", "--replicas-lease", str(lease)]
    pair: list[ServerProcess] = []
    try:
        for _ in range(2):
            pair.append(await start_server(*flags, loop=loop, profile_dir=profile_dir))
        await _until_even(store[1], pair, within=30 + 4 * lease)
    except BaseException:
        await asyncio.gather(*(server.stop() for server in pair))
        raise
    return pair


async def _until_even(url: str, pair: list[ServerProcess], within: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        held = list((await _rows(url, LEASES)).values())
        if [held.count(server.target) for server in pair] == [SHARDS // 2] * 2:
            return
        if loop.time() > deadline:
            raise TimeoutError(f"shares of {SHARDS} shards never even: {held}")
        await asyncio.sleep(0.05)
