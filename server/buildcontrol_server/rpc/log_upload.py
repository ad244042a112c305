"""AgentService.UploadLogs and BuildControl's GetJobLog / FollowJobLog: proto in and
out, the caller's job scope, errors to statuses. The work is in logs/service.py."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

import grpc
from buildcontrol_proto.v1 import agent_pb2, build_control_pb2

from buildcontrol_server.domain.errors import InvalidArgument
from buildcontrol_server.domain.model import Build
from buildcontrol_server.logs.service import Chunk, JobLogs, job_not_found
from buildcontrol_server.rpc.errors import abort_with
from buildcontrol_server.security import caller

# The largest chunk an agent may send in one message.
MAX_CHUNK_BYTES = 1024 * 1024

T = TypeVar("T")


class GetBuild(Protocol):
    """BuildControl.get: `render` applied to the build (its actor's, else the store's)."""

    def __call__(self, build_id: str, render: Callable[[Build], T]) -> Awaitable[T]: ...


def job_state_of(get: GetBuild) -> Callable[[str, str], Awaitable[str | None]]:
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


def job_end_of(get: GetBuild) -> Callable[[str, str], Awaitable[float | None]]:
    """When a job ended (wall clock), None while it has not; NotFound as job_state_of."""

    async def job_end(build_id: str, job_id: str) -> float | None:
        def render(build: Build) -> float | None:
            job = build.job(job_id)
            if job is None:
                raise job_not_found(build_id, job_id)
            return (job.finished_at or build.finished_at or 0.0) if job.terminal else None

        return await get(build_id, render)

    return job_end


def ran_on_agent_of(get: GetBuild) -> Callable[[str, str], Awaitable[bool]]:
    """Whether a job was ever given to an agent; NotFound as job_state_of."""

    async def ran_on_agent(build_id: str, job_id: str) -> bool:
        def render(build: Build) -> bool:
            job = build.job(job_id)
            if job is None:
                raise job_not_found(build_id, job_id)
            return job.agent_id is not None

        return await get(build_id, render)

    return ran_on_agent


@dataclass(frozen=True)
class JobViews:
    """What the log service and the job-token checks ask of a job, through the
    control's `get` (the build's actor here, else the store)."""

    state: Callable[[str, str], Awaitable[str | None]]
    end: Callable[[str, str], Awaitable[float | None]]
    ran: Callable[[str, str], Awaitable[bool]]

    @classmethod
    def of(cls, get: GetBuild) -> JobViews:
        return cls(job_state_of(get), job_end_of(get), ran_on_agent_of(get))


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
