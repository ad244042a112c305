"""Which agent runs which version: the Welcome carries the server's version, the Hello
the agent's, and ListAgents (and `buildcontrol agents`) shows it; the reference agent
sends the installed package's version."""

from __future__ import annotations

from buildcontrol.v1 import build_control_pb2
from buildcontrol_client.agent import AGENT_VERSION
from buildcontrol_server.rpc.convert import MAX_VERSION_LENGTH
from buildcontrol_server.version import version

from tests.rpc.conftest import Running
from tests.support.agent_peer import AgentPeer


async def test_welcome_and_list_agents_carry_the_versions(server: Running) -> None:
    old = AgentPeer(server.target, "old-agent")
    hello = old.hello()
    hello.agent_version = "0.0.9"
    welcome = await old.connect(hello=hello)
    assert welcome.server_version == version() != "0+unknown"
    boastful = AgentPeer(server.target, "long-version")
    hello = boastful.hello()
    hello.agent_version = "x" * 10_000
    await boastful.connect(hello=hello)
    agents = (await server.stub.ListAgents(build_control_pb2.ListAgentsRequest())).agents
    versions = {a.agent_id: a.version for a in agents}
    assert versions == {"old-agent": "0.0.9", "long-version": "x" * MAX_VERSION_LENGTH}
    await old.leave()
    await boastful.leave()


def test_the_reference_agent_reports_the_installed_version() -> None:
    assert version() == AGENT_VERSION
