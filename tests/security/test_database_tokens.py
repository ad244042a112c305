"""On PostgreSQL the tokens live in the database: what one server (or the token CLI on
another host) stores, every server of that database sees; a first start creates tokens
once per database, not once per server; a tokens file beside it is refused. The
job-token key is the database's too."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import grpc
import pytest
from buildcontrol_proto.v1 import build_control_pb2, build_control_pb2_grpc
from buildcontrol_server.app import ServerApp
from buildcontrol_server.security.errors import SecuritySetupError
from buildcontrol_server.security.job_tokens import KEY_FILE_NAME, JobTokens
from buildcontrol_server.security.principals import JobScope, Principal, Role
from buildcontrol_server.security.settings import SecuritySettings
from buildcontrol_server.security.tokens import (
    ADMIN_TOKEN_FILE,
    TokenEntry,
    new_token,
    token_hash,
)

from tests.support.agent_peer import bearer
from tests.support.servers import settings_for

CLI = str(Path(sys.executable).with_name("buildcontrol"))


async def token_command(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        CLI, "token", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def lists_builds(target: str, token: str) -> grpc.StatusCode:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = build_control_pb2_grpc.BuildControlStub(channel)
        try:
            await stub.ListBuilds(build_control_pb2.ListBuildsRequest(), metadata=bearer(token))
        except grpc.aio.AioRpcError as error:
            return error.code()
    return grpc.StatusCode.OK


def server_on(data_dir: Path, url: str, **security: object) -> ServerApp:
    settings = SecuritySettings(auth=True, **security)  # type: ignore[arg-type]
    return ServerApp(settings_for(data_dir, security=settings, store_url=url))


def replica_on(data_dir: Path, url: str) -> ServerApp:
    settings = SecuritySettings(auth=True)
    return ServerApp(settings_for(data_dir, security=settings, store_url=url, replicas="on"))


async def test_the_first_start_makes_tokens_once_per_database_and_another_server_sees_them(
    tmp_path: Path, postgres_url: str
) -> None:
    first = server_on(tmp_path / "one", postgres_url)
    endpoints = await first.start()
    try:
        admin = (tmp_path / "one" / ADMIN_TOKEN_FILE).read_text().strip()
        assert await lists_builds(f"127.0.0.1:{endpoints.grpc_port}", admin) == grpc.StatusCode.OK
        assert not (tmp_path / "one" / "tokens.json").exists()  # hashes are in the database
        code, made, err = await token_command(
            "create", "--store", postgres_url, "--name", "ci", "--role", "viewer"
        )
        assert code == 0, err
    finally:
        await first.stop()

    # Another server of the database (another host: another data directory) finds
    # the tokens there, creates none, and accepts both.
    second = server_on(tmp_path / "two", postgres_url)
    endpoints = await second.start()
    try:
        assert not (tmp_path / "two" / ADMIN_TOKEN_FILE).exists()
        target = f"127.0.0.1:{endpoints.grpc_port}"
        assert await lists_builds(target, admin) == grpc.StatusCode.OK
        assert await lists_builds(target, made.strip()) == grpc.StatusCode.OK
        code, listed, _ = await token_command("list", "--store", postgres_url)
        assert code == 0
        assert listed.split("\n")[:3] == [
            "admin admin",
            "bootstrap-agent agent agent_id=agent-*|%hostname|%hostname-*",
            "ci viewer",
        ]
    finally:
        await second.stop()


async def test_revoking_every_token_does_not_make_the_next_start_mint_an_admin(
    tmp_path: Path, postgres_url: str
) -> None:
    first = server_on(tmp_path / "one", postgres_url)
    await first.start()
    await first.stop()
    for name in ("admin", "bootstrap-agent"):
        code, _, err = await token_command("revoke", "--store", postgres_url, "--name", name)
        assert code == 0, err
    second = server_on(tmp_path / "two", postgres_url)
    await second.start()
    try:
        assert not (tmp_path / "two" / ADMIN_TOKEN_FILE).exists()
        code, listed, _ = await token_command("list", "--store", postgres_url)
        assert (code, listed) == (0, "")
    finally:
        await second.stop()


async def test_a_tokens_file_on_postgresql_is_refused_at_start(
    tmp_path: Path, postgres_url: str
) -> None:
    app = server_on(tmp_path / "data", postgres_url, tokens_file=tmp_path / "tokens.json")
    with pytest.raises(SecuritySetupError, match="tokens live in the database"):
        await app.start()
    await app.store.close()
    assert not (tmp_path / "data" / ADMIN_TOKEN_FILE).exists()


async def test_the_token_cli_on_a_database_no_server_set_up_says_so(postgres_url: str) -> None:
    code, out, err = await token_command("list", "--store", postgres_url)
    assert (code, out) == (1, "")
    assert "no access token tables" in err and "start a buildcontrol server" in err


async def test_every_server_of_a_database_verifies_the_job_tokens_another_minted(
    tmp_path: Path, postgres_url: str
) -> None:
    # Two servers starting at once: one key is written, both use it, no key file.
    apps = [replica_on(tmp_path / name, postgres_url) for name in ("one", "two")]
    await asyncio.gather(*(app.start() for app in apps))
    try:
        minting, verifying = (app.security.job_tokens for app in apps)
        assert minting is not None and verifying is not None
        build_id = "b" + "1" * 20
        token = minting.mint(build_id, f"{build_id}-j0")
        assert verifying.verify(token) == JobScope(build_id, f"{build_id}-j0")
        assert not (tmp_path / "one" / KEY_FILE_NAME).exists()
        assert not (tmp_path / "two" / KEY_FILE_NAME).exists()
    finally:
        await asyncio.gather(*(app.stop() for app in apps))


async def test_a_key_file_of_an_earlier_version_becomes_the_databases_key(
    tmp_path: Path, postgres_url: str
) -> None:
    # A server upgraded from a version that kept the key in its data directory: the
    # tokens its running jobs hold stay valid, on it and on every other server.
    before = JobTokens.load_or_create(tmp_path / "one" / KEY_FILE_NAME)
    build_id = "b" + "2" * 20
    token = before.mint(build_id, f"{build_id}-j0")
    upgraded = replica_on(tmp_path / "one", postgres_url)
    await upgraded.start()
    try:
        other = replica_on(tmp_path / "two", postgres_url)
        await other.start()
        try:
            for app in (upgraded, other):
                assert app.security.job_tokens is not None
                assert app.security.job_tokens.verify(token) is not None
        finally:
            await other.stop()
    finally:
        await upgraded.stop()


async def test_a_token_made_a_moment_ago_is_accepted_after_another_reload_took_it(
    tmp_path: Path, postgres_url: str
) -> None:
    """The interleaving that refused such a token: the call's lookup misses, a NOTIFY's
    reload then takes the change, and the call's own re-read finds nothing new. The
    call must still decide again (and accept it)."""
    app = server_on(tmp_path / "data", postgres_url)
    await app.start()
    try:
        registry = app.security.tokens
        assert registry is not None
        token = new_token()
        digest = token_hash(token)
        assert registry.principal_of(digest) is None  # the call's lookup: unknown
        late = TokenEntry(Principal("late", Role.VIEWER), digest)
        await registry.source.change(lambda entries, _: [*entries, late])
        await registry.poll()  # another reload (the NOTIFY's) takes the change first
        assert registry.principal_of(digest) is not None
        assert await registry.changed_since()  # so the call decides again
    finally:
        await app.stop()
