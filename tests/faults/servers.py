"""The server a walk drives: in this process (fast, and its store can be made to fail)
or as a process of its own (so it can be SIGKILLed and restarted on the same port).

Starting a server costs more than most walks (a process: seconds on a loaded
machine), so `ServerPool` keeps servers across walks: one per kind and timers, handed
to the next walk of that kind when the last one ended clean (every build terminal,
every slot free, the auditor quiet), replaced when it did not, and renewed every
REUSE_WALKS walks so a long chaos run does not grow one store without bound. Walks
on one server stay apart by their agents' ids and labels (see walk.py)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from buildcontrol_proto.v1 import build_control_pb2_grpc
from buildcontrol_server.app import ServerApp

from tests.faults import warm
from tests.faults.store_outage import StoreOutage
from tests.support.ports import free_port
from tests.support.processes import ServerProc
from tests.support.servers import settings_for


@dataclass(frozen=True)
class Timers:
    """The server's timers for one run: short ones make deadlines fire during the
    walk; long ones keep every result decisive (nothing FORCED or LOST by a timer)."""

    stop_ack_timeout: float
    reconnect_window: float
    default_grace: float = 0.2

    @property
    def short(self) -> bool:
        return self.stop_ack_timeout < 5


REUSE_WALKS = 100
READY_WITHIN = 60.0


class WalkServer:
    """What a walk needs from either kind of server."""

    target: str
    stub: build_control_pb2_grpc.BuildControlStub
    outage: StoreOutage | None = None
    killable = False
    down_seconds = 0.0
    walks = 0  # walks this server has served

    def begin_walk(self) -> None:
        """A new walk: the fault time of the last one is not this one's."""
        self.walks += 1
        self.down_seconds = 0.0
        if self.outage is not None:
            self.outage.heal()
            self.outage.seconds = 0.0

    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    async def kill_and_restart(self) -> None:
        raise NotImplementedError

    def auditor(self) -> Any:
        """The server's invariant auditor, when the server has one."""
        return None


class InProcessServer(WalkServer):
    def __init__(self, data_dir: Path, timers: Timers) -> None:
        self._settings = settings_for(
            data_dir,
            default_grace_period=timers.default_grace,
            stop_ack_timeout=timers.stop_ack_timeout,
            reconnect_window=timers.reconnect_window,
            shutdown_grace=0.5,
            effects_stop_timeout=0.5,
        )
        self.app: ServerApp | None = None
        self._channel: grpc.aio.Channel | None = None

    async def start(self) -> None:
        self.app = ServerApp(self._settings)
        endpoints = await self.app.start()
        self.target = f"127.0.0.1:{endpoints.grpc_port}"
        self._channel = grpc.aio.insecure_channel(self.target)
        self.stub = build_control_pb2_grpc.BuildControlStub(self._channel)
        self.outage = StoreOutage(self.app.store)

    async def stop(self) -> None:
        if self.outage is not None:
            self.outage.heal()
        if self._channel is not None:
            await self._channel.close()
        if self.app is not None:
            await self.app.stop()

    def auditor(self) -> Any:
        return getattr(self.app, "auditor", None)


class ProcessServer(WalkServer):
    killable = True

    def __init__(self, data_dir: Path, timers: Timers, spares: warm.Spares | None = None) -> None:
        self._data_dir = data_dir
        # Started warm (warm.py): a restart after a SIGKILL takes a fraction of a second.
        self._own_spares = spares is None
        self._spares = spares or warm.Spares(asyncio.subprocess.PIPE)
        self._flags = (
            "--default-grace",
            str(timers.default_grace),
            "--stop-ack-timeout",
            str(timers.stop_ack_timeout),
            "--reconnect-window",
            str(timers.reconnect_window),
        )
        self._port = free_port()
        self.target = f"127.0.0.1:{self._port}"
        self.proc: ServerProc | None = None
        self._channel: grpc.aio.Channel | None = None

    async def start(self) -> None:
        self.proc = await warm.start_server(
            self._spares, self._data_dir, *self._flags, port=self._port
        )
        if self._channel is None:
            # One channel for the whole run: it reconnects to the restarted server.
            self._channel = grpc.aio.insecure_channel(self.target)
            self.stub = build_control_pb2_grpc.BuildControlStub(self._channel)
        # After a restart the channel may sit in its reconnect backoff, failing calls
        # at once (UNAVAILABLE, "connection refused"): the walk goes on once it is up.
        async with asyncio.timeout(READY_WITHIN):
            await self._channel.channel_ready()

    async def kill_and_restart(self) -> None:
        assert self.proc is not None
        await self.proc.kill()
        await self.start()

    async def stop(self) -> None:
        try:
            if self._channel is not None:
                await self._channel.close()
            if self.proc is not None and self.proc.process.returncode is None:
                code = await self.proc.stop()
                assert code == 0, f"the server exited {code} on SIGTERM"
        finally:
            if self._own_spares:
                await self._spares.close()


class ServerPool:
    """Servers kept from one walk to the next (see the module's docstring)."""

    def __init__(self) -> None:
        # Idle servers by (is a process, timers): as many as walks ran at once.
        self._idle: dict[tuple[bool, Timers], list[tuple[WalkServer, Path]]] = {}
        self._dirs: dict[int, Path] = {}
        self._spares = warm.Spares(asyncio.subprocess.PIPE)

    async def take(self, as_process: bool, timers: Timers) -> WalkServer:
        idle = self._idle.get((as_process, timers))
        if idle:
            server, work = idle.pop()
            self._dirs[id(server)] = work
            server.begin_walk()
            return server
        work = Path(tempfile.mkdtemp(prefix="faults-"))
        data_dir = work / "data"
        server: WalkServer = (
            ProcessServer(data_dir, timers, self._spares)
            if as_process
            else InProcessServer(data_dir, timers)
        )
        self._dirs[id(server)] = work
        try:
            await server.start()
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        server.begin_walk()
        return server

    async def give_back(
        self, server: WalkServer, as_process: bool, timers: Timers, clean: bool
    ) -> None:
        """Keep `server` for the next walk if its walk ended `clean`, else stop it."""
        work = self._dirs.pop(id(server))
        key = (as_process, timers)
        if clean and server.walks < REUSE_WALKS:
            self._idle.setdefault(key, []).append((server, work))
            return
        await _stop(server, work)

    async def close(self) -> None:
        idle = [kept for servers in self._idle.values() for kept in servers]
        self._idle = {}
        try:
            for server, work in idle:
                await _stop(server, work)
        finally:
            await self._spares.close()


async def _stop(server: WalkServer, work: Path) -> None:
    try:
        await server.stop()
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(work)
