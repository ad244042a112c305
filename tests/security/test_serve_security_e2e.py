"""`buildcontrol serve` with its default (authentication on) and the CLI and agent
against it, as processes, as a user on a fresh machine runs them (README)."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import pytest

from tests.security.certificates import Authority
from tests.support.processes import BUILDCONTROL, start_agent, start_server

pytestmark = pytest.mark.e2e
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "hello.yaml"
EXIT_DENIED = 6  # buildcontrol_client/cli_exit.py


async def cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    environment = {k: v for k, v in os.environ.items() if k != "BUILDCONTROL_TOKEN"}
    environment.update(env or {})
    process = await asyncio.create_subprocess_exec(
        *BUILDCONTROL,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=environment,
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_a_fresh_server_creates_tokens_and_the_cli_and_agent_use_them(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    server = await start_server(data, "--auth", "on")
    agent = None
    try:
        admin_file, agent_file = data / "admin.token", data / "agent.token"
        for path in (admin_file, agent_file, data / "tokens.json"):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
        admin = admin_file.read_text().strip()

        code, _, err = await cli("list", "--server", server.target)
        assert code == EXIT_DENIED and "UNAUTHENTICATED" in err
        code, _, _ = await cli("list", "--server", server.target, "--token-file", str(admin_file))
        assert code == 0
        code, out, _ = await cli(
            "submit", str(EXAMPLE), "--server", server.target, env={"BUILDCONTROL_TOKEN": admin}
        )
        assert code == 0
        build_id = out.split()[0]

        # A viewer created while the server runs may look but not submit.
        code, viewer, _ = await cli(
            "token", "create", "--data-dir", str(data), "--name", "vi", "--role", "viewer"
        )
        assert code == 0
        as_viewer = {"BUILDCONTROL_TOKEN": viewer.strip()}
        code, _, err = await cli("submit", str(EXAMPLE), "--server", server.target, env=as_viewer)
        assert code == EXIT_DENIED and "PERMISSION_DENIED" in err

        # The reference agent with the agent token runs the build to its end.
        agent = await start_agent(
            server.target, "agent-1", tmp_path, "os=linux", 2, "--token-file", str(agent_file)
        )
        code, _, _ = await cli(
            "watch", build_id, "--server", server.target, env={"BUILDCONTROL_TOKEN": admin}
        )
        assert code == 0
    finally:
        if agent is not None:
            await agent.stop()
        assert await server.stop() == 0
    log = (data / "server.log").read_text()
    assert str(admin_file) in log and str(agent_file) in log  # the one hint
    assert admin not in log
    assert agent_file.read_text().strip() not in log


async def serve_fails(tmp_path: Path, *flags: str) -> str:
    process = await asyncio.create_subprocess_exec(
        *BUILDCONTROL,
        "serve",
        "--data-dir",
        str(tmp_path / "data"),
        "--listen",
        "127.0.0.1:0",
        "--metrics-port",
        "-1",
        *flags,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 1, (out, err)
    return err.decode()


async def test_serve_refuses_a_certificate_without_its_key(tmp_path: Path) -> None:
    issued = Authority(tmp_path / "pki").issue("server", server=True)
    err = await serve_fails(tmp_path, "--tls-cert", str(issued.cert))
    assert "--tls-key" in err


async def test_serve_refuses_a_missing_tls_file_naming_it(tmp_path: Path) -> None:
    issued = Authority(tmp_path / "pki").issue("server", server=True)
    missing = tmp_path / "nowhere.key"
    err = await serve_fails(
        tmp_path, "--auth", "off", "--tls-cert", str(issued.cert), "--tls-key", str(missing)
    )
    assert str(missing) in err
