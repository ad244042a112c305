"""AgentService.Connect: one bidirectional stream per agent.

The stream's first message must be Hello. A writer task sends what the session's
outbox holds (assignments, stops, acknowledgements of results, drain); the handler
reads the agent's reports and hands them to the control. An end of stream without
Goodbye is a disconnect. A draining server refuses new streams (UNAVAILABLE)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
from buildcontrol_proto.v1 import agent_pb2, agent_pb2_grpc

from buildcontrol_server import metrics
from buildcontrol_server.actors.control import BuildControl
from buildcontrol_server.agents.hub import AgentSession
from buildcontrol_server.config import Settings
from buildcontrol_server.domain import submission
from buildcontrol_server.domain.agent_commands import AssignCommand, StopCommand
from buildcontrol_server.domain.errors import (
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    ResourceExhausted,
    StreamReplaced,
    Unavailable,
)
from buildcontrol_server.domain.events import AgentHello
from buildcontrol_server.logs.service import JobLogs
from buildcontrol_server.observability import cancel_phases
from buildcontrol_server.rpc import agent_convert, log_upload
from buildcontrol_server.rpc.errors import abort_with
from buildcontrol_server.security import caller, fair_limits
from buildcontrol_server.security.fair_limits import HeldCounts
from buildcontrol_server.security.job_tokens import JobTokens

log = logging.getLogger(__name__)

REPORTS_IN_FLIGHT = 256
# Stops queued together for an agent that takes batches (a mass cancel's commit queues
# one per job) leave as one StopJobs of at most this many. A stream's writes go one
# at a time, each after the one before is done: 50 StopJobs written one by one took
# ~40 ms from the first to the last on a busy server, one loop pass or more each.
STOP_BATCH_MAX = 500


class AgentServicer(agent_pb2_grpc.AgentServiceServicer):
    def __init__(
        self,
        control: BuildControl,
        settings: Settings,
        job_tokens: JobTokens | None = None,
        logs: JobLogs | None = None,
    ) -> None:
        self._control = control
        # Where UploadLogs streams go (None: the method answers UNIMPLEMENTED).
        self._logs = logs
        self._settings = settings
        # Mints each AssignJob's job token; None with authentication off.
        self._job_tokens = job_tokens
        # Streams open now, with or without a Hello yet (bounded: max_agent_streams).
        self._open_streams = 0
        total = fair_limits.limit(fair_limits.AGENT_STREAMS, settings.max_agent_streams)
        total.publish()
        metrics.LIMIT_IN_USE.labels(limit=total.name).set_function(lambda: self._open_streams)
        # The same per agent token, so one token cannot take every slot.
        self._per_token = HeldCounts(
            fair_limits.limit(
                fair_limits.AGENT_STREAMS_PER_TOKEN, settings.max_agent_streams_per_token
            )
        )

    # grpc.aio accepts a coroutine that writes with context.write for a streaming
    # method; the generated stub only knows iterators.
    async def Connect(  # type: ignore[override]
        self,
        request_iterator: AsyncIterator[agent_pb2.ConnectRequest],
        context: grpc.aio.ServicerContext,
    ) -> None:
        # A flood of streams (real agents or not) must not hold unbounded memory and
        # tasks: past the bound new ones are refused until others end.
        limit = self._settings.max_agent_streams
        if self._open_streams >= limit:
            metrics.LIMIT_REFUSED.labels(limit=fair_limits.AGENT_STREAMS[0]).inc()
            await abort_with(
                context,
                ResourceExhausted(
                    f"agent streams: {limit} are open, the most allowed (--max-agent-streams)"
                ),
            )
            return
        if self._control.draining:
            # Its Drain would follow at once: come back to the next server instead.
            await abort_with(context, Unavailable("the server is shutting down; reconnect later"))
            return
        # With authentication off there are no agent tokens: the global bound only.
        token = caller.current().submitter
        try:
            if token is not None:
                self._per_token.acquire(token)
        except ResourceExhausted as refused:
            await abort_with(context, refused)
            return
        self._open_streams += 1
        try:
            await self._serve(request_iterator, context)
        finally:
            self._open_streams -= 1
            if token is not None:
                self._per_token.release(token)

    async def _serve(
        self,
        request_iterator: AsyncIterator[agent_pb2.ConnectRequest],
        context: grpc.aio.ServicerContext,
    ) -> None:
        try:
            opened = await self._open(request_iterator, context)
        except (asyncio.CancelledError, grpc.aio.AbortError):
            raise
        except Exception as error:
            await abort_with(context, error)
            return
        if opened is None:
            return
        session, hello = opened
        # Set when a report the server refused must end the stream early.
        ended: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()
        # Done when a newer stream of the same agent process replaced this one.
        replaced = session.replaced()
        writer = asyncio.create_task(self._write(session, context))
        reader = asyncio.create_task(self._read(session, hello, request_iterator, ended))
        try:
            either: set[asyncio.Future[Any]] = {reader, ended, replaced}
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
            if ended.done() or replaced.done():
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
                refused = ended.result() if ended.done() else None
                if refused is not None:
                    raise refused
                raise StreamReplaced(f"replaced by a newer stream of agent {session.agent_id}")
            goodbye = reader.result()
        except (asyncio.CancelledError, grpc.aio.AbortError):
            raise
        except Exception as error:
            await abort_with(context, error)
        finally:
            reader.cancel()
            self._control.agent_disconnected(session)
            await asyncio.gather(writer, reader, return_exceptions=True)
        log.info("agent %s %s", session.agent_id, "left" if goodbye else "disconnected")

    async def _read(
        self,
        session: AgentSession,
        hello: AgentHello,
        request_iterator: AsyncIterator[agent_pb2.ConnectRequest],
        ended: asyncio.Future[BaseException | None],
    ) -> bool:
        """Hand the agent's messages to the control; True if it left with a Goodbye.

        Reports are queued at their actors without waiting for each commit (so one
        actor can apply many in one commit), at most REPORTS_IN_FLIGHT at a time."""
        await self._control.agent_connected(session, hello)
        in_flight = asyncio.Semaphore(REPORTS_IN_FLIGHT)

        def settled(applied: asyncio.Future[Any]) -> None:
            in_flight.release()
            error = None if applied.cancelled() else applied.exception()
            if isinstance(error, DomainError) and not ended.done():
                ended.set_result(error)

        async for message in request_iterator:
            kind = message.WhichOneof("event")
            if kind == "goodbye":
                return True
            if kind == "hello":
                raise FailedPrecondition("hello: only the first message may be a hello")
            reports = agent_convert.reports(message)
            if reports:
                caller.current().check_still_valid()  # a revoked agent's reports count no more
            for report in reports:
                await in_flight.acquire()
                applied = self._control.agent_report(session, report)
                if applied is None:
                    in_flight.release()
                    await self._control.reports.settle_not_live(session, report)
                else:
                    applied.add_done_callback(settled)
        return False

    async def _open(
        self,
        request_iterator: AsyncIterator[agent_pb2.ConnectRequest],
        context: grpc.aio.ServicerContext,
    ) -> tuple[AgentSession, AgentHello] | None:
        try:
            first = await asyncio.wait_for(anext(request_iterator), self._settings.hello_timeout)
        except StopAsyncIteration:
            return None
        except TimeoutError:
            raise FailedPrecondition(
                f"hello: the first message must arrive within {self._settings.hello_timeout:g} s"
            ) from None
        if first.WhichOneof("event") != "hello":
            raise InvalidArgument("hello", "the first message of a stream must be a hello")
        hello = agent_convert.hello(first.hello)
        # Before any session exists: a refused Hello changes nothing.
        caller.current().check_agent_id(hello.agent_id)
        submission.check_hello(hello.agent_id, hello.labels, self._settings.limits)
        fair_limits.check_hello_claims(
            hello.agent_id,
            hello.capacity,
            len(hello.running),
            self._settings.hello_running_jobs_factor,
            self._settings.max_agent_capacity,
        )
        session = AgentSession(
            hello.agent_id,
            hello.labels,
            hello.capacity,
            hello.version,
            hello.instance_id,
            stop_batches=hello.stop_batches,
        )
        # Before the Welcome: another process's Hello under a live id changes nothing.
        self._control.check_agent_instance(session)
        await context.write(
            agent_convert.welcome(
                session.session_id, self._settings.heartbeat_interval, session.stop_batches
            )
        )
        log.info("agent %s connected (session %s)", session.agent_id, session.session_id)
        return session, hello

    async def _write(self, session: AgentSession, context: grpc.aio.ServicerContext) -> None:
        while (command := await session.outbox.get()) is not None:
            if isinstance(command, StopCommand) and session.stop_batches:
                stops = [command, *session.outbox.take_leading(StopCommand, STOP_BATCH_MAX - 1)]
                await context.write(agent_convert.stops_to_agent(stops))
                if len(stops) > 1:
                    metrics.STOPS_BATCHED.inc(len(stops))
                for stop in stops:
                    cancel_phases.stop_written(stop)
                continue
            message = agent_convert.to_agent(command)
            if isinstance(command, AssignCommand):
                caller.current().check_still_valid()  # no job for a revoked agent
                message.assign_job.log_limit_bytes = self._settings.log_limit_bytes
                if self._job_tokens is not None:
                    message.assign_job.job_token = self._job_tokens.mint(
                        command.build_id, command.job_id
                    )
            await context.write(message)
            cancel_phases.stop_written(command)  # measures delivery of a stop, logs it

    async def UploadLogs(
        self,
        request_iterator: AsyncIterator[agent_pb2.UploadLogsRequest],
        context: grpc.aio.ServicerContext,
    ) -> agent_pb2.UploadLogsResponse:
        return await log_upload.upload(self._logs, request_iterator, context)
