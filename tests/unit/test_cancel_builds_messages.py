"""The messages of a batch_builds CancelBuilds stream (rpc/convert.py), and the Python
client giving its callers one `build` per build whichever way the server sent them."""

from __future__ import annotations

from buildcontrol_client.request_builders import cancel_builds_request, one_build_each
from buildcontrol_proto.v1 import build_control_pb2
from buildcontrol_server.actors.bulk_cancel import (
    CancelBuildsAccepted,
    CancelBuildsEvent,
    CancelBuildsSummary,
)
from buildcontrol_server.domain.events import CancelFinishedEvent, JobResult
from buildcontrol_server.domain.model import CancelInfo
from buildcontrol_server.domain.states import BuildStatus, JobOutcome, JobStatus
from buildcontrol_server.rpc import convert

INFO = CancelInfo("bad tag", "ops", False, 0.0, 1.0)


def _ended(build_id: str, jobs: int = 1) -> CancelFinishedEvent:
    results = tuple(
        JobResult(build_id, f"{build_id}-job-{n:05d}", JobStatus.CANCELED, JobOutcome.KILLED)
        for n in range(jobs)
    )
    return CancelFinishedEvent(build_id, BuildStatus.CANCELED, INFO, results)


def _ids(message: build_control_pb2.CancelBuildsResponse) -> list[str]:
    return [b.build_id for b in message.builds.builds]


def test_ends_between_other_events_are_grouped_in_order() -> None:
    accepted = CancelBuildsAccepted(3, 3, 0, 0, 0)
    run: list[CancelBuildsEvent] = [accepted, _ended("b1"), _ended("b2"), _ended("b3")]
    run.append(CancelBuildsSummary(3, 3))
    messages = list(convert.cancel_builds_batched(run))
    assert [m.WhichOneof("event") for m in messages] == ["accepted", "builds", "summary"]
    assert _ids(messages[1]) == ["b1", "b2", "b3"]
    assert messages[2].summary.canceled == 3


def test_a_message_holds_at_most_builds_per_batch() -> None:
    ends = [_ended(f"b{n:05d}") for n in range(convert.BUILDS_PER_BATCH + 1)]
    messages = list(convert.cancel_builds_batched(list(ends)))
    assert [len(m.builds.builds) for m in messages] == [convert.BUILDS_PER_BATCH, 1]
    assert [i for m in messages for i in _ids(m)] == [e.build_id for e in ends]


def test_a_message_holds_about_batch_bytes_at_most() -> None:
    # ~24 bytes per job: a build of 20,000 jobs is ~480 KB, two fill a megabyte.
    ends = [_ended(f"b{n}", jobs=20_000) for n in range(4)]
    messages = list(convert.cancel_builds_batched(list(ends)))
    assert [len(m.builds.builds) for m in messages] == [2, 2]
    for message in messages:
        assert message.ByteSize() <= convert.BATCH_BYTES + 1024
    assert [i for m in messages for i in _ids(m)] == ["b0", "b1", "b2", "b3"]


def test_one_end_larger_than_the_bound_goes_alone() -> None:
    big = _ended("big", jobs=50_000)  # over a megabyte by itself
    messages = list(convert.cancel_builds_batched([_ended("small"), big, _ended("after")]))
    assert [_ids(m) for m in messages] == [["small"], ["big"], ["after"]]


def test_the_client_asks_for_batches_and_gives_one_build_each() -> None:
    assert cancel_builds_request(pipeline="release").batch_builds
    batch = build_control_pb2.CancelFinishedBatch(
        builds=[build_control_pb2.CancelFinished(build_id=i) for i in ("b1", "b2")]
    )
    batched = build_control_pb2.CancelBuildsResponse(builds=batch)
    assert [m.build.build_id for m in one_build_each(batched)] == ["b1", "b2"]
    # An older server's messages pass unchanged.
    single = build_control_pb2.CancelBuildsResponse(
        build=build_control_pb2.CancelFinished(build_id="b3")
    )
    summary = build_control_pb2.CancelBuildsResponse(
        summary=build_control_pb2.CancelBuildsSummary(matched=3)
    )
    assert list(one_build_each(single)) == [single]
    assert list(one_build_each(summary)) == [summary]
