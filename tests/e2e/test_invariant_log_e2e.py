"""A server process's invariant auditor writes what it finds to the server's log, and
every test's teardown reads those logs (tests/conftest.py): here a build's row is set
back to RUNNING behind the server's back, so the auditor must find a live build with no
actor, and the log check must see it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import grpc
import pytest
from buildcontrol_proto.v1 import build_control_pb2, build_control_pb2_grpc, build_pb2

from tests.support.build_waits import one_job
from tests.support.processes import SERVER_LOGS, logged_violations, start_server, until


@pytest.mark.breaks_invariants
async def test_a_violation_found_by_a_server_process_is_in_the_log_the_teardown_reads(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    server = await start_server(data, "--audit-interval", "0.2")
    try:
        async with grpc.aio.insecure_channel(server.target) as channel:
            stub = build_control_pb2_grpc.BuildControlStub(channel)
            # No agent has this label: the build waits QUEUED, then its cancel ends it.
            request = one_job("true", labels={"os": "nowhere"})
            build_id = (await stub.SubmitBuild(request)).build.build_id
            cancel = build_control_pb2.CancelRequest(build_id=build_id, reason="test")
            events = [event async for event in stub.Cancel(cancel, timeout=20)]
            assert events[-1].finished.status == build_pb2.BUILD_STATUS_CANCELED
            log = data / "server.log"
            assert log in SERVER_LOGS
            assert logged_violations(log) == []
            with sqlite3.connect(data / "buildcontrol.sqlite3") as connection:
                connection.execute(
                    "UPDATE builds SET status = 'RUNNING' WHERE build_id = ?", (build_id,)
                )
            await until(lambda: bool(logged_violations(log)), 20, "the auditor's log line")
            line = logged_violations(log)[0]
            assert "build_has_actor" in line and build_id in line
    finally:
        assert await server.stop() == 0
