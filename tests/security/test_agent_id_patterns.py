"""An agent token's agent_id is a pattern (`|` alternatives, `*`, `%hostname`), and the
first-start agent token accepts an agent started with its default id on the server's
host, the documented example ids, and nothing else."""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from buildcontrol_server.app import ServerApp
from buildcontrol_server.security import agent_id_patterns, tokens
from buildcontrol_server.security.settings import SecuritySettings

from tests.support.scripted_agent import ScriptedAgent
from tests.support.secure_servers import SecureServer
from tests.support.servers import settings_for

CLI = str(Path(sys.executable).with_name("buildcontrol"))


def host() -> str:
    return "ci7.example.org"


@pytest.mark.parametrize(
    ("pattern", "agent_id", "expected"),
    [
        ("agent-1", "agent-1", True),
        ("agent-1", "agent-12", False),
        ("agent-1", "Agent-1", False),
        ("ci-*", "ci-", True),
        ("ci-*", "ci-linux-3", True),
        ("ci-*", "xci-1", False),
        ("%hostname", "ci7.example.org", True),
        ("%hostname", "ci7", False),
        ("%hostname-*", "ci7.example.org-4711", True),
        ("%hostname-*", "ci7.example.orgx-1", False),
        ("a|b", "b", True),
        ("a|b", "a|b", False),
        # Regular-expression characters are plain characters.
        ("ci.+", "ci.+", True),
        ("ci.+", "cix", False),
        ("%hostname", "%hostname", False),
    ],
)
def test_an_agent_id_pattern_names_exactly_the_ids_it_describes(
    pattern: str, agent_id: str, expected: bool
) -> None:
    assert agent_id_patterns.matches(pattern, agent_id, host) is expected


def test_the_bootstrap_pattern_accepts_default_and_example_ids_only() -> None:
    pattern = agent_id_patterns.BOOTSTRAP_PATTERN
    for accepted in ("agent-1", "agent-2", host(), f"{host()}-31337"):
        assert agent_id_patterns.matches(pattern, accepted, host), accepted
    for refused in ("other-host-1", f"x{host()}", "agent", "ci7-1"):
        assert not agent_id_patterns.matches(pattern, refused, host), refused


def test_a_tokens_file_with_an_empty_alternative_is_refused_naming_the_entry() -> None:
    text = (
        '{"tokens": [{"name": "a", "role": "agent", "agent_id": "ci-*||x", "sha256": "'
        + "0" * 64
        + '"}]}'
    )
    with pytest.raises(tokens.TokensFileError, match=r"tokens\[0\]\.agent_id.*empty"):
        tokens.parse(text)


@pytest.fixture
async def first_start(tmp_path: Path) -> AsyncIterator[tuple[grpc.aio.Channel, str]]:
    """A server started with authentication on and no tokens file (it bootstraps one);
    a channel to it and the bootstrap agent token."""
    data = tmp_path / "data"
    app = ServerApp(settings_for(data, security=SecuritySettings(auth=True)))
    endpoints = await app.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{endpoints.grpc_port}")
    try:
        yield channel, (data / tokens.AGENT_TOKEN_FILE).read_text().strip()
    finally:
        await channel.close()
        await app.stop()


@pytest.mark.parametrize(
    "agent_id",
    [socket.gethostname(), f"{socket.gethostname()}-4711", "agent-1", "agent-2"],
)
async def test_the_bootstrap_agent_token_connects_as_a_default_or_example_id(
    first_start: tuple[grpc.aio.Channel, str], agent_id: str
) -> None:
    channel, token = first_start
    agent = ScriptedAgent(channel, agent_id, token)
    await agent.connect()
    await agent.leave()


async def test_the_bootstrap_agent_token_is_refused_as_another_hosts_id(
    first_start: tuple[grpc.aio.Channel, str],
) -> None:
    channel, token = first_start
    elsewhere = f"not-{socket.gethostname()}-1"
    code, details = await ScriptedAgent(channel, elsewhere, token).refused()
    assert code is grpc.StatusCode.PERMISSION_DENIED
    assert "bootstrap-agent" in details and elsewhere in details
    # Nothing was created: the same token still connects as an id it may have.
    agent = ScriptedAgent(channel, "agent-1", token)
    await agent.connect()
    await agent.leave()


async def test_a_pattern_token_made_with_the_cli_connects_as_its_ids_only(
    stored_server: SecureServer,
) -> None:
    server = stored_server
    process = await asyncio.create_subprocess_exec(
        CLI,
        "token",
        "create",
        *server.token_flags(),
        "--name",
        "ci-pool",
        "--role",
        "agent",
        "--agent-id",
        "ci-*|%hostname",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    token = out.decode().strip()

    for agent_id in ("ci-linux-1", socket.gethostname()):
        agent = ScriptedAgent(server.channel, agent_id, token)
        await agent.connect()
        await agent.leave()
    code, details = await ScriptedAgent(server.channel, "agent-a", token).refused()
    assert code is grpc.StatusCode.PERMISSION_DENIED and "ci-pool" in details
    assert server.app.hub.sessions() == []


async def test_the_cli_refuses_a_pattern_with_an_empty_alternative(
    stored_server: SecureServer,
) -> None:
    server = stored_server
    before = await server.app.security.tokens.source.read()  # type: ignore[union-attr]
    process = await asyncio.create_subprocess_exec(
        CLI,
        "token",
        "create",
        *server.token_flags(),
        "--name",
        "typo",
        "--role",
        "agent",
        "--agent-id",
        "ci-*|",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert (process.returncode, out) == (1, b"")
    assert "empty alternative" in err.decode()
    assert await server.app.security.tokens.source.read() == before  # type: ignore[union-attr]
