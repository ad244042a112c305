"""A Cancel call followed to its end: when it was ACCEPTED and when it FINISHED, as
this client saw them (monotonic clock), or how it failed."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import grpc
from buildcontrol_proto.v1 import build_control_pb2, build_control_pb2_grpc, build_pb2
from google.protobuf.duration_pb2 import Duration


@dataclass
class CancelWatch:
    build_id: str
    force: bool
    grace: float
    asked_at: float
    accepted_at: float | None = None
    finished_at: float | None = None
    final_status: int = build_pb2.BUILD_STATUS_UNSPECIFIED
    error: grpc.StatusCode | None = None
    details: str = ""
    # The server was SIGKILLed while this stream was open: its end proves nothing.
    cut_by_kill: bool = False
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    def start(self, stub: build_control_pb2_grpc.BuildControlStub, reason: str) -> None:
        grace = Duration()
        grace.FromNanoseconds(int(self.grace * 1e9))
        request = build_control_pb2.CancelRequest(
            build_id=self.build_id, reason=reason, force=self.force, grace_period=grace
        )
        self.task = asyncio.create_task(self._follow(stub, request))

    async def _follow(
        self,
        stub: build_control_pb2_grpc.BuildControlStub,
        request: build_control_pb2.CancelRequest,
    ) -> None:
        loop = asyncio.get_running_loop()
        try:
            async for message in stub.Cancel(request):
                kind = message.WhichOneof("event")
                if kind == "accepted" and self.accepted_at is None:
                    self.accepted_at = loop.time()
                elif kind == "finished":
                    self.finished_at = loop.time()
                    self.final_status = message.finished.status
        except grpc.aio.AioRpcError as error:
            self.error, self.details = error.code(), error.details() or ""

    @property
    def done(self) -> bool:
        return self.task is not None and self.task.done()

    async def stop_following(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
