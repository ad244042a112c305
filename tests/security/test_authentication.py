"""Who the caller is: bearer tokens, the tokens file, its first-start creation, and
the open health and reflection services."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import grpc
import pytest
from buildcontrol_proto.v1 import build_control_pb2
from buildcontrol_server.app import ServerApp
from buildcontrol_server.security import tokens
from buildcontrol_server.security.principals import Principal, Role
from buildcontrol_server.security.settings import SecuritySettings
from buildcontrol_server.security.token_registry import TokenRegistry
from buildcontrol_server.security.token_sources import FileTokenSource
from buildcontrol_server.security.tokens import TokensFileError
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.support.secure_servers import SecureServer, pipeline, secure_server
from tests.support.servers import settings_for

# One request per BuildControl method; streams are refused before their first message.
REQUESTS = {
    "SubmitBuild": pipeline(),
    "GetBuild": build_control_pb2.GetBuildRequest(build_id="b" + "0" * 20),
    "ListBuilds": build_control_pb2.ListBuildsRequest(),
    "WatchBuild": build_control_pb2.WatchBuildRequest(build_id="b" + "0" * 20),
    "Cancel": build_control_pb2.CancelRequest(build_id="b" + "0" * 20),
    "CancelBuilds": build_control_pb2.CancelBuildsRequest(pipeline="web"),
    "ListAgents": build_control_pb2.ListAgentsRequest(),
}


async def call(server: SecureServer, method: str, metadata: object) -> grpc.StatusCode:
    rpc = getattr(server.stub, method)
    try:
        result = rpc(REQUESTS[method], metadata=metadata, timeout=5)
        if hasattr(result, "__aiter__"):
            async for _ in result:
                pass
        else:
            await result
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


@pytest.mark.parametrize("method", sorted(REQUESTS))
async def test_every_method_without_a_token_is_unauthenticated(
    server: SecureServer, method: str
) -> None:
    assert await call(server, method, ()) == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize(
    "header",
    [
        "Bearer bct_not-a-token-of-this-server",
        "Basic dXNlcjpwYXNz",
        "Bearer",
        "bct_missing-the-scheme",
    ],
)
async def test_a_token_the_server_does_not_know_is_unauthenticated(
    server: SecureServer, header: str
) -> None:
    assert await call(server, "ListBuilds", (("authorization", header),)) == (
        grpc.StatusCode.UNAUTHENTICATED
    )


async def test_two_authorization_headers_are_refused(server: SecureServer) -> None:
    metadata = (*server.auth("root"), *server.auth("victor"))
    assert await call(server, "ListBuilds", metadata) == grpc.StatusCode.UNAUTHENTICATED


async def test_the_scheme_is_case_insensitive(server: SecureServer) -> None:
    metadata = (("authorization", f"bearer {server.tokens['victor']}"),)
    assert await call(server, "ListBuilds", metadata) == grpc.StatusCode.OK


async def test_unauthenticated_submit_stores_nothing(server: SecureServer) -> None:
    assert await call(server, "SubmitBuild", ()) == grpc.StatusCode.UNAUTHENTICATED
    assert await server.app.store.list_builds(10, None, None) == []


async def test_health_and_reflection_answer_without_a_token(server: SecureServer) -> None:
    health = health_pb2_grpc.HealthStub(server.channel)
    reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(server.channel)
    listing = reflection.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
    )
    names = {s.name async for answer in listing for s in answer.list_services_response.service}
    assert "buildcontrol.v1.BuildControl" in names


async def test_refusals_are_audited_with_principal_and_method_never_the_token(
    server: SecureServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="buildcontrol.audit.access")
    wrong = "bct_wrong-token-that-must-not-be-logged"
    await call(server, "ListBuilds", (("authorization", f"Bearer {wrong}"),))
    await call(server, "SubmitBuild", server.auth("victor"))
    lines = [r for r in caplog.records if r.name == "buildcontrol.audit.access"]
    fields = [getattr(r, "fields", {}) for r in lines]
    assert {"principal": "-", "verdict": "UNAUTHENTICATED"}.items() <= fields[0].items()
    assert fields[0]["method"] == "/buildcontrol.v1.BuildControl/ListBuilds"
    assert {"principal": "victor", "role": "viewer", "verdict": "PERMISSION_DENIED"}.items() <= (
        fields[1].items()
    )
    everything = caplog.text + repr(fields)
    assert wrong not in everything
    assert all(token not in everything for token in server.tokens.values())


async def test_a_token_created_while_running_works_and_a_revoked_one_stops(
    tmp_path: Path,
) -> None:
    async with secure_server(tmp_path) as server:
        path = tmp_path / "tokens.json"
        carol = tokens.new_token()
        entries = tokens.read(path)
        carol_entry = tokens.TokenEntry(Principal("carol", Role.VIEWER), tokens.token_hash(carol))
        tokens.write(path, [*entries, carol_entry])
        metadata = (("authorization", f"Bearer {carol}"),)
        assert await call(server, "ListBuilds", metadata) == grpc.StatusCode.OK
        tokens.write(path, entries)
        assert await call(server, "ListBuilds", metadata) == grpc.StatusCode.UNAUTHENTICATED
        # A broken edit keeps the tokens in force rather than locking everyone out.
        path.write_text("{not json")
        assert await call(server, "ListBuilds", server.auth("victor")) == grpc.StatusCode.OK


# ---- the tokens file ----------------------------------------------------------------


async def test_first_start_creates_an_admin_and_an_agent_token_in_private_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    data = tmp_path / "data"
    app = ServerApp(settings_for(data, security=SecuritySettings(auth=True)))
    endpoints = await app.start()
    try:
        admin = (data / "admin.token").read_text().strip()
        agent = (data / "agent.token").read_text().strip()
        for path in (data / "admin.token", data / "agent.token", data / "tokens.json"):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        stored = (data / "tokens.json").read_text()
        assert admin not in stored and agent not in stored
        assert tokens.token_hash(admin) in stored
        hint = capsys.readouterr()
        banner = [r.getMessage() for r in caplog.records if r.name == "buildcontrol.bootstrap"]
        assert len(banner) == 1
        assert str(data / "admin.token") in banner[0] and str(data / "agent.token") in banner[0]
        for secret in (admin, agent):
            assert secret not in hint.err and secret not in hint.out and secret not in caplog.text
        async with grpc.aio.insecure_channel(f"127.0.0.1:{endpoints.grpc_port}") as channel:
            stub = SecureServer(app, "", channel, {"admin": admin}).stub
            await stub.ListBuilds(
                build_control_pb2.ListBuildsRequest(),
                metadata=(("authorization", f"Bearer {admin}"),),
            )
    finally:
        await app.stop()
    # The second start finds the file: no new tokens, no hint.
    app = ServerApp(settings_for(data, security=SecuritySettings(auth=True)))
    await app.start()
    await app.stop()
    assert (data / "admin.token").read_text().strip() == admin
    assert "admin.token" not in capsys.readouterr().err


async def test_a_named_tokens_file_that_does_not_exist_stops_the_start(tmp_path: Path) -> None:
    missing = tmp_path / "typo.json"
    app = ServerApp(
        settings_for(tmp_path / "data", security=SecuritySettings(auth=True, tokens_file=missing))
    )
    with pytest.raises(TokensFileError, match=r"typo\.json"):
        await app.start()
    await app.store.close()
    assert not missing.exists()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('{"tokens": [{"name": "x", "role": "king", "sha256": "' + "0" * 64 + '"}]}', "role"),
        ('{"tokens": [{"name": "x", "role": "agent", "sha256": "' + "0" * 64 + '"}]}', "agent_id"),
        ('{"tokens": [{"name": "x", "role": "viewer", "sha256": "abc"}]}', "sha256"),
        ('{"tokens": [{"role": "viewer", "sha256": "' + "0" * 64 + '"}]}', "name"),
        ("[1, 2]", "tokens"),
    ],
)
def test_a_broken_tokens_file_is_refused_naming_the_problem(text: str, problem: str) -> None:
    with pytest.raises(TokensFileError, match=problem):
        tokens.parse(text)


def test_a_tokens_file_may_be_yaml() -> None:
    digest = tokens.token_hash("t")
    entries = tokens.parse(f"tokens:\n  - name: ci\n    role: operator\n    sha256: {digest}\n")
    assert entries == [tokens.TokenEntry(Principal("ci", Role.OPERATOR), digest)]


async def test_lookup_finds_the_token_among_many(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    secrets_by_name = {f"user{n}": tokens.new_token() for n in range(50)}
    tokens.write(
        path,
        [
            tokens.TokenEntry(Principal(name, Role.VIEWER), tokens.token_hash(secret))
            for name, secret in secrets_by_name.items()
        ],
    )
    registry = TokenRegistry(FileTokenSource(path))
    await registry.load()
    for name, secret in secrets_by_name.items():
        found = registry.authenticate(secret)
        assert found is not None and found.name == name
    assert registry.authenticate(secrets_by_name["user1"] + "x") is None
