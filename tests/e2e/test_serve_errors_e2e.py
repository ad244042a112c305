"""`buildcontrol serve` refuses a data directory or database it must not use: exit
code 1, one line naming the path, and the file left as it was."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import sqlite3
from pathlib import Path

from tests.support.ports import free_port
from tests.support.processes import BUILDCONTROL, start_server


async def serve_fails(data_dir: Path, *extra: str, without_root_override: bool = False) -> str:
    prefix: list[str] = []
    if without_root_override and os.geteuid() == 0:
        # root writes anywhere; without these capabilities it obeys file modes, as the
        # ordinary user a server runs as in production does.
        prefix = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--"]
    process = await asyncio.create_subprocess_exec(
        *prefix,
        *BUILDCONTROL,
        "serve",
        "--data-dir",
        str(data_dir),
        "--listen",
        "127.0.0.1:0",
        "--metrics-port",
        "-1",
        *extra,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 1, (out, err)
    assert out == b""
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_an_unwritable_data_directory_is_named(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o555)
    line = await serve_fails(data, without_root_override=True)
    assert str(data) in line and "writ" in line


async def test_a_data_directory_under_a_file_is_named(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    line = await serve_fails(blocker / "data")
    assert str(blocker / "data") in line


async def test_a_database_of_a_newer_schema_is_refused_and_left_unchanged(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = await start_server(data)
    assert await server.stop() == 0
    database = data / "buildcontrol.sqlite3"
    with sqlite3.connect(database) as connection:
        connection.execute("PRAGMA user_version = 999")
    before = digest(database)
    line = await serve_fails(data)
    assert str(database) in line and "999" in line
    assert digest(database) == before


async def test_a_second_server_on_the_same_file_exits_with_a_clear_error(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = await start_server(data)
    try:
        line = await serve_fails(data)
        assert str(data / "buildcontrol.sqlite3") in line
        assert "another" in line or "lock" in line
    finally:
        assert await first.stop() == 0


async def test_a_second_server_on_the_same_postgres_database_exits_with_a_clear_error(
    tmp_path: Path, postgres_url: str
) -> None:
    first = await start_server(tmp_path / "first", "--store", postgres_url)
    try:
        line = await serve_fails(tmp_path / "second", "--store", postgres_url)
        assert line.startswith("buildcontrol: database postgresql://")
        assert "already open by another buildcontrol server (buildcontrol pid" in line
    finally:
        assert await first.stop() == 0


async def test_an_unreachable_postgres_exits_with_a_clear_error(tmp_path: Path) -> None:
    url = f"postgresql://buildcontrol:s3cret@127.0.0.1:{free_port()}/builds"

    line = await serve_fails(tmp_path / "data", "--store", url)

    assert "database postgresql://buildcontrol:***@127.0.0.1:" in line and "cannot open" in line
    assert "s3cret" not in line


async def test_a_file_that_is_not_sqlite_is_refused_and_left_untouched(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    database = data / "buildcontrol.sqlite3"
    database.write_bytes(b"these are somebody's notes, not a database\n" * 10)
    before = digest(database)
    line = await serve_fails(data)
    assert str(database) in line and "not a SQLite database" in line
    assert digest(database) == before


async def test_a_listen_address_in_use_is_one_line_and_exit_1(tmp_path: Path) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        port = taken.getsockname()[1]
        process = await asyncio.create_subprocess_exec(
            *BUILDCONTROL, "serve", "--data-dir", str(tmp_path / "data"),
            "--listen", f"127.0.0.1:{port}", "--metrics-port", "-1", "--auth", "off",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(process.communicate(), 30)  # it exits, not hangs
    finally:
        taken.close()
    assert process.returncode == 1
    assert out == b""
    text = err.decode()
    assert "Traceback" not in text
    # grpc's core may log its own line first; ours is the last and names the address.
    last = text.strip().splitlines()[-1]
    assert last.startswith("buildcontrol: cannot listen: ") and f"127.0.0.1:{port}" in last
