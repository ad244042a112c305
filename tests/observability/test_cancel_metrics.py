"""Every phase of a cancel is measured, and a stuck one shows, read from /metrics over
HTTP exactly as Prometheus reads it."""

from __future__ import annotations

import operator
import re
import time
from pathlib import Path

import yaml
from buildcontrol_proto.v1 import build_control_pb2, build_pb2

from tests.observability.observed_servers import ALERTS, Observed, observed_server
from tests.support.agent_peer import AgentPeer
from tests.support.build_calls import first_steps_running, rest_of
from tests.support.metrics_scrape import Scrape, delta
from tests.support.pipelines import pipeline

WAIT = 10.0
PHASES = ("accepted", "stop_delivered", "job_stopped", "terminal")

# `metric > 300`, `metric{label="x"} >= 1`: the shape of the stuck-cancel rule.
SIMPLE_RULE = re.compile(
    r"^\s*(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})?\s*"
    r"(?P<op>>=|<=|==|!=|>|<)\s*(?P<threshold>[0-9.eE+-]+)\s*$"
)
COMPARE = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le,
           "==": operator.eq, "!=": operator.ne}  # fmt: skip


def alert_rule(name: str) -> dict[str, object]:
    rules = yaml.safe_load(ALERTS.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == name:
                return dict(rule)
    raise AssertionError(f"no alert {name} in {ALERTS}")


def fires(expr: str, scrape: Scrape) -> bool:
    """Evaluate a `metric{labels} OP number` expression on one scrape, as Prometheus
    does at one instant: true if any matching series passes the comparison."""
    match = SIMPLE_RULE.match(expr)
    assert match is not None, f"not a simple comparison: {expr!r}"
    wanted = dict(re.findall(r'(\w+)="([^"]*)"', match["labels"] or ""))
    compare, threshold = COMPARE[match["op"]], float(match["threshold"])
    return any(
        compare(value, threshold)
        for name, labels, value in scrape.samples
        if name == match["name"] and wanted.items() <= labels.items()
    )


def threshold_of(expr: str) -> float:
    match = SIMPLE_RULE.match(expr)
    assert match is not None
    return float(match["threshold"])


async def test_one_cancel_of_three_jobs_moves_each_phase_by_its_count(observed: Observed) -> None:
    # Capacity 2: two jobs run on the agent, the third never starts.
    agent = AgentPeer(observed.target, "a1", capacity=2)
    await agent.connect()
    build = (await observed.stub.SubmitBuild(pipeline(jobs=3))).build
    first, second = await agent.take_job(), await agent.take_job()
    await first_steps_running(observed.stub, build.build_id, 2)
    before = await observed.scrape()

    stream = observed.stub.Cancel(
        build_control_pb2.CancelRequest(build_id=build.build_id, reason="metrics"), timeout=WAIT
    )
    assert (await stream.read()).WhichOneof("event") == "accepted"
    stops = {(await agent.next("stop_job")).stop_job.job_id for _ in range(2)}
    assert stops == {first.job_id, second.job_id}
    agent.stopped(build.build_id, first.job_id, graceful=True)
    agent.stopped(build.build_id, second.job_id, graceful=False)
    rest = await rest_of(stream)
    assert rest[-1].finished.status == build_pb2.BUILD_STATUS_CANCELED
    after = await observed.scrape()

    counts = {
        phase: delta(before, after, f"buildcontrol_cancel_{phase}_seconds_count")
        for phase in PHASES
    }
    # One request accepted and finished; two stops written and confirmed (the job
    # that never started needs no stop).
    assert counts == {"accepted": 1, "stop_delivered": 2, "job_stopped": 2, "terminal": 1}
    sums = {
        phase: delta(before, after, f"buildcontrol_cancel_{phase}_seconds_sum") for phase in PHASES
    }
    assert 0 < sums["accepted"] <= sums["terminal"], sums
    outcomes = {
        outcome: delta(before, after, "buildcontrol_job_outcomes_total", outcome=outcome)
        for outcome in ("GRACEFUL", "KILLED", "FORCED", "NEVER_STARTED", "LOST")
    }
    assert outcomes == {"GRACEFUL": 1, "KILLED": 1, "FORCED": 0, "NEVER_STARTED": 1, "LOST": 0}
    assert delta(before, after, "buildcontrol_cancels_total", result="accepted") == 1
    assert delta(before, after, "buildcontrol_stop_jobs_sent_total") == 2
    assert delta(before, after, "buildcontrol_stop_deadlines_expired_total") == 0
    await agent.leave()


async def test_a_stop_nobody_confirms_expires_as_forced(tmp_path: Path) -> None:
    async with observed_server(tmp_path / "data", stop_ack_timeout=0.2) as observed:
        agent = AgentPeer(observed.target, "deaf", capacity=1)
        await agent.connect()
        build = (await observed.stub.SubmitBuild(pipeline(jobs=1))).build
        await agent.take_job()
        await first_steps_running(observed.stub, build.build_id, 1)
        before = await observed.scrape()
        # Forced: no grace, so the deadline is the ack timeout alone; the agent ignores it.
        request = build_control_pb2.CancelRequest(build_id=build.build_id, force=True)
        events = [m async for m in observed.stub.Cancel(request, timeout=WAIT)]
        assert events[-1].finished.jobs[0].outcome == build_pb2.JOB_OUTCOME_FORCED
        after = await observed.scrape()
        assert delta(before, after, "buildcontrol_stop_deadlines_expired_total") == 1
        assert delta(before, after, "buildcontrol_job_outcomes_total", outcome="FORCED") == 1
        assert delta(before, after, "buildcontrol_cancel_stop_delivered_seconds_count") == 1
        # Nobody confirmed: "stopped" measures agents' confirmations only.
        assert delta(before, after, "buildcontrol_cancel_job_stopped_seconds_count") == 0
        assert delta(before, after, "buildcontrol_cancel_terminal_seconds_count") == 1
        await agent.leave()


async def test_a_build_held_in_canceling_shows_its_age_and_fires_the_stuck_alert(
    tmp_path: Path,
) -> None:
    # An agent that ignores stops, and a deadline far away: the build stays CANCELING.
    async with observed_server(tmp_path / "data", stop_ack_timeout=60.0) as observed:
        agent = AgentPeer(observed.target, "ignores-stops", capacity=1)
        await agent.connect()
        build = (await observed.stub.SubmitBuild(pipeline(jobs=1))).build
        await agent.take_job()
        await first_steps_running(observed.stub, build.build_id, 1)
        await observed.app.live_gauges.refresh()  # the server does it every --audit-interval
        idle = await observed.scrape()
        assert idle.value("buildcontrol_builds_canceling") == 0
        assert idle.value("buildcontrol_oldest_canceling_age_seconds") == 0

        stream = observed.stub.Cancel(
            build_control_pb2.CancelRequest(build_id=build.build_id, reason="stuck"), timeout=WAIT
        )
        assert (await stream.read()).accepted.status == build_pb2.BUILD_STATUS_CANCELING
        await agent.next("stop_job")  # ignored: no JobStopped is sent back
        await observed.app.live_gauges.refresh()
        stuck = await observed.scrape()
        # Gauges read from the store's CANCELING builds.
        assert stuck.value("buildcontrol_builds_canceling") == 1
        assert stuck.value("buildcontrol_oldest_canceling_age_seconds") > 0

        rule = alert_rule("BuildcontrolCancelStuck")
        expr = str(rule["expr"])
        assert not fires(expr, stuck), "a cancel a few ms old is not stuck"
        # Let the threshold's worth of time pass for the gauge's clock (the monotonic
        # clock the age is counted on) instead of waiting it out.
        skip = threshold_of(expr) + 1.0
        observed.app.live_gauges.monotonic = lambda: time.monotonic() + skip
        later = await observed.scrape()
        assert later.value("buildcontrol_oldest_canceling_age_seconds") > threshold_of(expr)
        assert fires(expr, later)
        stream.cancel()
        await agent.leave()
