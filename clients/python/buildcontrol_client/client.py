"""Typed async client of buildcontrol.v1.BuildControl over grpc.aio.

    async with BuildControlClient("127.0.0.1:50051") as client:
        build = await client.submit(load_pipeline_file("hello.yaml"))
        finished = await client.cancel_and_wait(build.build_id, reason="not needed")

Every failed call raises a BuildControlError subclass (see errors.py). Streams are async
generators: wrap them in `contextlib.aclosing(...)` when you may stop reading early, so the
call is cancelled at once instead of when the generator is garbage-collected.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from types import TracebackType
from typing import Any

import grpc
from buildcontrol_proto.v1 import (
    build_control_pb2,
    build_control_pb2_grpc,
    build_pb2,
    housekeeping_pb2,
    housekeeping_pb2_grpc,
)

from buildcontrol_client import request_builders as requests
from buildcontrol_client.client_base import DEFAULT_TIMEOUT_SECONDS, ClientBase
from buildcontrol_client.credentials import open_channel
from buildcontrol_client.errors import StreamEndedEarly, translated_rpc_errors
from buildcontrol_client.load_balancing import retrying_unavailable
from buildcontrol_client.request_builders import PipelineSpec

__all__ = ["DEFAULT_TIMEOUT_SECONDS", "BuildControlClient"]


class BuildControlClient(ClientBase):
    """One channel to a server. Use as `async with`, or call `close()` when done.
    Arguments: ClientBase's (target, timeout, channel_options, token, tls)."""

    # The channel binds to the running event loop, so it is made on first use rather
    # than in the constructor (a client may be made before asyncio.run starts the loop).
    _channel: grpc.aio.Channel | None = None
    _stub: Any = None

    async def __aenter__(self) -> BuildControlClient:
        self._connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._channel is not None:
            channel, self._channel, self._stub = self._channel, None, None
            await channel.close()

    async def submit(self, spec: PipelineSpec, request_id: str = "") -> build_pb2.Build:
        """Queue a build from a SubmitBuildRequest or a pipeline document (a dict).
        `request_id`: an idempotency key; a retry with the same one returns the build
        the first attempt made instead of making another."""
        request = requests.submit_request(spec, request_id)
        stub = self._connect()
        with translated_rpc_errors():
            # With its key a submit may run twice (it makes one build): UNAVAILABLE is
            # retried, on the next server when the target names several.
            response = await retrying_unavailable(
                lambda: stub.SubmitBuild(request, **self._unary), retry=bool(request.request_id)
            )
        build: build_pb2.Build = response.build
        return build

    async def get(self, build_id: str) -> build_pb2.Build:
        request = requests.get_request(build_id)
        with translated_rpc_errors():
            response = await self._connect().GetBuild(request, **self._unary)
        build: build_pb2.Build = response.build
        return build

    async def list(
        self, page_size: int = 0, page_token: str = "", pipeline: str = ""
    ) -> tuple[builtins.list[build_pb2.Build], str]:
        """One page of builds, newest first, and the token of the next page ("" at the end)."""
        request = requests.list_request(page_size, page_token, pipeline)
        with translated_rpc_errors():
            response = await self._connect().ListBuilds(request, **self._unary)
        return builtins.list(response.builds), str(response.next_page_token)

    async def watch(
        self, build_id: str
    ) -> AsyncGenerator[build_control_pb2.WatchBuildResponse, None]:
        """A snapshot, then every change, until the build is terminal."""
        request = requests.watch_request(build_id)
        call = self._connect().WatchBuild(request, **self._stream)
        try:
            with translated_rpc_errors():
                async for response in call:
                    yield response
        finally:
            call.cancel()

    async def cancel(
        self,
        build_id: str,
        reason: str = "",
        force: bool = False,
        grace_period_seconds: float | None = None,
        requested_by: str = "",
    ) -> AsyncGenerator[build_control_pb2.CancelResponse, None]:
        """Accepted first, one message per job as it stops, CancelFinished last.

        Closing the stream early does not abort the cancel: it only stops the reporting.
        """
        request = requests.cancel_request(
            build_id, reason, force, grace_period_seconds, requested_by
        )
        call = self._connect().Cancel(request, **self._stream)
        try:
            with translated_rpc_errors():
                async for response in call:
                    yield response
        finally:
            call.cancel()

    async def cancel_and_wait(
        self,
        build_id: str,
        reason: str = "",
        force: bool = False,
        grace_period_seconds: float | None = None,
        requested_by: str = "",
    ) -> build_control_pb2.CancelFinished:
        """Cancel and return the terminal message once every job has stopped."""
        events = self.cancel(build_id, reason, force, grace_period_seconds, requested_by)
        async with aclosing(events):
            async for event in events:
                if event.HasField("finished"):
                    return event.finished
        raise StreamEndedEarly(f"the Cancel stream of {build_id} ended without CancelFinished")

    async def cancel_builds(
        self,
        build_ids: Sequence[str] = (),
        *,
        pipeline: str = "",
        concurrency_group: str = "",
        reason: str = "",
        force: bool = False,
        grace_period_seconds: float | None = None,
        requested_by: str = "",
    ) -> AsyncGenerator[build_control_pb2.CancelBuildsResponse, None]:
        """Cancel every live build chosen by ids, a pipeline or a concurrency group (give
        exactly one): a CancelFinished per build as it becomes terminal, then the summary.

        As with `cancel`, closing the stream early does not abort the cancels.
        """
        request = requests.cancel_builds_request(
            build_ids,
            pipeline,
            concurrency_group,
            reason,
            force,
            grace_period_seconds,
            requested_by,
        )
        call = self._connect().CancelBuilds(request, **self._stream)
        try:
            with translated_rpc_errors():
                async for response in call:
                    for one in requests.one_build_each(response):
                        yield one
        finally:
            call.cancel()

    async def list_agents(self) -> builtins.list[build_control_pb2.Agent]:
        """Connected agents, and disconnected ones whose jobs still wait for them."""
        request = requests.list_agents_request()
        with translated_rpc_errors():
            response = await self._connect().ListAgents(request, **self._unary)
        return builtins.list(response.agents)

    async def list_webhook_deliveries(
        self, limit: int = 0
    ) -> builtins.list[build_control_pb2.WebhookDelivery]:
        """The newest webhook deliveries with their state per endpoint (admins only)."""
        request = requests.list_webhook_deliveries_request(limit)
        with translated_rpc_errors():
            response = await self._connect().ListWebhookDeliveries(request, **self._unary)
        return builtins.list(response.deliveries)

    async def redeliver_webhook(self, delivery_id: str) -> builtins.list[str]:
        """Queue one delivery again for every endpoint (admins only); their labels."""
        request = requests.redeliver_webhook_request(delivery_id)
        with translated_rpc_errors():
            response = await self._connect().RedeliverWebhook(request, **self._unary)
        return builtins.list(response.endpoints)

    async def get_job_log(
        self, build_id: str, job_id: str, offset: int = 0, limit: int = 0
    ) -> build_control_pb2.GetJobLogResponse:
        """Up to `limit` bytes (0: the server's page, 1 MiB) of a job's log from `offset`."""
        request = requests.get_job_log_request(build_id, job_id, offset, limit)
        with translated_rpc_errors():
            response: build_control_pb2.GetJobLogResponse = await self._connect().GetJobLog(
                request, **self._unary
            )
        return response

    async def follow_job_log(
        self, build_id: str, job_id: str, from_offset: int = 0
    ) -> AsyncGenerator[build_control_pb2.FollowJobLogResponse, None]:
        """A job's log from `from_offset`, as it grows, until the job is terminal."""
        request = requests.follow_job_log_request(build_id, job_id, from_offset)
        call = self._connect().FollowJobLog(request, **self._stream)
        try:
            with translated_rpc_errors():
                async for response in call:
                    yield response
        finally:
            call.cancel()

    async def purge(
        self, before: float | None = None, *, dry_run: bool = False
    ) -> housekeeping_pb2.PurgeResponse:
        """Delete (or with `dry_run` count) what is past the server's retention policy,
        or what finished before `before` (epoch seconds). Admins only. No deadline: a
        purge of a long history takes minutes (closing the client stops it)."""
        request = requests.purge_request(before, dry_run)
        self._connect()
        stub = housekeeping_pb2_grpc.HousekeepingStub(self._channel)
        with translated_rpc_errors():
            response: housekeeping_pb2.PurgeResponse = await stub.Purge(request, **self._stream)
        return response

    def _connect(self) -> Any:
        if self._stub is None:
            self._channel = open_channel(
                self.target, self._channel_options, self._tls, self._sends_token
            )
            # The generated stub has no annotations; the methods above give the types.
            self._stub = build_control_pb2_grpc.BuildControlStub(self._channel)
        return self._stub
