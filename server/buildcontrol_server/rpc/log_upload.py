"""AgentService.UploadLogs and BuildControl's GetJobLog / FollowJobLog: proto in and
out, the caller's job scope, errors to statuses. The work is in logs/service.py."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
from buildcontrol_proto.v1 import agent_pb2, build_control_pb2

from buildcontrol_server.domain.errors import InvalidArgument
from buildcontrol_server.domain.model import Build
from buildcontrol_server.logs.service import Chunk, JobLogs, job_not_found
from buildcontrol_server.rpc.errors import abort_with
from buildcontrol_server.security import caller

# The largest chunk an agent may send in one message.
MAX_CHUNK_BYTES = 1024 * 1024

Render = Callable[[Build], str | None]


def job_state_of(
    get: Callable[[str, Render], Awaitable[str | None]],
) -> Callable[[str, str], Awaitable[str | None]]:
    """The JobLogs' view of a job: None while it is not terminal, else its status;
    NotFound if the build (or the job in it) does not exist. `get` is the control's."""

    async def job_state(build_id: str, job_id: str) -> str | None:
        def render(build: Build) -> str | None:
            job = build.job(job_id)
            if job is None:
                raise job_not_found(build_id, job_id)
            return job.status.value if job.terminal else None

        return await get(build_id, render)

    return job_state


def scope() -> tuple[str, str] | None:
    """The one job the caller's credential is limited to (a job token), or None."""
    job = caller.current().principal.job
    return None if job is None else (job.build_id, job.job_id)


async def _chunks(
    requests: AsyncIterator[agent_pb2.UploadLogsRequest],
) -> AsyncIterator[Chunk]:
    async for request in requests:
        if len(request.data) > MAX_CHUNK_BYTES:
            raise InvalidArgument("data", f"at most {MAX_CHUNK_BYTES} bytes per message")
        yield Chunk(request.build_id, request.job_id, request.offset, request.data, request.final)


async def upload(
    logs: JobLogs | None,
    requests: AsyncIterator[agent_pb2.UploadLogsRequest],
    context: grpc.aio.ServicerContext,
) -> agent_pb2.UploadLogsResponse:
    if logs is None:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "this server stores no logs")
        raise AssertionError("unreachable")
    try:
        size = await logs.upload(_chunks(requests), scope())
    except grpc.aio.AbortError:
        raise
    except Exception as error:  # every failure becomes its status (rpc/errors.py)
        await abort_with(context, error)
        raise
    return agent_pb2.UploadLogsResponse(stored_size=size)


async def get(
    logs: JobLogs, request: build_control_pb2.GetJobLogRequest
) -> build_control_pb2.GetJobLogResponse:
    piece = await logs.read(
        request.build_id, request.job_id, request.offset, request.limit, scope()
    )
    return build_control_pb2.GetJobLogResponse(
        data=piece.data, offset=piece.offset, size=piece.size, complete=piece.complete
    )


async def follow(
    logs: JobLogs, request: build_control_pb2.FollowJobLogRequest
) -> AsyncIterator[build_control_pb2.FollowJobLogResponse]:
    async for piece in logs.follow(request.build_id, request.job_id, request.from_offset, scope()):
        yield build_control_pb2.FollowJobLogResponse(data=piece.data, offset=piece.offset)
