"""A real server on 127.0.0.1 with its metrics on an HTTP port picked by the OS, and the
scrape of /metrics parsed with prometheus_client's text parser.

Metrics are process-wide (every server a test process starts adds to the same
counters), so tests compare two scrapes, never an absolute value of a counter."""

from __future__ import annotations

import asyncio
import re
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
from buildcontrol_proto.v1 import build_control_pb2_grpc
from buildcontrol_server.app import ServerApp
from prometheus_client.parser import text_string_to_metric_families

from tests.support.servers import settings_for

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana-dashboard.json"
ALERTS = ROOT / "deploy" / "prometheus-alerts.yaml"
WAIT = 10.0
METRIC_NAME = re.compile(r"\bbuildcontrol_[a-z0-9_]+\b")

# What a family of each type exposes besides its own name.
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("_sum", "_count", "_created"),
    "gauge": (),
}


@dataclass
class Scrape:
    """One scrape of /metrics: sample values by (name, labels)."""

    samples: list[tuple[str, dict[str, str], float]]
    names: set[str]

    def value(self, name: str, **labels: str) -> float:
        """Sum of the samples called `name` whose labels include `labels` (0 if none)."""
        return sum(
            value
            for sample_name, sample_labels, value in self.samples
            if sample_name == name and labels.items() <= sample_labels.items()
        )


def parse(text: str) -> Scrape:
    samples: list[tuple[str, dict[str, str], float]] = []
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ()))
        for sample in family.samples:
            names.add(sample.name)
            samples.append((sample.name, dict(sample.labels), sample.value))
    return Scrape(samples, names)


async def scrape(url: str) -> Scrape:
    """GET /metrics on a thread: the scrape runs while the server's loop keeps going, as
    it does under a real Prometheus."""

    def get() -> str:
        with urllib.request.urlopen(url, timeout=WAIT) as response:
            return str(response.read().decode())

    return parse(await asyncio.to_thread(get))


def delta(before: Scrape, after: Scrape, name: str, **labels: str) -> float:
    return after.value(name, **labels) - before.value(name, **labels)


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
