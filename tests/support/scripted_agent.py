"""The security tests' scripted agent: tests/support/agent_peer.py's, on a channel the
test makes (TLS, or not) and with the token the test chooses."""

from __future__ import annotations

import grpc

from tests.support.agent_peer import AgentPeer, bearer

__all__ = ["ScriptedAgent", "bearer"]


def ScriptedAgent(
    channel: grpc.aio.Channel, agent_id: str, token: str | None, capacity: int = 4
) -> AgentPeer:
    return AgentPeer(None, agent_id, capacity=capacity, channel=channel, token=token)
