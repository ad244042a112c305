"""The server a walk drives: in this process (fast, and its store can be made to fail)
or as a process of its own (so it can be SIGKILLed and restarted on the same port)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from buildcontrol_proto.v1 import build_control_pb2_grpc
from buildcontrol_server.app import ServerApp

from tests.e2e.processes import ServerProc, start_server
from tests.faults.store_outage import StoreOutage
from tests.rpc.conftest import settings_for
from tests.support.ports import free_port


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


class WalkServer:
    """What a walk needs from either kind of server."""

    target: str
    stub: build_control_pb2_grpc.BuildControlStub
    outage: StoreOutage | None = None
    killable = False
    down_seconds = 0.0

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

    def __init__(self, data_dir: Path, timers: Timers) -> None:
        self._data_dir = data_dir
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
        self.proc = await start_server(self._data_dir, *self._flags, port=self._port)
        if self._channel is None:
            # One channel for the whole run: it reconnects to the restarted server.
            self._channel = grpc.aio.insecure_channel(self.target)
            self.stub = build_control_pb2_grpc.BuildControlStub(self._channel)

    async def kill_and_restart(self) -> None:
        assert self.proc is not None
        await self.proc.kill()
        await self.start()

    async def stop(self) -> None:
        if self._channel is not None:
            await self._channel.close()
        if self.proc is not None and self.proc.process.returncode is None:
            code = await self.proc.stop()
            assert code == 0, f"the server exited {code} on SIGTERM"
