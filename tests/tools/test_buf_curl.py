"""Operators' tools against a live server process, with no .proto files at hand: `buf curl`
(the npm @bufbuild/buf pinned in tools/buf) discovers the API by server reflection
alone, lists the services and calls GetBuild; and the proto checks' self-check."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from buildcontrol_client import BuildControlClient, parse_pipeline

from tests.support.processes import ServerProc, start_server

REPO = Path(__file__).resolve().parents[2]
BUF = REPO / "tools" / "buf" / "node_modules" / ".bin" / "buf"
# grpc.aio serves reflection v1alpha only; buf curl would try v1 first, then fall back.
CURL = ["curl", "--protocol", "grpc", "--http2-prior-knowledge"]
REFLECTION = ["--reflect-protocol", "grpc-v1alpha"]

pytestmark = pytest.mark.skipif(not BUF.exists(), reason="run `make test` (it installs buf)")


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[ServerProc]:
    proc = await start_server(tmp_path / "data")
    try:
        yield proc
    finally:
        await proc.stop()


def admin_token(server: ServerProc) -> str | None:
    """The token a first start made (None when the server runs with auth off)."""
    path = server.data_dir / "admin.token"
    return path.read_text().strip() if path.exists() else None


async def buf(*args: str) -> subprocess.CompletedProcess[str]:
    process = await asyncio.create_subprocess_exec(
        str(BUF), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return subprocess.CompletedProcess(args, process.returncode, out.decode(), err.decode())


def auth_header(server: ServerProc) -> list[str]:
    token = admin_token(server)
    return ["-H", f"Authorization: Bearer {token}"] if token else []


async def test_buf_curl_lists_the_services_by_reflection(server: ServerProc) -> None:
    # No token and no schema: reflection is open, as load balancers and operators need.
    result = await buf(*CURL, *REFLECTION, "--list-services", f"http://{server.target}")

    assert result.returncode == 0, result.stderr
    services = result.stdout.split()
    assert "buildcontrol.v1.BuildControl" in services
    assert "buildcontrol.v1.AgentService" in services
    assert "grpc.health.v1.Health" in services


async def test_buf_curl_with_its_default_protocol_falls_back_to_v1alpha(
    server: ServerProc,
) -> None:
    # buf curl's default asks reflection v1 first; the server answers UNIMPLEMENTED
    # (grpcio-reflection has no v1), and buf goes on with v1alpha: no flag needed.
    result = await buf(*CURL, "--list-services", f"http://{server.target}")

    assert result.returncode == 0, result.stderr
    assert "buildcontrol.v1.BuildControl" in result.stdout.split()


async def test_buf_curl_calls_get_build_by_reflection_alone(server: ServerProc) -> None:
    pipeline = {
        "pipeline": "curl",
        "stages": [{"name": "s", "jobs": [{"name": "j", "steps": ["true"]}]}],
    }
    async with BuildControlClient(server.target, token=admin_token(server)) as client:
        build = await client.submit(parse_pipeline(pipeline))

    result = await buf(
        *CURL,
        *REFLECTION,
        *auth_header(server),
        "--data",
        json.dumps({"build_id": build.build_id}),
        f"http://{server.target}/buildcontrol.v1.BuildControl/GetBuild",
    )

    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)["build"]
    assert (answer["buildId"], answer["pipeline"]) == (build.build_id, "curl")
    assert answer["stages"][0]["jobs"][0]["steps"][0]["command"] == "true"


async def test_buf_curl_shows_not_found_as_a_grpc_status(server: ServerProc) -> None:
    result = await buf(
        *CURL,
        *REFLECTION,
        *auth_header(server),
        "--data",
        '{"build_id": "b00000000000000000000"}',
        f"http://{server.target}/buildcontrol.v1.BuildControl/GetBuild",
    )

    assert result.returncode != 0
    assert json.loads(result.stderr)["code"] == "not_found"


def test_the_proto_checks_pass_and_catch_a_breaking_change() -> None:
    result = subprocess.run(
        [str(REPO / "tools" / "buf" / "check-protos.sh")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert 'Previously present RPC "ListAgents"' in result.stdout
