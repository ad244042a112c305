"""An agent process that speaks the real protocol, takes jobs, and ignores every
StopJob (a broken or malicious agent). Run: python -m tests.support.ignoring_agent
TARGET AGENT_ID LABEL=VALUE. Prints "took JOB_ID" and "ignored stop JOB_ID" lines."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator

import grpc
from buildcontrol_proto.v1 import agent_pb2, agent_pb2_grpc


async def main(target: str, agent_id: str, label: str) -> None:
    key, value = label.split("=", 1)
    outgoing: asyncio.Queue[agent_pb2.ConnectRequest] = asyncio.Queue()
    outgoing.put_nowait(
        agent_pb2.ConnectRequest(
            hello=agent_pb2.Hello(agent_id=agent_id, labels={key: value}, capacity=1)
        )
    )

    async def requests() -> AsyncIterator[agent_pb2.ConnectRequest]:
        while True:
            yield await outgoing.get()

    async with grpc.aio.insecure_channel(target) as channel:
        async for message in agent_pb2_grpc.AgentServiceStub(channel).Connect(requests()):
            kind = message.WhichOneof("event")
            if kind == "assign_job":
                job = message.assign_job
                outgoing.put_nowait(
                    agent_pb2.ConnectRequest(
                        job_accepted=agent_pb2.JobAccepted(build_id=job.build_id, job_id=job.job_id)
                    )
                )
                print(f"took {job.job_id}", flush=True)
            elif kind == "stop_job":
                print(f"ignored stop {message.stop_job.job_id}", flush=True)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
