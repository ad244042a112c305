"""AgentService.UploadLogs and BuildControl's GetJobLog / FollowJobLog: proto in and
out, the caller's job scope, errors to statuses. The work is in logs/service.py."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

import grpc
from buildcontrol_proto.v1 import agent_pb2, build_control_pb2

from buildcontrol_server.domain.errors import InvalidArgument
from buildcontrol_server.domain.model import Build, Job
from buildcontrol_server.logs.service import (
    Chunk,
    JobLogs,
    JobState,
    TailExpected,
    job_not_found,
)
from buildcontrol_server.rpc.errors import abort_with
from buildcontrol_server.security import caller

# The largest chunk an agent may send in one message.
MAX_CHUNK_BYTES = 1024 * 1024

T = TypeVar("T")


class GetBuild(Protocol):
    """BuildControl.get: `render` applied to the build (its actor's, else the store's)."""

    def __call__(self, build_id: str, render: Callable[[Build], T]) -> Awaitable[T]: ...


def _job_view(get: GetBuild, pick: Callable[[Build, Job], T]) -> Callable[[str, str], Awaitable[T]]:
    """`pick(build, job)` of a job, through the control's `get`; NotFound if the build
    (or the job in it) does not exist."""

    async def view(build_id: str, job_id: str) -> T:
        def render(build: Build) -> T:
            job = build.job(job_id)
            if job is None:
                raise job_not_found(build_id, job_id)
            return pick(build, job)

        return await get(build_id, render)

    return view


@dataclass(frozen=True)
class JobViews:
    """What the log service and the job-token checks ask of a job, through the
    control's `get` (the build's actor here, else the store). Each is None while the
    job is not terminal."""

    # Its status.
    state: JobState
    # When it ended (wall clock).
    end: Callable[[str, str], Awaitable[float | None]]
    # Whether it ever reached an agent (a log whose last bytes may still come).
    tail_expected: TailExpected

    @classmethod
    def of(cls, get: GetBuild) -> JobViews:
        def state(build: Build, job: Job) -> str | None:
            return job.status.value if job.terminal else None

        def end(build: Build, job: Job) -> float | None:
            return (job.finished_at or build.finished_at or 0.0) if job.terminal else None

        def tail_expected(build: Build, job: Job) -> bool | None:
            return job.agent_id is not None if job.terminal else None

        return cls(_job_view(get, state), _job_view(get, end), _job_view(get, tail_expected))


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
