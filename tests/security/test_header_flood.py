"""Requests with header values that are not UTF-8 (sent frame by frame: grpc's own
client refuses to) are refused before authentication, and 20 of them cost a real
server's log one WARNING line, not an ERROR with a traceback (and the raw bytes,
maybe a token) each."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.security.raw_http2 import unary_call
from tests.support.processes import start_server

pytestmark = pytest.mark.e2e

UNAUTHENTICATED, INVALID_ARGUMENT = b"16", b"3"
METHODS = (
    "/buildcontrol.v1.BuildControl/GetBuild",
    "/buildcontrol.v1.BuildControl/WatchBuild",
    "/buildcontrol.v1.BuildControl/SubmitBuild",
    "/buildcontrol.v1.AgentService/Connect",
)


async def test_twenty_requests_with_non_utf8_headers_cost_one_warning_line(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    server = await start_server(data, "--auth", "on")
    admin = (data / "admin.token").read_text().strip().encode()
    try:
        log = data / "server.log"
        statuses = []
        for n in range(20):
            method = METHODS[n % len(METHODS)]
            if n % 2:
                headers = [(b"authorization", b"Bearer " + admin + b"\xff\xfe")]
            else:
                # A valid token does not make a broken header acceptable.
                headers = [(b"authorization", b"Bearer " + admin), (b"x-note", b"caf\xc3\x28")]
            answer = await unary_call(server.port, method, headers)
            statuses.append(answer.get(b"grpc-status"))
        assert statuses == [INVALID_ARGUMENT, UNAUTHENTICATED] * 10
    finally:
        assert await server.stop() == 0
    # Everything the server wrote, start-up (the tokens hint) and shutdown included.
    written = log.read_bytes().splitlines()
    problems = [line for line in written if b"ERROR" in line or b"Traceback" in line]
    assert problems == []
    warnings = [line for line in written if b"not printable ASCII" in line]
    assert len(warnings) == 1
    assert b"\xff" not in log.read_bytes() and admin not in log.read_bytes()
    # Start-up and shutdown lines aside, nothing else was written for them.
    assert len([line for line in written if b"header" in line.lower()]) == 1
    assert len([line for line in written if b" WARNING " in line]) == 1
