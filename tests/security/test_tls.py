"""TLS and mutual TLS, with certificates made in the test: a TLS server refuses
plaintext, a mutual-TLS server refuses agents without a client certificate of its
CA, and both accept the right clients (the Python client and reference agent too)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import pytest
from buildcontrol_cli.main import build_parser
from buildcontrol_client import Agent, AgentOptions, BuildControlClient
from buildcontrol_client.credentials import TlsOptions
from buildcontrol_client.errors import Unavailable
from buildcontrol_client.sync_client import SyncBuildControlClient
from buildcontrol_proto.v1 import build_control_pb2, build_pb2
from buildcontrol_server.app import ServerApp
from buildcontrol_server.security.settings import SecuritySettings, TlsFiles
from buildcontrol_server.security.tls import TlsFilesError

from tests.security.certificates import Authority, Issued
from tests.support.scripted_agent import ScriptedAgent
from tests.support.secure_servers import SecureServer, pipeline, secure_server
from tests.support.servers import settings_for


class Pki:
    def __init__(self, directory: Path) -> None:
        self.ca = Authority(directory / "ca")
        self.server = self.ca.issue("server", server=True)
        self.agent = self.ca.issue("agent-a", server=False)
        # CN agent-a, but a SAN URI naming agent-b: the URI wins.
        self.agent_b_by_uri = self.ca.issue(
            "agent-a", server=False, uris=("spiffe://ci.example.org/agent/agent-b",)
        )
        # Signed by a CA the server does not trust.
        self.stranger = Authority(directory / "other", "stranger CA").issue("agent-a", server=False)

    def channel_credentials(self, client: Issued | None = None) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            self.ca.cert.read_bytes(),
            client.key.read_bytes() if client else None,
            client.cert.read_bytes() if client else None,
        )

    def files(self, mutual: bool) -> TlsFiles:
        return TlsFiles(self.server.cert, self.server.key, self.ca.cert if mutual else None)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


@asynccontextmanager
async def tls_server(
    tmp_path: Path, pki: Pki, mutual: bool, agent_listen: str | None = None
) -> AsyncIterator[SecureServer]:
    security = SecuritySettings(
        auth=True,
        tokens_file=tmp_path / "tokens.json",
        tls=pki.files(mutual),
        agent_listen=agent_listen,
    )
    # The shared channel is what people use: TLS, and a client certificate only where
    # the one address requires it from everyone.
    client = pki.agent if mutual and agent_listen is None else None
    async with secure_server(tmp_path, security, pki.channel_credentials(client)) as server:
        yield server


async def list_builds(channel: grpc.aio.Channel, server: SecureServer) -> grpc.StatusCode:
    stub = SecureServer(server.app, server.target, channel, server.tokens).stub
    try:
        await stub.ListBuilds(
            build_control_pb2.ListBuildsRequest(), metadata=server.auth("root"), timeout=5
        )
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


async def test_a_tls_server_refuses_plaintext_and_accepts_tls(tmp_path: Path, pki: Pki) -> None:
    async with tls_server(tmp_path, pki, mutual=False) as server:
        async with grpc.aio.insecure_channel(server.target) as plaintext:
            assert await list_builds(plaintext, server) is grpc.StatusCode.UNAVAILABLE
        assert await list_builds(server.channel, server) is grpc.StatusCode.OK
        # The Python client, with the CA and a token.
        options = TlsOptions(ca_file=pki.ca.cert)
        async with BuildControlClient(
            server.target, token=server.tokens["alice"], tls=options
        ) as client:
            build = await client.submit(pipeline())
            assert (await client.get(build.build_id)).pipeline == "web"


async def test_a_mutual_tls_server_refuses_agents_without_a_certificate_of_its_ca(
    tmp_path: Path, pki: Pki
) -> None:
    async with tls_server(tmp_path, pki, mutual=True) as server:
        for client in (None, pki.stranger):
            async with grpc.aio.secure_channel(
                server.target, pki.channel_credentials(client)
            ) as channel:
                agent = ScriptedAgent(channel, "agent-a", server.tokens["agent-a"])
                code, _ = await agent.refused()
                assert code is grpc.StatusCode.UNAVAILABLE  # the handshake fails
        async with grpc.aio.secure_channel(
            server.target, pki.channel_credentials(pki.agent)
        ) as channel:
            agent = ScriptedAgent(channel, "agent-a", server.tokens["agent-a"])
            await agent.connect()
            await agent.leave()
        assert server.app.hub.sessions() == []


async def test_with_an_agent_address_only_agents_need_certificates(
    tmp_path: Path, pki: Pki
) -> None:
    async with tls_server(tmp_path, pki, mutual=True, agent_listen="127.0.0.1:0") as server:
        assert server.agent_target is not None
        # People and tools: TLS without a client certificate on the main address.
        assert await list_builds(server.channel, server) is grpc.StatusCode.OK
        # An agent stream there is refused: no client certificate on that connection.
        agent = ScriptedAgent(server.channel, "agent-a", server.tokens["agent-a"])
        code, details = await agent.refused()
        assert code is grpc.StatusCode.UNAUTHENTICATED and "certificate" in details
        # The agent address asks for one, and takes only its CA's.
        async with grpc.aio.secure_channel(
            server.agent_target, pki.channel_credentials()
        ) as channel:
            code, _ = await ScriptedAgent(channel, "agent-a", server.tokens["agent-a"]).refused()
            assert code is grpc.StatusCode.UNAVAILABLE
        async with grpc.aio.secure_channel(
            server.agent_target, pki.channel_credentials(pki.agent)
        ) as channel:
            agent = ScriptedAgent(channel, "agent-a", server.tokens["agent-a"])
            await agent.connect()
            await agent.leave()


async def test_the_reference_agent_runs_a_job_over_mutual_tls_with_its_token(
    tmp_path: Path, pki: Pki
) -> None:
    async with tls_server(tmp_path, pki, mutual=True, agent_listen="127.0.0.1:0") as server:
        assert server.agent_target is not None
        tls = TlsOptions(ca_file=pki.ca.cert, cert_file=pki.agent.cert, key_file=pki.agent.key)
        agent = Agent(
            server.agent_target,
            "agent-a",
            capacity=1,
            options=AgentOptions(token=server.tokens["agent-a"], tls=tls),
        )
        running = asyncio.create_task(agent.run())
        try:
            build = await server.submit("alice", command="true")
            watch = server.stub.WatchBuild(
                build_control_pb2.WatchBuildRequest(build_id=build.build_id),
                metadata=server.auth("alice"),
                timeout=20,
            )
            statuses = [m.build_changed.status async for m in watch if m.HasField("build_changed")]
            assert statuses[-1] == build_pb2.BUILD_STATUS_SUCCEEDED
        finally:
            agent.request_shutdown()
            await asyncio.wait_for(running, 20)


@pytest.mark.parametrize("broken", ["cert", "key", "client_ca"])
async def test_unusable_tls_files_stop_the_start_naming_the_file(
    tmp_path: Path, pki: Pki, broken: str
) -> None:
    garbage = tmp_path / f"garbage-{broken}.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    files = {"cert": pki.server.cert, "key": pki.server.key, "client_ca": pki.ca.cert}
    files[broken] = garbage
    security = SecuritySettings(auth=False, tls=TlsFiles(**files))
    app = ServerApp(settings_for(tmp_path / "data", security=security))
    with pytest.raises(TlsFilesError, match=re.escape(str(garbage))):
        await app.start()
    await app.store.close()


async def test_the_cli_speaks_tls_with_its_flags(
    tmp_path: Path, pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    async with tls_server(tmp_path, pki, mutual=False) as server:
        await server.submit("alice")
        token_file = tmp_path / "alice.token"
        token_file.write_text(server.tokens["alice"] + "\n")
        token_file.chmod(0o600)
        base = ["list", "--server", server.target, "--token-file", str(token_file)]
        args = build_parser().parse_args([*base, "--tls-ca", str(pki.ca.cert)])
        assert await args.func(args) == 0
        assert "web" in capsys.readouterr().out
        # Plaintext to a TLS server: unavailable (exit 3), not a hang.
        args = build_parser().parse_args(base)
        assert await args.func(args) == 3
        # A client certificate without its key is a usage error, named.
        args = build_parser().parse_args([*base, "--tls-cert", str(pki.agent.cert)])
        assert await args.func(args) == 4
        assert "--tls-key" in capsys.readouterr().err


async def agent_over(
    server: SecureServer, pki: Pki, client: Issued, agent_id: str, token_of: str
) -> tuple[grpc.StatusCode | None, str]:
    """Connect as `agent_id` with `token_of`'s token over a channel presenting
    `client`; (None, "") when admitted (then it leaves), else the refusal."""
    async with grpc.aio.secure_channel(server.target, pki.channel_credentials(client)) as channel:
        agent = ScriptedAgent(channel, agent_id, server.tokens[token_of])
        agent.open()
        closed = asyncio.create_task(agent.closed.wait())
        welcomed = asyncio.create_task(agent.next("welcome"))
        await asyncio.wait({closed, welcomed}, return_when=asyncio.FIRST_COMPLETED)
        if welcomed.done() and not welcomed.cancelled() and welcomed.exception() is None:
            closed.cancel()
            await agent.leave()
            return None, ""
        welcomed.cancel()
        return await agent.ended()


async def test_under_mutual_tls_a_certificate_speaks_for_its_own_agent_only(
    tmp_path: Path, pki: Pki
) -> None:
    async with tls_server(tmp_path, pki, mutual=True) as server:
        build = await server.submit("alice")
        before = await server.snapshot(build.build_id)
        # agent-1's certificate with agent-2's token: refused, nothing changed.
        code, details = await agent_over(server, pki, pki.agent, "agent-b", "agent-b")
        assert code is grpc.StatusCode.PERMISSION_DENIED and "certificate" in details
        assert server.app.hub.sessions() == []
        assert await server.snapshot(build.build_id) == before
        # Its own agent id, with its own token: admitted.
        assert await agent_over(server, pki, pki.agent, "agent-a", "agent-a") == (None, "")


async def test_a_san_uri_of_the_certificate_wins_over_its_common_name(
    tmp_path: Path, pki: Pki
) -> None:
    async with tls_server(tmp_path, pki, mutual=True) as server:
        code, _ = await agent_over(server, pki, pki.agent_b_by_uri, "agent-a", "agent-a")
        assert code is grpc.StatusCode.PERMISSION_DENIED
        assert server.app.hub.sessions() == []
        admitted = await agent_over(server, pki, pki.agent_b_by_uri, "agent-b", "agent-b")
        assert admitted == (None, "")


async def test_with_auth_off_the_certificate_still_names_the_agent(
    tmp_path: Path, pki: Pki
) -> None:
    security = SecuritySettings(auth=False, tls=pki.files(mutual=True))
    async with secure_server(tmp_path, security, pki.channel_credentials(pki.agent)) as server:
        code, _ = await agent_over(server, pki, pki.agent, "agent-b", "agent-b")
        assert code is grpc.StatusCode.PERMISSION_DENIED
        assert await agent_over(server, pki, pki.agent, "agent-a", "agent-a") == (None, "")


async def test_the_blocking_client_speaks_tls_too(tmp_path: Path, pki: Pki) -> None:
    async with tls_server(tmp_path, pki, mutual=False) as server:
        build = await server.submit("alice")
        token = server.tokens["alice"]

        def over_tls() -> str:
            tls = TlsOptions(ca_file=pki.ca.cert)
            with SyncBuildControlClient(server.target, token=token, tls=tls) as client:
                return client.get(build.build_id).pipeline

        def in_plaintext() -> None:
            with SyncBuildControlClient(server.target, token=token, timeout=5) as client:
                client.get(build.build_id)

        # The blocking calls run off the loop that serves them.
        assert await asyncio.to_thread(over_tls) == "web"
        with pytest.raises(Unavailable):
            await asyncio.to_thread(in_plaintext)
