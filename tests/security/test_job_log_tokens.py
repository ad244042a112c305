"""Job logs and credentials: a job token writes and reads its own job's log only; no
other credential uploads; a job token of another job (even of the same build) can
neither upload nor read; after its job's end it only uploads the log's tail, for a
while. Each refusal leaves the stored log as it was."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import grpc
import pytest
from buildcontrol_proto.v1 import agent_pb2, agent_pb2_grpc, build_control_pb2
from buildcontrol_server.app_wiring import Clocks
from buildcontrol_server.security.access_rules import LOG_TAIL_SECONDS

from tests.security.job_token_calls import assigned, finish, refusal
from tests.support.agent_peer import bearer
from tests.support.secure_servers import SecureServer, secure_server

WAIT = 10.0


async def _each(
    requests: Iterable[agent_pb2.UploadLogsRequest],
) -> AsyncIterator[agent_pb2.UploadLogsRequest]:
    for request in requests:
        yield request


def upload(
    server: SecureServer, token: str, build_id: str, job_id: str, data: bytes, offset: int = 0
) -> grpc.aio.StreamUnaryCall[agent_pb2.UploadLogsRequest, agent_pb2.UploadLogsResponse]:
    stub = agent_pb2_grpc.AgentServiceStub(server.channel)
    chunk = agent_pb2.UploadLogsRequest(build_id=build_id, job_id=job_id, offset=offset, data=data)
    return stub.UploadLogs(_each([chunk]), metadata=bearer(token), timeout=WAIT)


async def read(server: SecureServer, token: str, build_id: str, job_id: str) -> bytes:
    request = build_control_pb2.GetJobLogRequest(build_id=build_id, job_id=job_id)
    response = await server.stub.GetJobLog(request, metadata=bearer(token), timeout=WAIT)
    return response.data


async def test_a_job_token_writes_and_reads_its_own_log(server: SecureServer) -> None:
    build_id, _agent, [job] = await assigned(server)
    assert (await upload(server, job.job_token, build_id, job.job_id, b"hello\n")).stored_size == 6
    assert await read(server, job.job_token, build_id, job.job_id) == b"hello\n"
    follow = server.stub.FollowJobLog(
        build_control_pb2.FollowJobLogRequest(build_id=build_id, job_id=job.job_id),
        metadata=bearer(job.job_token),
        timeout=WAIT,
    )
    assert (await follow.read()).data == b"hello\n"
    follow.cancel()
    # A viewer reads every job's log.
    assert await read(server, server.tokens["victor"], build_id, job.job_id) == b"hello\n"


async def test_another_jobs_token_can_neither_upload_nor_read(server: SecureServer) -> None:
    build_id, _agent, [first, second] = await assigned(server, jobs=2)
    await upload(server, first.job_token, build_id, first.job_id, b"mine\n")
    code, details = await refusal(
        upload(server, second.job_token, build_id, first.job_id, b"forged\n", offset=5)
    )
    assert code == grpc.StatusCode.PERMISSION_DENIED, details
    code, _ = await refusal(read(server, second.job_token, build_id, first.job_id))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    code, _ = await refusal(
        server.stub.FollowJobLog(
            build_control_pb2.FollowJobLogRequest(build_id=build_id, job_id=first.job_id),
            metadata=bearer(second.job_token),
            timeout=WAIT,
        ).read()
    )
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert await read(server, first.job_token, build_id, first.job_id) == b"mine\n"


async def test_a_job_token_of_another_build_cannot_read(server: SecureServer) -> None:
    build_id, _agent, [job] = await assigned(server)
    other = await server.submit("bob", name="elsewhere")
    other_job = other.stages[0].jobs[0].job_id
    code, _ = await refusal(read(server, job.job_token, other.build_id, other_job))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    code, _ = await refusal(upload(server, job.job_token, other.build_id, other_job, b"x"))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert build_id != other.build_id


@pytest.mark.parametrize("who", ["alice", "agent-a", "root"])
async def test_no_credential_but_a_job_token_may_upload(server: SecureServer, who: str) -> None:
    build_id, _agent, [job] = await assigned(server)
    code, _ = await refusal(upload(server, server.tokens[who], build_id, job.job_id, b"x"))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert await read(server, job.job_token, build_id, job.job_id) == b""


async def test_an_upload_without_a_token_is_unauthenticated(server: SecureServer) -> None:
    build_id, _agent, [job] = await assigned(server)
    stub = agent_pb2_grpc.AgentServiceStub(server.channel)
    chunk = agent_pb2.UploadLogsRequest(build_id=build_id, job_id=job.job_id, data=b"x")
    code, _ = await refusal(stub.UploadLogs(_each([chunk]), timeout=WAIT))
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert await read(server, job.job_token, build_id, job.job_id) == b""


async def test_a_finished_jobs_token_uploads_only_its_logs_tail_and_only_for_a_while(
    tmp_path: Path,
) -> None:
    # The agent reports a stop as soon as the processes are gone and sends the log's
    # last bytes after it: the token uploads (only that: GetBuild is refused at once)
    # for LOG_TAIL_SECONDS after the job's end, until the log is complete.
    shift = [0.0]
    clocks = Clocks(wall=lambda: time.time() + shift[0])
    async with secure_server(tmp_path, clocks=clocks) as server:
        build_id, agent, [job] = await assigned(server)
        token = job.job_token
        await upload(server, token, build_id, job.job_id, b"done\n")
        await finish(server, agent, build_id, job.job_id)
        request = build_control_pb2.GetBuildRequest(build_id=build_id)
        code, details = await refusal(server.stub.GetBuild(request, metadata=bearer(token)))
        assert code == grpc.StatusCode.UNAUTHENTICATED and "finished" in details
        assert (await upload(server, token, build_id, job.job_id, b"tail\n", 5)).stored_size == 10
        # Later than the tail: refused, and the log is as it was.
        shift[0] = LOG_TAIL_SECONDS + 1
        code, details = await refusal(upload(server, token, build_id, job.job_id, b"late", 10))
        assert code == grpc.StatusCode.UNAUTHENTICATED and "finished" in details
        assert await read(server, server.tokens["victor"], build_id, job.job_id) == b"done\ntail\n"


async def test_a_complete_logs_tail_takes_no_more_bytes(server: SecureServer) -> None:
    build_id, agent, [job] = await assigned(server)
    token = job.job_token
    await upload(server, token, build_id, job.job_id, b"done\n")
    await finish(server, agent, build_id, job.job_id)
    stub = agent_pb2_grpc.AgentServiceStub(server.channel)
    final = agent_pb2.UploadLogsRequest(build_id=build_id, job_id=job.job_id, offset=5, final=True)
    assert (await stub.UploadLogs(_each([final]), metadata=bearer(token))).stored_size == 5
    code, details = await refusal(upload(server, token, build_id, job.job_id, b"more", 5))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "complete" in details
    assert await read(server, server.tokens["victor"], build_id, job.job_id) == b"done\n"
