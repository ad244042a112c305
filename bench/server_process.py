"""Start `buildcontrol serve` as its own process on free ports, for benchmarks, and read
what it says about itself: /metrics, and its memory and CPU time from /proc."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import sys
import tempfile
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

READY = re.compile(r"serving gRPC on (\S+):(\d+), metrics on http://(\S+):(\d+)/metrics")
TICKS = os.sysconf("SC_CLK_TCK")
# Each server gets a fresh data directory, removed when it stops.
DATA_DIR_PREFIX = "buildcontrol-bench-"


@dataclass
class ServerProcess:
    process: asyncio.subprocess.Process
    target: str
    metrics_url: str
    data_dir: Path
    profile_dir: Path | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

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

    @asynccontextmanager
    async def profiled(self, phase: str) -> AsyncIterator[None]:
        """Sample the server with py-spy (pip install py-spy) during this block, when
        the server was started with a profile_dir: collapsed stacks (one line per
        stack, then its sample count) go to PROFILE_DIR/PHASE.txt."""
        if self.profile_dir is None:
            yield
            return
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        py_spy = str(Path(sys.executable).with_name("py-spy"))
        profiler = await asyncio.create_subprocess_exec(
            py_spy, "record", "--pid", str(self.pid), "--format", "raw", "--rate", "250",
            "--nonblocking", "--output", str(self.profile_dir / f"{phase}.txt"),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        await asyncio.sleep(1.0)  # py-spy attaches
        try:
            yield
        finally:
            profiler.send_signal(signal.SIGINT)  # py-spy writes its file and exits
            await asyncio.wait_for(profiler.wait(), 60)

    def rss_bytes(self) -> int:
        """Resident set size now (VmRSS of /proc/PID/status)."""
        return _proc_status_kib(self.pid, "VmRSS") * 1024

    def cpu_seconds(self) -> float:
        """User + system CPU time the server used so far."""
        return cpu_seconds_of(self.pid)

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.terminate()
        try:
            await asyncio.wait_for(self.process.wait(), 30)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
        if self.data_dir.name.startswith(DATA_DIR_PREFIX):
            shutil.rmtree(self.data_dir, ignore_errors=True)


def cpu_seconds_of(pid: int) -> float:
    """User + system CPU time process `pid` used so far (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def _proc_status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def _serve_command(loop: str | None) -> list[str]:
    # The load agents and clients carry no tokens: authentication is off here,
    # so every caller is the one principal "anonymous", and the per-principal limits
    # (10,000 live builds by default) would be the whole benchmark's: raised far above it.
    command = [sys.executable, "-m", "buildcontrol_cli", "serve", "--auth", "off"]
    command += ["--max-live-builds-per-principal", "1000000"]
    command += ["--max-watch-streams-per-principal", "1000000"]
    return command if loop is None else [*command, "--loop", loop]


async def start_server(
    *extra: str, loop: str | None = None, profile_dir: Path | None = None
) -> ServerProcess:
    """`loop`: the serve option --loop (None: the server's default). `profile_dir`:
    where `ServerProcess.profiled` phases write their py-spy profiles (None: off)."""
    data_dir = Path(tempfile.mkdtemp(prefix=DATA_DIR_PREFIX))
    process = await asyncio.create_subprocess_exec(
        *_serve_command(loop),
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
        await process.wait()
        raise RuntimeError(f"server did not start: {line!r}")
    host, port, mhost, mport = match.groups()
    return ServerProcess(
        process, f"{host}:{port}", f"http://{mhost}:{mport}/metrics", data_dir, profile_dir
    )
