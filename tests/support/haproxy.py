"""A real HAProxy in front of servers, for the tests: deploy/haproxy.cfg itself, with its
listen address replaced by 127.0.0.1 and a free port, its servers by the given
backends (and, when a test asks, its timeouts by shorter ones), written to a temp dir
and run in the foreground; stopped on teardown.

HAProxy comes from Debian (`haproxy`): `make haproxy` installs it as root when missing
(CI runs as root); otherwise the tests that need it skip with one line saying so, and
fail under CI=true, as the PostgreSQL tests do.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import signal
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.ports import free_port

CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "haproxy.cfg"
HOW_TO_GET = (
    "HAProxy tests skipped: no haproxy found; `make haproxy` (as root) installs the Debian"
    " package `haproxy`"
)
START_TIMEOUT = 20.0

_BIND = re.compile(r"^(\s*)bind \S+ (.*)$", re.MULTILINE)
_SERVER = re.compile(r"^\s*server \S+ \S+ (.*)\n", re.MULTILINE)


def find_haproxy() -> str | None:
    return shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin")


def render_config(
    template: str, port: int, backends: Sequence[str], timeouts: Mapping[str, str] = {}
) -> str:
    """deploy/haproxy.cfg listening on 127.0.0.1:`port`, proxying to `backends`
    (host:port each), with the `timeout NAME VALUE` lines of `timeouts` changed."""
    config, binds = _BIND.subn(rf"\g<1>bind 127.0.0.1:{port} \g<2>", template)
    servers = _SERVER.findall(config)
    if binds != 1 or not servers:
        raise ValueError("deploy/haproxy.cfg must have one bind line and its server lines")
    # Every new server line takes the options of the config's first one (proto h2).
    lines = "".join(
        f"    server server-{n} {address} {servers[0]}\n" for n, address in enumerate(backends, 1)
    )
    first = _SERVER.search(config)
    assert first is not None
    config = _SERVER.sub("", config)
    config = config[: first.start()] + lines + config[first.start() :]
    for name, value in timeouts.items():
        line = re.compile(rf"^(\s*)timeout {re.escape(name)} \S+$", re.MULTILINE)
        config, found = line.subn(rf"\g<1>timeout {name} {value}", config)
        if not found:
            raise ValueError(f"deploy/haproxy.cfg has no `timeout {name}` line")
    return config


@dataclass
class Haproxy:
    executable: str
    backends: Sequence[str]
    timeouts: Mapping[str, str] = field(default_factory=dict)
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="bc-haproxy-")))
    port: int = 0
    process: asyncio.subprocess.Process | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.root / "haproxy.log"

    async def start(self) -> None:
        self.port = free_port()
        config = self.root / "haproxy.cfg"
        config.write_text(
            render_config(CONFIG.read_text(), self.port, self.backends, self.timeouts)
        )
        with self.log.open("wb") as log:
            # -db: stay in the foreground; -W: master-worker, so SIGTERM stops all.
            self.process = await asyncio.create_subprocess_exec(
                self.executable,
                "-db",
                "-W",
                "-f",
                str(config),
                stdout=log,
                stderr=log,
                stdin=asyncio.subprocess.DEVNULL,
            )
        await self._until_listening()

    async def _until_listening(self) -> None:
        """Wait for the port to accept connections: HAProxy announces nothing on its
        own when it is ready, so this tries to connect (every 20 ms, bounded)."""
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert self.process is not None
            if self.process.returncode is not None:
                raise RuntimeError(f"haproxy exited at start: {self.log.read_text()}")
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"haproxy not listening: {self.log.read_text()}") from None
                await asyncio.sleep(0.02)
                continue
            writer.close()
            await writer.wait_closed()
            return

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), START_TIMEOUT)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)
