"""The agent's memory across reconnects (outbox, result log) and its reconnect delays."""

from __future__ import annotations

import random

import pytest
from buildcontrol.v1 import agent_pb2, build_pb2
from buildcontrol_client import outbox
from buildcontrol_client.backoff import Backoff, BackoffPolicy
from buildcontrol_client.outbox import Outbox, ResultLog


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


def test_hello_carries_every_unconfirmed_result_until_a_welcome_confirms_it() -> None:
    results = ResultLog()
    results.add(finished("j1"))
    results.add(stopped("j2"))

    hello = agent_pb2.Hello()
    carried = results.fill_hello(hello)
    assert [r.job_id for r in hello.finished_jobs] == ["j1"]
    assert [r.job_id for r in hello.stopped_jobs] == ["j2"]

    results.add(finished("j3"))  # after the Hello went out: not confirmed by its Welcome
    results.confirm(carried)
    assert not results.has("j1")
    assert results.has("j3")


def test_results_written_long_ago_are_dropped_but_unsent_ones_never(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(outbox, "RESEND_WINDOW_SECONDS", -1.0)  # everything written is old
    results = ResultLog()
    results.add(finished("written"))
    results.add(finished("unsent"))
    results.mark_written(finished("written"))
    results.mark_written(heartbeat())  # not a result: ignored

    hello = agent_pb2.Hello()
    results.fill_hello(hello)

    assert [r.job_id for r in hello.finished_jobs] == ["unsent"]
    assert results.unsent() == 1


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
