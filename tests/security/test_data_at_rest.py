"""Data at rest through a real `buildcontrol serve` process: the data directory is
0700 and every file the server writes in it (database, WAL, SHM, tokens) 0600; a data
directory that group or others may write is refused at start (exit 2, one line) and
left exactly as it was."""

from __future__ import annotations

import asyncio
import hashlib
import stat
from pathlib import Path

import grpc
from buildcontrol_proto.v1 import build_control_pb2_grpc

from tests.support.agent_peer import bearer
from tests.support.processes import BUILDCONTROL, start_server
from tests.support.secure_servers import pipeline

SERVER_FILES = (
    "buildcontrol.sqlite3",
    "buildcontrol.sqlite3-wal",
    "buildcontrol.sqlite3-shm",
    "tokens.json",
)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def tree_digest(directory: Path) -> dict[str, tuple[int, str]]:
    return {
        str(path.relative_to(directory)): (
            mode(path),
            hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "",
        )
        for path in sorted(directory.rglob("*"))
    }


async def serve_exit(data_dir: Path) -> tuple[int, list[str]]:
    process = await asyncio.create_subprocess_exec(
        *BUILDCONTROL,
        "serve",
        "--data-dir",
        str(data_dir),
        "--listen",
        "127.0.0.1:0",
        "--metrics-port",
        "-1",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert out == b"", out
    assert process.returncode is not None
    return process.returncode, err.decode().strip().splitlines()


async def test_the_server_writes_its_data_dir_0700_and_its_files_0600(tmp_path: Path) -> None:
    data = tmp_path / "fresh" / "data"
    server = await start_server(data, "--auth", "on")
    try:
        admin = next(data.glob("*admin*")).read_text().strip()
        async with grpc.aio.insecure_channel(server.target) as channel:
            stub = build_control_pb2_grpc.BuildControlStub(channel)
            request = pipeline(name="secret-env")
            request.stages[0].jobs[0].env["API_KEY"] = "hunter2"
            await stub.SubmitBuild(request, metadata=bearer(admin), timeout=10)
        assert mode(data) == 0o700
        for name in SERVER_FILES:
            assert mode(data / name) == 0o600, name
        token_files = [p for p in data.iterdir() if "token" in p.name]
        assert len(token_files) >= 3, token_files  # tokens.json, the admin's, the agent's
        for path in token_files:
            assert mode(path) == 0o600, path
    finally:
        assert await server.stop() == 0


async def test_files_an_older_server_left_world_readable_are_narrowed(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)  # readable by others, but only we may write: allowed
    database = data / "buildcontrol.sqlite3"
    database.touch()
    database.chmod(0o644)
    server = await start_server(data)
    try:
        assert mode(data) == 0o755  # an existing directory is not changed
        assert mode(database) == 0o600
        assert mode(data / "buildcontrol.sqlite3-wal") == 0o600
    finally:
        assert await server.stop() == 0


async def test_a_data_dir_others_may_write_is_refused_and_left_alone(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = await start_server(data, "--auth", "on")
    assert await server.stop() == 0
    (data / "server.log").unlink()  # the test's own capture of stderr, not the server's
    for unsafe in (0o775, 0o757, 0o1777):
        data.chmod(unsafe)
        before = tree_digest(data)
        code, lines = await serve_exit(data)
        assert code == 2, lines
        assert len(lines) == 1, lines
        assert str(data) in lines[0] and "writable by group or others" in lines[0], lines
        assert f"{unsafe:04o}" in lines[0]
        assert tree_digest(data) == before
        assert mode(data) == unsafe
