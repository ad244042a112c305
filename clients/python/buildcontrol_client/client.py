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
from buildcontrol.v1 import build_control_pb2, build_control_pb2_grpc, build_pb2

from buildcontrol_client.auth import auth_metadata
from buildcontrol_client.credentials import TlsOptions, open_channel
from buildcontrol_client.errors import StreamEndedEarly, translated_rpc_errors
from buildcontrol_client.message_limits import with_receive_limit
from buildcontrol_client.request_builders import (
    PipelineSpec,
    cancel_builds_request,
    cancel_request,
    submit_request,
)

DEFAULT_TIMEOUT_SECONDS = 30.0


class BuildControlClient:
    """One channel to a server. Use as `async with`, or call `close()` when done."""

    def __init__(
        self,
        target: str,
        *,
        timeout: float | None = DEFAULT_TIMEOUT_SECONDS,
        channel_options: Sequence[tuple[str, Any]] = (),
        token: str | None = None,
        tls: TlsOptions | None = None,
    ) -> None:
        """`timeout` bounds each unary call; streams run until they end or are closed.
        `token` is sent as `authorization: Bearer TOKEN` with every call; `tls` secures
        the channel (credentials.py)."""
        self.target = target
        self._timeout = timeout
        self._metadata = auth_metadata(token)
        self._tls = tls
        # Builds at the server's limits are larger than gRPC's default 4 MiB.
        self._channel_options = with_receive_limit(channel_options)
        # The channel binds to the running event loop, so it is made on first use rather
        # than here (a client may be constructed before asyncio.run starts the loop).
        self._channel: grpc.aio.Channel | None = None
        self._stub: Any = None

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
        request = submit_request(spec, request_id)
        with translated_rpc_errors():
            response = await self._connect().SubmitBuild(
                request, timeout=self._timeout, metadata=self._metadata
            )
        build: build_pb2.Build = response.build
        return build

    async def get(self, build_id: str) -> build_pb2.Build:
        request = build_control_pb2.GetBuildRequest(build_id=build_id)
        with translated_rpc_errors():
            response = await self._connect().GetBuild(
                request, timeout=self._timeout, metadata=self._metadata
            )
        build: build_pb2.Build = response.build
        return build

    async def list(
        self, page_size: int = 0, page_token: str = "", pipeline: str = ""
    ) -> tuple[builtins.list[build_pb2.Build], str]:
        """One page of builds, newest first, and the token of the next page ("" at the end)."""
        request = build_control_pb2.ListBuildsRequest(
            page_size=page_size, page_token=page_token, pipeline=pipeline
        )
        with translated_rpc_errors():
            response = await self._connect().ListBuilds(
                request, timeout=self._timeout, metadata=self._metadata
            )
        return builtins.list(response.builds), str(response.next_page_token)

    async def watch(
        self, build_id: str
    ) -> AsyncGenerator[build_control_pb2.WatchBuildResponse, None]:
        """A snapshot, then every change, until the build is terminal."""
        request = build_control_pb2.WatchBuildRequest(build_id=build_id)
        call = self._connect().WatchBuild(request, metadata=self._metadata)
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
        request = cancel_request(build_id, reason, force, grace_period_seconds, requested_by)
        call = self._connect().Cancel(request, metadata=self._metadata)
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
        request = cancel_builds_request(
            build_ids,
            pipeline,
            concurrency_group,
            reason,
            force,
            grace_period_seconds,
            requested_by,
        )
        call = self._connect().CancelBuilds(request, metadata=self._metadata)
        try:
            with translated_rpc_errors():
                async for response in call:
                    yield response
        finally:
            call.cancel()

    async def list_agents(self) -> builtins.list[build_control_pb2.Agent]:
        """Connected agents, and disconnected ones whose jobs still wait for them."""
        request = build_control_pb2.ListAgentsRequest()
        with translated_rpc_errors():
            response = await self._connect().ListAgents(
                request, timeout=self._timeout, metadata=self._metadata
            )
        return builtins.list(response.agents)

    async def list_webhook_deliveries(
        self, limit: int = 0
    ) -> builtins.list[build_control_pb2.WebhookDelivery]:
        """The newest webhook deliveries with their state per endpoint (admins only)."""
        request = build_control_pb2.ListWebhookDeliveriesRequest(limit=limit)
        with translated_rpc_errors():
            response = await self._connect().ListWebhookDeliveries(
                request, timeout=self._timeout, metadata=self._metadata
            )
        return builtins.list(response.deliveries)

    async def redeliver_webhook(self, delivery_id: str) -> builtins.list[str]:
        """Queue one delivery again for every endpoint (admins only); their labels."""
        request = build_control_pb2.RedeliverWebhookRequest(delivery_id=delivery_id)
        with translated_rpc_errors():
            response = await self._connect().RedeliverWebhook(
                request, timeout=self._timeout, metadata=self._metadata
            )
        return builtins.list(response.endpoints)

    async def get_job_log(
        self, build_id: str, job_id: str, offset: int = 0, limit: int = 0
    ) -> build_control_pb2.GetJobLogResponse:
        """Up to `limit` bytes (0: the server's page, 1 MiB) of a job's log from `offset`."""
        request = build_control_pb2.GetJobLogRequest(
            build_id=build_id, job_id=job_id, offset=offset, limit=limit
        )
        with translated_rpc_errors():
            response: build_control_pb2.GetJobLogResponse = await self._connect().GetJobLog(
                request, timeout=self._timeout, metadata=self._metadata
            )
        return response

    async def follow_job_log(
        self, build_id: str, job_id: str, from_offset: int = 0
    ) -> AsyncGenerator[build_control_pb2.FollowJobLogResponse, None]:
        """A job's log from `from_offset`, as it grows, until the job is terminal."""
        request = build_control_pb2.FollowJobLogRequest(
            build_id=build_id, job_id=job_id, from_offset=from_offset
        )
        call = self._connect().FollowJobLog(request, metadata=self._metadata)
        try:
            with translated_rpc_errors():
                async for response in call:
                    yield response
        finally:
            call.cancel()

    def _connect(self) -> Any:
        if self._stub is None:
            self._channel = open_channel(
                self.target, self._channel_options, self._tls, sends_token=bool(self._metadata)
            )
            # The generated stub has no annotations; the methods above give the types.
            self._stub = build_control_pb2_grpc.BuildControlStub(self._channel)
        return self._stub
