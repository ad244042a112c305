"""SubmitBuild's idempotency key (`request_id`), and its response: the new build
(whole, or without its stages), the counts, and what its cancel_in_progress did.

A build at the `--max-jobs` x `--max-steps` limits is several MB as a message, more
than a client with gRPC's default receive limit (4 MiB) accepts; such a client would
see an error for a submit that succeeded, and its retry would make a second build.
So unless the caller asks for the whole build, one that large comes without stages."""

from __future__ import annotations

import hashlib

from buildcontrol_proto.v1 import build_control_pb2, build_pb2

from buildcontrol_server.actors.submit_keys import RequestKey, Submitted
from buildcontrol_server.domain.errors import InvalidArgument

MAX_REQUEST_ID_LENGTH = 200
# gRPC's default receive limit of a client (every language's), in bytes.
DEFAULT_CLIENT_RECEIVE_BYTES = 4 * 1024 * 1024
# Room left in that limit for the response's other fields and the gRPC framing.
_HEADROOM_BYTES = 64 * 1024


def _counts(build: build_pb2.Build) -> tuple[int, int]:
    jobs = [job for stage in build.stages for job in stage.jobs]
    return len(jobs), sum(len(job.steps) for job in jobs)


def _basic(build: build_pb2.Build) -> build_pb2.Build:
    summary = build_pb2.Build()
    summary.CopyFrom(build)
    del summary.stages[:]
    return summary


def response(
    submitted: Submitted[build_pb2.Build], view: build_control_pb2.BuildView
) -> build_control_pb2.SubmitBuildResponse:
    build = submitted.build
    jobs, steps = _counts(build)
    omit = view == build_control_pb2.BUILD_VIEW_BASIC or (
        view == build_control_pb2.BUILD_VIEW_UNSPECIFIED
        and build.ByteSize() > DEFAULT_CLIENT_RECEIVE_BYTES - _HEADROOM_BYTES
    )
    return build_control_pb2.SubmitBuildResponse(
        build=_basic(build) if omit else build,
        superseded_build_ids=submitted.superseded.cancelled,
        waiting_for_build_ids=submitted.superseded.kept,
        job_count=jobs,
        step_count=steps,
        stages_omitted=omit,
        replayed=submitted.replayed,
    )


def request_key(request: build_control_pb2.SubmitBuildRequest) -> RequestKey | None:
    """The key and the digest of what it asks for (without the key and the view,
    which do not change the build); None without a request_id."""
    if not request.request_id:
        return None
    if len(request.request_id) > MAX_REQUEST_ID_LENGTH:
        raise InvalidArgument("request_id", f"longer than {MAX_REQUEST_ID_LENGTH} characters")
    if not request.request_id.isprintable():
        raise InvalidArgument("request_id", "contains control characters")
    body = build_control_pb2.SubmitBuildRequest()
    body.CopyFrom(request)
    body.ClearField("request_id")
    body.ClearField("view")
    digest = hashlib.sha256(body.SerializeToString(deterministic=True)).hexdigest()
    return RequestKey(request.request_id, digest)
