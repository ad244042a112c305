"""`buildcontrol admin purge` against a server with authentication on: the dry run
shows what would go and the purge before a date deletes it; only admins may purge;
a date that is not one is refused by the CLI before any call."""

from __future__ import annotations

import argparse
from pathlib import Path

import grpc
import pytest
from buildcontrol_client.cli import register
from buildcontrol_proto.v1 import housekeeping_pb2, housekeeping_pb2_grpc

from tests.support.pipelines import pipeline
from tests.support.secure_servers import SecureServer
from tests.support.store_samples import prefill

WAIT = 20.0


def parsed(server: SecureServer, tmp_path: Path, *argv: str) -> argparse.Namespace:
    token_file = tmp_path / "root.token"
    token_file.write_text(server.tokens["root"])
    parser = argparse.ArgumentParser(prog="buildcontrol")
    register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args([*argv, "--server", server.target, "--token-file", str(token_file)])


async def test_cli_shows_what_would_go_then_purges_before_a_date(
    server: SecureServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await prefill(server.app.store, 2)
    live = await server.submit("alice", request=pipeline(labels={"os": "plan9"}))
    dry = parsed(server, tmp_path, "admin", "purge", "--dry-run", "--before", "2024-01-01")
    assert await dry.func(dry) == 0
    assert capsys.readouterr().out.splitlines() == [
        "would delete: 2 builds, 4 jobs, 8 steps, 0 submit_requests, 0 cancel_audit,"
        " 0 webhook_outbox, 0 webhook_deliveries",
        "finished builds before 2024-01-01T00:00:00Z",
    ]
    assert len(await server.app.store.list_builds(10)) == 3
    now = parsed(server, tmp_path, "admin", "purge", "--before", "2024-01-01T01:00:00+01:00")
    assert await now.func(now) == 0
    assert capsys.readouterr().out.startswith("deleted: 2 builds, 4 jobs, 8 steps,")
    [kept] = await server.app.store.list_builds(10)
    assert kept.build_id == live.build_id


@pytest.mark.parametrize("who", ["alice", "victor"])
async def test_only_admins_may_purge(server: SecureServer, who: str) -> None:
    await prefill(server.app.store, 2)
    sizes = (await server.app.store.retention.sizes()).rows
    stub = housekeeping_pb2_grpc.HousekeepingStub(server.channel)
    for dry_run in (True, False):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.Purge(
                housekeeping_pb2.PurgeRequest(dry_run=dry_run),
                metadata=server.auth(who),
                timeout=WAIT,
            )
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert (await server.app.store.retention.sizes()).rows == sizes


def test_a_date_that_is_not_one_is_refused_before_any_call(
    server: SecureServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parsed(server, tmp_path, "admin", "purge", "--before", "last tuesday")
    assert exited.value.code == 2
    assert "'last tuesday' is not a date" in capsys.readouterr().err
