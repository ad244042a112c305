"""`buildcontrol token create / revoke` run at the same time, as real processes, lose
no change; names that could confuse a reader (duplicates, control characters, role
names) are refused and leave the file as it was."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import grpc
import pytest
from buildcontrol_cli.main import build_parser
from buildcontrol_proto.v1 import build_control_pb2
from buildcontrol_server.security import tokens
from buildcontrol_server.security.principals import Principal, Role

from tests.support.agent_peer import bearer
from tests.support.secure_servers import SecureServer

CLI = str(Path(sys.executable).with_name("buildcontrol"))
PARALLEL = 8


async def token_command(server: SecureServer, *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        CLI,
        "token",
        *args,
        *server.token_flags(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def tokens_path(server: SecureServer) -> Path:
    assert server.app.security.tokens is not None
    return server.app.security.tokens.source.path  # type: ignore[attr-defined,no-any-return]


async def names_in(server: SecureServer) -> list[str]:
    assert server.app.security.tokens is not None
    return [entry.principal.name for entry in await server.app.security.tokens.source.read()]


async def lists_builds(server: SecureServer, token: str) -> grpc.StatusCode:
    try:
        await server.stub.ListBuilds(build_control_pb2.ListBuildsRequest(), metadata=bearer(token))
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


async def test_parallel_creates_all_land_and_every_printed_token_works(
    stored_server: SecureServer,
) -> None:
    server = stored_server
    before = await names_in(server)
    results = await asyncio.gather(
        *(
            token_command(server, "create", "--name", f"user{n}", "--role", "viewer")
            for n in range(PARALLEL)
        )
    )
    assert [code for code, _, _ in results] == [0] * PARALLEL, [err for _, _, err in results]
    assert sorted(await names_in(server)) == sorted(
        [*before, *(f"user{n}" for n in range(PARALLEL))]
    )
    for _, printed, _ in results:
        assert await lists_builds(server, printed.strip()) is grpc.StatusCode.OK


async def test_a_read_of_the_tokens_by_another_reader_hides_no_change_from_the_server(
    stored_server: SecureServer,
) -> None:
    server = stored_server
    token = tokens.new_token()
    late = tokens.TokenEntry(Principal("late", Role.VIEWER), tokens.token_hash(token))
    await server.rewrite_tokens(lambda now: [*now, late])
    # Read through the server's own source (as names_in does) before any call, with
    # no await in between that would let the server's checker take the change first:
    # the change must still reach the calls' admission.
    assert "late" in await names_in(server)
    assert await lists_builds(server, token) is grpc.StatusCode.OK


async def test_parallel_revokes_and_creates_all_hold(stored_server: SecureServer) -> None:
    server = stored_server
    revoked = ["alice", "bob", "victor", "agent-b"]
    results = await asyncio.gather(
        *(token_command(server, "revoke", "--name", name) for name in revoked),
        *(
            token_command(server, "create", "--name", f"new{n}", "--role", "operator")
            for n in range(len(revoked))
        ),
    )
    assert [code for code, _, _ in results] == [0] * len(results), [e for _, _, e in results]
    names = await names_in(server)
    assert not set(revoked) & set(names)
    assert {f"new{n}" for n in range(len(revoked))} <= set(names)
    for name in revoked:
        assert await lists_builds(server, server.tokens[name]) is grpc.StatusCode.UNAUTHENTICATED
    for _, printed, _ in results[len(revoked) :]:
        assert await lists_builds(server, printed.strip()) is grpc.StatusCode.OK


@pytest.mark.parametrize(
    ("name", "role", "problem"),
    [
        ("alice", "viewer", "exists already"),
        ("ALICE", "viewer", "exists already"),
        ("eve\nadmin", "viewer", "letters, digits"),
        ("eve\x1b[31m", "viewer", "letters, digits"),
        ("eve bob", "viewer", "letters, digits"),
        ("job:b0000000000000000000-j0", "viewer", "letters, digits"),
        ("admin", "operator", "imitates the role"),
        ("Operator", "viewer", "imitates the role"),
        ("agent", "viewer", "imitates the role"),
        ("anonymous", "admin", "reserved"),
        ("server", "operator", "reserved"),
        ("", "viewer", "letters, digits"),
    ],
)
async def test_a_confusing_name_is_refused_and_the_file_is_unchanged(
    server: SecureServer,
    name: str,
    role: str,
    problem: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tokens_path(server)
    before = path.read_bytes()
    args = build_parser().parse_args(
        ["token", "create", "--tokens-file", str(path), "--name", name, "--role", role]
    )
    assert await args.func(args) == 1
    captured = capsys.readouterr()
    assert problem in captured.err
    assert captured.out == ""  # no token printed
    assert path.read_bytes() == before


async def test_a_confusing_name_is_refused_by_the_real_command_too(server: SecureServer) -> None:
    path = tokens_path(server)
    before = path.read_bytes()
    code, out, err = await token_command(server, "create", "--name", "root\x07", "--role", "admin")
    assert (code, out) == (1, "") and "letters, digits" in err
    assert path.read_bytes() == before
