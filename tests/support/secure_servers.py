"""A real server with authentication on (in-process, 127.0.0.1:0), a tokens file written
by the test, and helpers to call it as one principal or another."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from buildcontrol_proto.v1 import build_control_pb2, build_control_pb2_grpc, build_pb2
from buildcontrol_server.app import ServerApp
from buildcontrol_server.app_wiring import Clocks
from buildcontrol_server.domain.model import Build
from buildcontrol_server.security import tokens
from buildcontrol_server.security.principals import Principal, Role
from buildcontrol_server.security.settings import SecuritySettings
from buildcontrol_server.security.token_sources import token_source
from buildcontrol_server.store.postgres import PostgresStore

from tests.support import pipelines
from tests.support.agent_peer import AgentPeer
from tests.support.scripted_agent import ScriptedAgent, bearer
from tests.support.servers import settings_for

# name → (role, agent id)
PRINCIPALS: dict[str, tuple[Role, str | None]] = {
    "root": (Role.ADMIN, None),
    "alice": (Role.OPERATOR, None),
    "bob": (Role.OPERATOR, None),
    "victor": (Role.VIEWER, None),
    "agent-a": (Role.AGENT, "agent-a"),
    "agent-b": (Role.AGENT, "agent-b"),
}


RESTRICTED = "release-*"


def principal_tokens() -> tuple[dict[str, str], list[tokens.TokenEntry]]:
    """One token per principal: name → plaintext token, and the entries to store."""
    plain = {name: tokens.new_token() for name in PRINCIPALS}
    entries = [
        tokens.TokenEntry(Principal(name, role, agent_id), tokens.token_hash(plain[name]))
        for name, (role, agent_id) in PRINCIPALS.items()
    ]
    return plain, entries


def write_tokens_file(path: Path) -> dict[str, str]:
    """A tokens file with one token per principal; returns name → plaintext token."""
    plain, entries = principal_tokens()
    tokens.write(path, entries)
    return plain


async def write_tokens_database(url: str) -> dict[str, str]:
    """The same tokens in the database at `url` (migrated first, as a server would),
    so that the server's first start finds tokens and creates none."""
    async with PostgresStore(url):
        pass
    plain, entries = principal_tokens()
    source = token_source(None, Path("unused"), url)
    try:
        await source.change(lambda _, __: entries)
    finally:
        await source.close()
    return plain


@dataclass
class SecureServer:
    app: ServerApp
    target: str
    channel: grpc.aio.Channel
    tokens: dict[str, str]
    # The agents-only address, when the server has one (--agent-listen).
    agent_target: str | None = None
    # The PostgreSQL store (whose database holds the tokens); None: SQLite and a file.
    store_url: str | None = None
    stub: build_control_pb2_grpc.BuildControlStub = field(init=False)

    def __post_init__(self) -> None:
        self.stub = build_control_pb2_grpc.BuildControlStub(self.channel)

    def auth(self, name: str) -> tuple[tuple[str, str], ...]:
        return bearer(self.tokens[name])

    def agent(self, agent_id: str, as_token_of: str | None = None, capacity: int = 4) -> AgentPeer:
        """A scripted agent on the shared channel, with the token of `as_token_of`
        (default: its own)."""
        name = as_token_of or agent_id
        return ScriptedAgent(self.channel, agent_id, self.tokens.get(name), capacity)

    async def submit(self, who: str, **options: Any) -> build_pb2.Build:
        request = options.pop("request", None) or pipeline(**options)
        response = await self.stub.SubmitBuild(request, metadata=self.auth(who))
        build: build_pb2.Build = response.build
        return build

    async def get(self, build_id: str) -> build_pb2.Build:
        response = await self.stub.GetBuild(
            build_control_pb2.GetBuildRequest(build_id=build_id), metadata=self.auth("root")
        )
        build: build_pb2.Build = response.build
        return build

    async def stored(self, build_id: str) -> Build:
        build = await self.app.store.get_build(build_id)
        assert build is not None
        return build

    async def snapshot(self, build_id: str) -> tuple[bytes, int, list[int]]:
        """What must not change after a refused call: the build as GetBuild shows it,
        and the stored versions of the build and its jobs."""
        stored = await self.stored(build_id)
        shown = (await self.get(build_id)).SerializeToString(deterministic=True)
        return shown, stored.version, [job.version for job in stored.jobs()]

    def token_flags(self) -> list[str]:
        """The flags that point `buildcontrol token` at this server's tokens."""
        if self.store_url is not None:
            return ["--store", self.store_url]
        source = self.app.security.tokens.source  # type: ignore[union-attr]
        return ["--tokens-file", str(source.path)]  # type: ignore[attr-defined]

    async def rewrite_tokens(
        self, edit: Callable[[list[tokens.TokenEntry]], list[tokens.TokenEntry]]
    ) -> None:
        """Change the tokens behind the server's back, as an editor or another server's
        `buildcontrol token` would."""
        registry = self.app.security.tokens
        assert registry is not None
        await registry.source.change(lambda entries, _: edit(entries))


def pipeline(name: str = "web", **shape: Any) -> build_control_pb2.SubmitBuildRequest:
    """pipelines.pipeline, named "web" unless told: the name these tests' policies use."""
    return pipelines.pipeline(name=name, **shape)


@asynccontextmanager
async def secure_server(
    tmp_path: Path,
    security: SecuritySettings | None = None,
    channel_credentials: grpc.ChannelCredentials | None = None,
    store_url: str | None = None,
    clocks: Clocks | None = None,
    **overrides: object,
) -> AsyncIterator[SecureServer]:
    """`security` replaces the default (auth on, tokens file at tmp_path/tokens.json,
    or the database's on `store_url`, RESTRICTED pipelines); the shared channel uses
    `channel_credentials` (TLS) if given."""
    tokens_file = tmp_path / "tokens.json"
    if store_url is None:
        plain = write_tokens_file(tokens_file)
    else:
        plain = await write_tokens_database(store_url)
    security = security or SecuritySettings(
        auth=True,
        tokens_file=tokens_file if store_url is None else None,
        restricted_pipelines=(RESTRICTED,),
    )
    app = ServerApp(
        settings_for(tmp_path / "data", security=security, store_url=store_url, **overrides),
        clocks=clocks or Clocks(),
    )
    endpoints = await app.start()
    target = f"127.0.0.1:{endpoints.grpc_port}"
    agent_target = f"127.0.0.1:{endpoints.agent_port}" if endpoints.agent_port else None
    if channel_credentials is None:
        channel = grpc.aio.insecure_channel(target)
    else:
        channel = grpc.aio.secure_channel(target, channel_credentials)
    try:
        yield SecureServer(app, target, channel, plain, agent_target, store_url)
    finally:
        await channel.close()
        await app.stop()


async def cancel_all(
    server: SecureServer, who: str, build_id: str, **fields: Any
) -> list[build_control_pb2.CancelResponse]:
    """Every message of a Cancel as `who` (raises AioRpcError when refused)."""
    request = build_control_pb2.CancelRequest(build_id=build_id, **fields)
    call = server.stub.Cancel(request, metadata=server.auth(who), timeout=10)
    return [message async for message in call]
