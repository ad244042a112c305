"""AgentService.Connect: one bidirectional stream per agent.

The stream's first message must be Hello. A writer task sends what the session's
outbox holds (assignments, stops, drain); the handler reads the agent's reports and
hands them to the control. An end of stream without Goodbye is a disconnect."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import grpc

from buildcontrol.v1 import agent_pb2, agent_pb2_grpc
from buildcontrol_server.actors.control import BuildControl
from buildcontrol_server.agents.hub import AgentSession
from buildcontrol_server.config import Settings
from buildcontrol_server.domain.errors import FailedPrecondition, InvalidArgument
from buildcontrol_server.domain.events import AgentHello
from buildcontrol_server.rpc import convert
from buildcontrol_server.rpc.errors import abort_with

log = logging.getLogger(__name__)

HELLO_TIMEOUT_SECONDS = 5.0


class AgentServicer(agent_pb2_grpc.AgentServiceServicer):
    def __init__(self, control: BuildControl, settings: Settings) -> None:
        self._control = control
        self._settings = settings

    # grpc.aio accepts a coroutine that writes with context.write for a streaming
    # method; the generated stub only knows iterators.
    async def Connect(  # type: ignore[override]
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
        replaced = asyncio.Event()
        session.on_replaced = replaced.set
        writer = asyncio.create_task(self._write(session, context))
        reader = asyncio.create_task(self._read(session, hello, request_iterator))
        waiter = asyncio.create_task(replaced.wait())
        try:
            await asyncio.wait({reader, waiter}, return_when=asyncio.FIRST_COMPLETED)
            if replaced.is_set():
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
                await context.abort(
                    grpc.StatusCode.ABORTED,
                    f"replaced by a newer stream of agent {session.agent_id}",
                )
            goodbye = reader.result()
        except (asyncio.CancelledError, grpc.aio.AbortError):
            raise
        except Exception as error:
            await abort_with(context, error)
        finally:
            waiter.cancel()
            reader.cancel()
            log.info("agent %s stream ended (session %s)", session.agent_id, session.session_id)
            self._control.agent_disconnected(session)
            await asyncio.gather(writer, reader, waiter, return_exceptions=True)
        log.info("agent %s %s", session.agent_id, "left" if goodbye else "disconnected")

    async def _read(
        self,
        session: AgentSession,
        hello: AgentHello,
        request_iterator: AsyncIterator[agent_pb2.ConnectRequest],
    ) -> bool:
        """Handle the agent's messages; True if it left with a Goodbye."""
        await self._control.agent_connected(session, hello)
        async for message in request_iterator:
            kind = message.WhichOneof("event")
            if kind == "goodbye":
                return True
            if kind == "hello":
                raise FailedPrecondition("hello: only the first message may be a hello")
            report = convert.report(message)
            if report is not None:
                await self._control.agent_report(session.agent_id, report)
        return False

    async def _open(
        self,
        request_iterator: AsyncIterator[agent_pb2.ConnectRequest],
        context: grpc.aio.ServicerContext,
    ) -> tuple[AgentSession, AgentHello] | None:
        try:
            first = await asyncio.wait_for(anext(request_iterator), HELLO_TIMEOUT_SECONDS)
        except StopAsyncIteration:
            return None
        except TimeoutError:
            raise FailedPrecondition(
                f"hello: the first message must arrive within {HELLO_TIMEOUT_SECONDS:g} s"
            ) from None
        if first.WhichOneof("event") != "hello":
            raise InvalidArgument("hello", "the first message of a stream must be a hello")
        hello = convert.hello(first.hello)
        session = AgentSession(hello.agent_id, hello.labels, hello.capacity)
        await context.write(convert.welcome(session.session_id, self._settings.heartbeat_interval))
        log.info("agent %s connected (session %s)", session.agent_id, session.session_id)
        return session, hello

    async def _write(self, session: AgentSession, context: grpc.aio.ServicerContext) -> None:
        while (command := await session.outbox.get()) is not None:
            await context.write(convert.to_agent(command))
