"""A server in the test's own process on 127.0.0.1:0, with a channel and a stub to call it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
from buildcontrol_proto.v1 import build_control_pb2_grpc
from buildcontrol_server.app import Clocks, ServerApp
from buildcontrol_server.config import Settings
from buildcontrol_server.security.settings import SecuritySettings


@dataclass
class Running:
    app: ServerApp
    target: str
    stub: build_control_pb2_grpc.BuildControlStub
    channel: grpc.aio.Channel


def settings_for(data_dir: Path, **overrides: object) -> Settings:
    base: dict[str, object] = {
        "data_dir": data_dir,
        "listen": "127.0.0.1:0",
        "metrics_port": -1,
        "default_grace_period": 1.0,
        "stop_ack_timeout": 2.0,
        "reconnect_window": 2.0,
        "shutdown_grace": 1.0,
        # These tests are about builds, not access: tokens are tested in tests/security.
        "security": SecuritySettings(auth=False),
    }
    base.update(overrides)
    return Settings(**base)  # type: ignore[arg-type]


@asynccontextmanager
async def running_server(
    data_dir: Path, *, clocks: Clocks | None = None, audit: bool = True, **overrides: object
) -> AsyncIterator[Running]:
    """A server on 127.0.0.1:0. Unless `audit` is False (a test that breaks the
    invariants on purpose), the invariant auditor must find nothing at the end."""
    app = ServerApp(settings_for(data_dir, **overrides), clocks)
    endpoints = await app.start()
    target = f"127.0.0.1:{endpoints.grpc_port}"
    channel = grpc.aio.insecure_channel(target)
    try:
        yield Running(app, target, build_control_pb2_grpc.BuildControlStub(channel), channel)
        # Every rpc test ends with the invariants holding (skipped when the test
        # itself failed: its own error is the one to see).
        violations = await app.auditor.check() if audit else []
        assert not violations, "invariants violated:\n" + "\n".join(map(str, violations))
    finally:
        await channel.close()
        await app.stop()
