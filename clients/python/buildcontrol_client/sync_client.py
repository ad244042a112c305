"""Blocking twin of BuildControlClient for scripts that do not run an event loop.

It uses grpc's own blocking channel rather than driving the async client from a private
loop: no thread or loop juggling, and it can be tested with grpc_testing.
"""

from __future__ import annotations

import builtins
from collections.abc import Generator, Sequence
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
from buildcontrol_client.credentials import TlsOptions, open_blocking_channel
from buildcontrol_client.errors import StreamEndedEarly, translated_rpc_errors
from buildcontrol_client.load_balancing import retrying_unavailable_blocking
from buildcontrol_client.request_builders import PipelineSpec


class SyncBuildControlClient(ClientBase):
    """Same methods as BuildControlClient, blocking. Streams are plain iterators."""

    def __init__(
        self,
        target: str,
        *,
        timeout: float | None = DEFAULT_TIMEOUT_SECONDS,
        channel_options: Sequence[tuple[str, Any]] = (),
        token: str | None = None,
        tls: TlsOptions | None = None,
        channel: grpc.Channel | None = None,
    ) -> None:
        """As BuildControlClient's; `channel` replaces the one made from `target` (tests
        pass a grpc_testing channel)."""
        super().__init__(
            target, timeout=timeout, channel_options=channel_options, token=token, tls=tls
        )
        self._channel = channel or open_blocking_channel(
            target, self._channel_options, tls, self._sends_token
        )
        # The generated stub has no annotations; the methods below give the types.
        self._stub: Any = build_control_pb2_grpc.BuildControlStub(self._channel)

    def __enter__(self) -> SyncBuildControlClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def submit(self, spec: PipelineSpec, request_id: str = "") -> build_pb2.Build:
        request = requests.submit_request(spec, request_id)
        with translated_rpc_errors():
            # As the async client's: a submit with its key is retried on UNAVAILABLE.
            response = retrying_unavailable_blocking(
                lambda: self._stub.SubmitBuild(request, **self._unary),
                retry=bool(request.request_id),
            )
        build: build_pb2.Build = response.build
        return build

    def get(self, build_id: str) -> build_pb2.Build:
        request = requests.get_request(build_id)
        with translated_rpc_errors():
            response = self._stub.GetBuild(request, **self._unary)
        build: build_pb2.Build = response.build
        return build

    def list(
        self, page_size: int = 0, page_token: str = "", pipeline: str = ""
    ) -> tuple[builtins.list[build_pb2.Build], str]:
        request = requests.list_request(page_size, page_token, pipeline)
        with translated_rpc_errors():
            response = self._stub.ListBuilds(request, **self._unary)
        return builtins.list(response.builds), str(response.next_page_token)

    def watch(self, build_id: str) -> Generator[build_control_pb2.WatchBuildResponse, None, None]:
        request = requests.watch_request(build_id)
        call = self._stub.WatchBuild(request, **self._stream)
        try:
            with translated_rpc_errors():
                yield from call
        finally:
            call.cancel()

    def cancel(
        self,
        build_id: str,
        reason: str = "",
        force: bool = False,
        grace_period_seconds: float | None = None,
        requested_by: str = "",
    ) -> Generator[build_control_pb2.CancelResponse, None, None]:
        request = requests.cancel_request(
            build_id, reason, force, grace_period_seconds, requested_by
        )
        call = self._stub.Cancel(request, **self._stream)
        try:
            with translated_rpc_errors():
                yield from call
        finally:
            call.cancel()

    def cancel_and_wait(
        self,
        build_id: str,
        reason: str = "",
        force: bool = False,
        grace_period_seconds: float | None = None,
        requested_by: str = "",
    ) -> build_control_pb2.CancelFinished:
        events = self.cancel(build_id, reason, force, grace_period_seconds, requested_by)
        try:
            for event in events:
                if event.HasField("finished"):
                    return event.finished
        finally:
            events.close()
        raise StreamEndedEarly(f"the Cancel stream of {build_id} ended without CancelFinished")

    def cancel_builds(
        self,
        build_ids: Sequence[str] = (),
        *,
        pipeline: str = "",
        concurrency_group: str = "",
        reason: str = "",
        force: bool = False,
        grace_period_seconds: float | None = None,
        requested_by: str = "",
    ) -> Generator[build_control_pb2.CancelBuildsResponse, None, None]:
        request = requests.cancel_builds_request(
            build_ids,
            pipeline,
            concurrency_group,
            reason,
            force,
            grace_period_seconds,
            requested_by,
        )
        call = self._stub.CancelBuilds(request, **self._stream)
        try:
            with translated_rpc_errors():
                for response in call:
                    yield from requests.one_build_each(response)
        finally:
            call.cancel()

    def list_agents(self) -> builtins.list[build_control_pb2.Agent]:
        request = requests.list_agents_request()
        with translated_rpc_errors():
            response = self._stub.ListAgents(request, **self._unary)
        return builtins.list(response.agents)

    def list_webhook_deliveries(
        self, limit: int = 0
    ) -> builtins.list[build_control_pb2.WebhookDelivery]:
        request = requests.list_webhook_deliveries_request(limit)
        with translated_rpc_errors():
            response = self._stub.ListWebhookDeliveries(request, **self._unary)
        return builtins.list(response.deliveries)

    def redeliver_webhook(self, delivery_id: str) -> builtins.list[str]:
        request = requests.redeliver_webhook_request(delivery_id)
        with translated_rpc_errors():
            response = self._stub.RedeliverWebhook(request, **self._unary)
        return builtins.list(response.endpoints)

    def get_job_log(
        self, build_id: str, job_id: str, offset: int = 0, limit: int = 0
    ) -> build_control_pb2.GetJobLogResponse:
        request = requests.get_job_log_request(build_id, job_id, offset, limit)
        with translated_rpc_errors():
            response: build_control_pb2.GetJobLogResponse = self._stub.GetJobLog(
                request, **self._unary
            )
        return response

    def follow_job_log(
        self, build_id: str, job_id: str, from_offset: int = 0
    ) -> Generator[build_control_pb2.FollowJobLogResponse, None, None]:
        request = requests.follow_job_log_request(build_id, job_id, from_offset)
        call = self._stub.FollowJobLog(request, **self._stream)
        try:
            with translated_rpc_errors():
                yield from call
        finally:
            call.cancel()

    def purge(
        self, before: float | None = None, *, dry_run: bool = False
    ) -> housekeeping_pb2.PurgeResponse:
        """As BuildControlClient.purge: no deadline (a long history takes minutes)."""
        stub = housekeeping_pb2_grpc.HousekeepingStub(self._channel)
        with translated_rpc_errors():
            response: housekeeping_pb2.PurgeResponse = stub.Purge(
                requests.purge_request(before, dry_run), **self._stream
            )
        return response
