"""Request messages built from plain arguments, shared by the async and sync clients."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

from buildcontrol_proto.v1 import build_control_pb2, housekeeping_pb2
from google.protobuf import duration_pb2

from buildcontrol_client.pipeline_file import parse_pipeline

PipelineSpec = build_control_pb2.SubmitBuildRequest | Mapping[str, object]


def submit_request(
    spec: PipelineSpec, request_id: str = ""
) -> build_control_pb2.SubmitBuildRequest:
    """A request as it is, or one made from a pipeline document (see pipeline_file);
    with `request_id` (an idempotency key) set on a copy when given."""
    if isinstance(spec, build_control_pb2.SubmitBuildRequest):
        request = spec
    else:
        request = parse_pipeline(spec)
    if request_id:
        keyed = build_control_pb2.SubmitBuildRequest()
        keyed.CopyFrom(request)
        keyed.request_id = request_id
        return keyed
    return request


def cancel_request(
    build_id: str,
    reason: str = "",
    force: bool = False,
    grace_period_seconds: float | None = None,
    requested_by: str = "",
) -> build_control_pb2.CancelRequest:
    """`grace_period_seconds=None` leaves the grace period to the server's default."""
    request = build_control_pb2.CancelRequest(
        build_id=build_id, reason=reason, force=force, requested_by=requested_by
    )
    if grace_period_seconds is not None:
        request.grace_period.CopyFrom(seconds_to_duration(grace_period_seconds))
    return request


def cancel_builds_request(
    build_ids: Sequence[str] = (),
    pipeline: str = "",
    concurrency_group: str = "",
    reason: str = "",
    force: bool = False,
    grace_period_seconds: float | None = None,
    requested_by: str = "",
) -> build_control_pb2.CancelBuildsRequest:
    """Exactly one selector: ids, a pipeline or a concurrency group (ValueError otherwise,
    before any call: the server would refuse it with INVALID_ARGUMENT anyway)."""
    chosen = [bool(build_ids), bool(pipeline), bool(concurrency_group)]
    if sum(chosen) != 1:
        raise ValueError("give exactly one of build_ids, pipeline or concurrency_group")
    # Batched: a mass cancel's thousands of ends arrive in a few messages (the server
    # spent ~0.15 ms writing each); one_build_each gives callers one per build again.
    request = build_control_pb2.CancelBuildsRequest(
        reason=reason, force=force, requested_by=requested_by, batch_builds=True
    )
    if build_ids:
        request.ids.build_ids.extend(build_ids)
    elif pipeline:
        request.pipeline = pipeline
    else:
        request.concurrency_group = concurrency_group
    if grace_period_seconds is not None:
        request.grace_period.CopyFrom(seconds_to_duration(grace_period_seconds))
    return request


def one_build_each(
    response: build_control_pb2.CancelBuildsResponse,
) -> Iterator[build_control_pb2.CancelBuildsResponse]:
    """A CancelBuilds message as the messages of an unbatched stream: a `builds`
    message becomes one `build` message per build, in order; others stay as they are
    (a server older than batch_builds sends `build` messages only)."""
    if response.WhichOneof("event") != "builds":
        yield response
        return
    for finished in response.builds.builds:
        yield build_control_pb2.CancelBuildsResponse(build=finished)


def seconds_to_duration(seconds: float) -> duration_pb2.Duration:
    duration = duration_pb2.Duration()
    duration.FromNanoseconds(round(seconds * 1e9))
    return duration


def get_request(build_id: str) -> build_control_pb2.GetBuildRequest:
    return build_control_pb2.GetBuildRequest(build_id=build_id)


def list_request(
    page_size: int = 0, page_token: str = "", pipeline: str = ""
) -> build_control_pb2.ListBuildsRequest:
    return build_control_pb2.ListBuildsRequest(
        page_size=page_size, page_token=page_token, pipeline=pipeline
    )


def watch_request(build_id: str) -> build_control_pb2.WatchBuildRequest:
    return build_control_pb2.WatchBuildRequest(build_id=build_id)


def list_agents_request() -> build_control_pb2.ListAgentsRequest:
    return build_control_pb2.ListAgentsRequest()


def list_webhook_deliveries_request(
    limit: int = 0,
) -> build_control_pb2.ListWebhookDeliveriesRequest:
    return build_control_pb2.ListWebhookDeliveriesRequest(limit=limit)


def redeliver_webhook_request(delivery_id: str) -> build_control_pb2.RedeliverWebhookRequest:
    return build_control_pb2.RedeliverWebhookRequest(delivery_id=delivery_id)


def get_job_log_request(
    build_id: str, job_id: str, offset: int = 0, limit: int = 0
) -> build_control_pb2.GetJobLogRequest:
    return build_control_pb2.GetJobLogRequest(
        build_id=build_id, job_id=job_id, offset=offset, limit=limit
    )


def follow_job_log_request(
    build_id: str, job_id: str, from_offset: int = 0
) -> build_control_pb2.FollowJobLogRequest:
    return build_control_pb2.FollowJobLogRequest(
        build_id=build_id, job_id=job_id, from_offset=from_offset
    )


def purge_request(before: float | None, dry_run: bool) -> housekeeping_pb2.PurgeRequest:
    """`before`: epoch seconds; None: the server's retention policy."""
    request = housekeeping_pb2.PurgeRequest(dry_run=dry_run)
    if before is not None:
        request.before.FromNanoseconds(int(before * 1e9))
    return request
