"""A real server on 127.0.0.1 with its metrics on an HTTP port picked by the OS, read
with tests/support/metrics_scrape.py.

Metrics are process-wide (every server a test process starts adds to the same
counters), so tests compare two scrapes, never an absolute value of a counter."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
from buildcontrol_proto.v1 import build_control_pb2_grpc
from buildcontrol_server.app import ServerApp

from tests.support.metrics_scrape import Scrape, scrape
from tests.support.servers import settings_for

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana-dashboard.json"
ALERTS = ROOT / "deploy" / "prometheus-alerts.yaml"
METRIC_NAME = re.compile(r"\bbuildcontrol_[a-z0-9_]+\b")


@dataclass
class Observed:
    app: ServerApp
    target: str
    metrics_url: str
    stub: build_control_pb2_grpc.BuildControlStub
    channel: grpc.aio.Channel

    async def scrape(self) -> Scrape:
        return await scrape(self.metrics_url)


@asynccontextmanager
async def observed_server(data_dir: Path, **overrides: object) -> AsyncIterator[Observed]:
    app = ServerApp(settings_for(data_dir, metrics_port=0, **overrides))
    endpoints = await app.start()
    target = f"127.0.0.1:{endpoints.grpc_port}"
    channel = grpc.aio.insecure_channel(target)
    try:
        yield Observed(
            app,
            target,
            f"http://127.0.0.1:{endpoints.metrics_port}/metrics",
            build_control_pb2_grpc.BuildControlStub(channel),
            channel,
        )
    finally:
        await channel.close()
        await app.stop()
