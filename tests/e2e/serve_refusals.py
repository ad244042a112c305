"""`buildcontrol serve` started with settings it must refuse: its one line on stderr."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from tests.support.processes import BUILDCONTROL


async def serve_refused(data_dir: Path, *flags: str, env: dict[str, str] | None = None) -> str:
    """The one stderr line of a serve that must refuse its settings (exit code 2)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("BUILDCONTROL_")}
    process = await asyncio.create_subprocess_exec(
        *BUILDCONTROL, "serve", "--data-dir", str(data_dir), "--listen", "127.0.0.1:0",
        "--metrics-port", "-1", *flags,
        env={**environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 2, (out, err)
    assert out == b""
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1, lines
    assert not await asyncio.to_thread(data_dir.exists)  # refused before anything was made
    return lines[0]
