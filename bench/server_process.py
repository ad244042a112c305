"""Start `buildcontrol serve` as its own process on free ports, for benchmarks."""

from __future__ import annotations

import asyncio
import re
import sys
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

READY = re.compile(r"serving gRPC on (\S+):(\d+), metrics on http://(\S+):(\d+)/metrics")


@dataclass
class ServerProcess:
    process: asyncio.subprocess.Process
    target: str
    metrics_url: str
    data_dir: Path

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        """Current value of one sample from the server's /metrics."""
        with urllib.request.urlopen(self.metrics_url, timeout=10) as response:
            text = response.read().decode()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and (
                    labels is None or labels.items() <= sample.labels.items()
                ):
                    return float(sample.value)
        return 0.0

    async def stop(self) -> None:
        self.process.terminate()
        await asyncio.wait_for(self.process.wait(), 30)


async def start_server(*extra: str) -> ServerProcess:
    data_dir = Path(tempfile.mkdtemp(prefix="buildcontrol-bench-"))
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "buildcontrol_server.cli",
        "serve",
        "--data-dir",
        str(data_dir),
        "--listen",
        "127.0.0.1:0",
        "--metrics-port",
        "0",
        "--log-level",
        "WARNING",
        *extra,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
    match = READY.search(line)
    if match is None:
        process.kill()
        raise RuntimeError(f"server did not start: {line!r}")
    host, port, mhost, mport = match.groups()
    return ServerProcess(process, f"{host}:{port}", f"http://{mhost}:{mport}/metrics", data_dir)
