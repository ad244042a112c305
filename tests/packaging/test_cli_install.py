"""The installed command's habits: `--version`, `health` against a real server (and
against none), and BUILDCONTROL_ADDR as the default server address."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from buildcontrol_server.version import version

from tests.e2e.processes import BUILDCONTROL
from tests.observability.test_serve_process import serve
from tests.support.ports import free_port

WAIT = 20.0


async def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *BUILDCONTROL, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), WAIT)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_version_prints_the_package_version() -> None:
    code, out, _ = await run("--version")
    assert code == 0
    assert out.strip() == f"buildcontrol {version()}"
    assert version() != "0+unknown", "the checkout is installed (pip install -e)"


async def test_health_says_serving_then_not_serving_while_draining(tmp_path: Path) -> None:
    async with serve(tmp_path / "data") as server:
        code, out, _ = await run("health", "--server", server.target)
        assert (code, out.strip()) == (0, "SERVING")
        # The default address comes from BUILDCONTROL_ADDR when --server is not given.
        code, out, _ = await run("health", env={"BUILDCONTROL_ADDR": server.target})
        assert (code, out.strip()) == (0, "SERVING")
        server.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(server.process.wait(), WAIT) == 0


async def test_health_of_an_address_nobody_serves_exits_3() -> None:
    code, _, err = await run("health", "--server", f"127.0.0.1:{free_port()}", "--timeout", "1")
    assert code == 3
    assert err.startswith("error: "), err
