"""The agent's memory across reconnects (outbox, result log) and its reconnect delays."""

from __future__ import annotations

import random

import pytest
from buildcontrol_client import outbox
from buildcontrol_client.backoff import Backoff, BackoffPolicy
from buildcontrol_client.outbox import Outbox, ResultLog
from buildcontrol_proto.v1 import agent_pb2, build_pb2


def finished(job_id: str) -> agent_pb2.ConnectRequest:
    return agent_pb2.ConnectRequest(
        job_finished=agent_pb2.JobFinished(job_id=job_id, succeeded=True)
    )


def stopped(job_id: str) -> agent_pb2.ConnectRequest:
    return agent_pb2.ConnectRequest(
        job_stopped=agent_pb2.JobStopped(job_id=job_id, outcome=build_pb2.JOB_OUTCOME_KILLED)
    )


def heartbeat() -> agent_pb2.ConnectRequest:
    return agent_pb2.ConnectRequest(heartbeat=agent_pb2.Heartbeat())


def test_hello_carries_every_result_until_its_report_id_is_acknowledged() -> None:
    results = ResultLog()
    results.add(finished("j1"))
    results.add(stopped("j2"))

    hello = agent_pb2.Hello()
    results.fill_hello(hello)
    assert [r.job_id for r in hello.finished_jobs] == ["j1"]
    assert [r.job_id for r in hello.stopped_jobs] == ["j2"]
    ids = [hello.finished_jobs[0].report_id, hello.stopped_jobs[0].report_id]
    assert all(ids) and len(set(ids)) == 2

    # The Hello was welcomed: that proves nothing, both are still kept.
    again = agent_pb2.Hello()
    results.fill_hello(again)
    assert len(again.finished_jobs) == 1 and len(again.stopped_jobs) == 1

    assert results.acknowledge([ids[0], "someone-else-1"]) == 1
    assert not results.has("j1") and results.has("j2")
    assert results.acknowledge([ids[0]]) == 0  # twice: ignored


def test_results_are_kept_until_acknowledged_however_old_but_the_count_is_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(outbox, "MAX_KEPT_RESULTS", 2)
    results = ResultLog()
    results.add(finished("written"))
    results.add(finished("unsent"))
    results.mark_written(finished("written"))
    results.mark_written(heartbeat())  # not a result: ignored
    results.add(finished("third"))  # over the bound: the oldest written one goes

    hello = agent_pb2.Hello()
    results.fill_hello(hello)

    assert [r.job_id for r in hello.finished_jobs] == ["unsent", "third"]
    assert results.unsent() == 2


def test_only_results_go_into_the_result_log() -> None:
    with pytest.raises(ValueError, match="heartbeat"):
        ResultLog().add(heartbeat())


async def test_outbox_keeps_order_and_gives_back_an_unwritten_message() -> None:
    box = Outbox()
    box.put(finished("j1"))
    box.put(finished("j2"))

    first = await box.get()
    box.put_front(first)  # the write failed: it goes out first next time

    assert [(await box.get()).job_finished.job_id for _ in range(2)] == ["j1", "j2"]
    box.put(heartbeat())
    assert [m.WhichOneof("event") for m in box.take_all()] == ["heartbeat"]
    assert len(box) == 0


def test_backoff_grows_to_its_cap_with_jitter_and_resets() -> None:
    backoff = Backoff(BackoffPolicy(initial=0.1, maximum=1.0, jitter=0.5), random.Random(7))

    delays = [backoff.next_delay() for _ in range(8)]

    ceilings = [0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0, 1.0]
    for delay, ceiling in zip(delays, ceilings, strict=True):
        assert ceiling / 2 <= delay <= ceiling
    assert len(set(delays)) == len(delays)  # jittered: no two agents in step
    backoff.reset()
    assert backoff.next_delay() <= 0.1


@pytest.mark.parametrize(
    "policy",
    [
        {"initial": 0, "maximum": 1},
        {"initial": 2, "maximum": 1},
        {"initial": 1, "maximum": 2, "jitter": 1.5},
        {"initial": 1, "maximum": 2, "multiplier": 0.5},
    ],
)
def test_backoff_policy_rejects_nonsense(policy: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="backoff needs"):
        BackoffPolicy(**policy)
