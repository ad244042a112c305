"""The floor of the memory measure: a bare grpc.aio server whose AgentService.Connect
only answers Hello with Welcome and then reads the stream until it ends (no session,
no tasks, no interceptors), with the server's own channel options. What one idle
agent stream costs here is what grpc.aio itself costs (connection, HTTP/2 transport,
call); the rest of buildcontrol's number is ours.

Prints `listening on 127.0.0.1:PORT` once serving; SIGTERM stops it."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator

import grpc
from buildcontrol_proto.v1 import agent_pb2, agent_pb2_grpc
from buildcontrol_server.app import GRPC_OPTIONS


class BareAgentService(agent_pb2_grpc.AgentServiceServicer):
    async def Connect(  # type: ignore[override]
        self,
        request_iterator: AsyncIterator[agent_pb2.ConnectRequest],
        context: grpc.aio.ServicerContext,
    ) -> None:
        await anext(request_iterator)  # the Hello
        welcome = agent_pb2.Welcome(session_id="bare")
        await context.write(agent_pb2.ConnectResponse(welcome=welcome))
        async for _ in request_iterator:
            pass


async def main() -> None:
    server = grpc.aio.server(options=GRPC_OPTIONS)
    agent_pb2_grpc.add_AgentServiceServicer_to_server(BareAgentService(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    stopping = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
    print(f"listening on 127.0.0.1:{port}", flush=True)
    await stopping.wait()
    await server.stop(0)


if __name__ == "__main__":
    asyncio.run(main())
