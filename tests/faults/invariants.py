"""The end of every walk: heal the faults, let well-behaved agents answer, cancel what
is still live, then check the promise.

- every build whose cancel was ACCEPTED ends CANCELED, within its deadline (short
  timers: grace + stop-ack timeout + reconnect window + the time the store failed or
  the server was down, plus slack for a loaded machine);
- the Cancel stream of an accepted cancel ends with `finished` (unless the server was
  SIGKILLed under it);
- no build stays non-terminal once every agent answered;
- no result an agent was told is committed is missing (long timers only, where no
  timer may legitimately override a result);
- no job was given to two agents; no agent holds a slot once every build is terminal;
- the server's invariant auditor, when it has one, reports nothing."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import grpc
from buildcontrol_proto.v1 import build_control_pb2, build_pb2

from tests.faults.cancels import CancelWatch
from tests.faults.scripted_agent import Result, ScriptedAgent

if TYPE_CHECKING:
    from tests.faults.walk import Walk

# Slack on every deadline: the machine is loaded (2 cores, other suites running).
SLACK = 8.0
SETTLE_WITHIN = 20.0
AUDIT_WITHIN = 20.0
TERMINAL = {
    build_pb2.BUILD_STATUS_SUCCEEDED,
    build_pb2.BUILD_STATUS_FAILED,
    build_pb2.BUILD_STATUS_CANCELED,
}
JOB_TERMINAL = {
    build_pb2.JOB_STATUS_SUCCEEDED,
    build_pb2.JOB_STATUS_FAILED,
    build_pb2.JOB_STATUS_CANCELED,
    build_pb2.JOB_STATUS_SKIPPED,
}


def name(enum: object, value: int) -> str:
    return str(enum.Name(value))  # type: ignore[attr-defined]


async def settle_and_check(walk: Walk) -> None:
    if walk.server.outage is not None:
        walk.server.outage.heal()
    responders = [asyncio.create_task(_respond(walk, agent)) for agent in walk.agents]
    try:
        await _wait_for_walk_cancels(walk)
        await _cancel_the_rest(walk)
        builds = await _final_builds(walk)
        walk.note("settle: checks")
        _check_results(walk, builds)
        _check_single_agent(walk)
        await _check_slots_free(walk, builds)
        await _check_auditor(walk)
    finally:
        walk.note("settle: done, stopping the responders")
        for responder in responders:
            responder.cancel()
        _, stuck = await asyncio.wait(responders, timeout=AUDIT_WITHIN) if responders else ((), ())
        if stuck:
            where = [
                " <- ".join(f"{f.f_code.co_name}:{f.f_lineno}" for f in task.get_stack(limit=8))
                for task in stuck
            ]
            walk.violations.append(f"agents did not stop when told (waiting in {where})")


async def _respond(walk: Walk, agent: ScriptedAgent) -> None:
    """Reconnect (re-sending results), then answer everything, reconnecting if cut."""
    while True:
        outcome = await agent.connect("welcome")
        if outcome != "welcomed":
            walk.violations.append(f"{agent.agent_id}: reconnect at settle: {outcome}")
            return
        assert agent.peer is not None
        peer = agent.peer
        agent.settle(None)
        while not peer.closed.is_set():
            getting = asyncio.ensure_future(peer.received.get())
            closing = asyncio.ensure_future(peer.closed.wait())
            try:
                await asyncio.wait({getting, closing}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                closing.cancel()
                if not getting.done():
                    getting.cancel()
            if getting.done() and not getting.cancelled():
                agent.settle(getting.result())
        walk.note(f"{agent.agent_id} stream ended at settle: {peer.status} {peer.details}")


def _deadline(walk: Walk, watch: CancelWatch) -> float:
    assert watch.accepted_at is not None
    timers = walk.timers
    faults = walk.server.down_seconds
    if walk.server.outage is not None:
        faults += walk.server.outage.seconds
    return (
        watch.accepted_at
        + watch.grace
        + timers.stop_ack_timeout
        + timers.reconnect_window
        + faults
        + SLACK
    )


async def _wait_for_walk_cancels(walk: Walk) -> None:
    loop = asyncio.get_running_loop()
    pending = [w for w in walk.cancels if w.task is not None and not w.done]
    if pending:
        latest = max(
            (_deadline(walk, w) for w in pending if w.accepted_at is not None),
            default=loop.time() + SETTLE_WITHIN,
        )
        limit = (
            max(latest, loop.time() + SLACK) if walk.timers.short else loop.time() + SETTLE_WITHIN
        )
        tasks = [w.task for w in pending if w.task is not None]
        await asyncio.wait(tasks, timeout=max(0.0, limit - loop.time()))
    for watch in walk.cancels:
        _check_cancel(walk, watch, in_walk=True)


def _check_cancel(walk: Walk, watch: CancelWatch, *, in_walk: bool) -> None:
    where = "walk" if in_walk else "settle"
    if watch.cut_by_kill:
        return
    if watch.accepted_at is None:
        if watch.error is None and not watch.done:
            walk.violations.append(f"{watch.build_id}: {where} cancel got no answer at all")
        elif watch.error == grpc.StatusCode.FAILED_PRECONDITION:
            walk.refused_as_finished.add(watch.build_id)  # checked against its final status
        elif watch.error is not None and watch.error != grpc.StatusCode.UNAVAILABLE:
            walk.violations.append(
                f"{watch.build_id}: {where} cancel refused {watch.error.name}: {watch.details}"
            )
        return
    if not watch.done:
        walk.violations.append(
            f"{watch.build_id}: {where} cancel ACCEPTED but never finished (build stuck)"
        )
    elif watch.error is not None:
        walk.violations.append(
            f"{watch.build_id}: {where} cancel ACCEPTED, then the stream ended"
            f" {watch.error.name}: {watch.details}"
        )
    elif watch.final_status != build_pb2.BUILD_STATUS_CANCELED:
        walk.violations.append(
            f"{watch.build_id}: {where} cancel ACCEPTED but the build ended"
            f" {name(build_pb2.BuildStatus, watch.final_status)}"
        )
    elif in_walk and walk.timers.short and watch.finished_at is not None:
        late = watch.finished_at - _deadline(walk, watch)
        if late > 0:
            walk.violations.append(
                f"{watch.build_id}: cancel finished {late:.1f} s after its deadline (+slack)"
            )


async def _build(walk: Walk, build_id: str) -> build_pb2.Build:
    request = build_control_pb2.GetBuildRequest(build_id=build_id)
    return (await walk.server.stub.GetBuild(request, timeout=10)).build


async def _cancel_the_rest(walk: Walk) -> None:
    settling = []
    for submitted in walk.builds:
        build = await _build(walk, submitted.build_id)
        if build.status not in TERMINAL:
            watch = CancelWatch(build.build_id, False, 0.0, asyncio.get_running_loop().time())
            watch.start(walk.server.stub, "faults walk: settle")
            settling.append(watch)
    walk.note(f"settle: cancel {len(settling)} live builds")
    tasks = [w.task for w in settling if w.task is not None]
    if tasks:
        await asyncio.wait(tasks, timeout=SETTLE_WITHIN)
    for watch in settling:
        _check_cancel(walk, watch, in_walk=False)
        await watch.stop_following()


async def _final_builds(walk: Walk) -> dict[str, build_pb2.Build]:
    builds = {}
    for submitted in walk.builds:
        build = await _build(walk, submitted.build_id)
        builds[build.build_id] = build
        if build.status not in TERMINAL:
            walk.violations.append(
                f"{build.build_id}: stays {name(build_pb2.BuildStatus, build.status)}"
                " after every agent answered"
            )
        if build.build_id in walk.refused_as_finished and build.status not in TERMINAL:
            walk.violations.append(
                f"{build.build_id}: Cancel refused FAILED_PRECONDITION for a"
                f" {name(build_pb2.BuildStatus, build.status)} build (a dead actor?)"
            )
        accepted = any(w.build_id == build.build_id and w.accepted_at for w in walk.cancels)
        if accepted and build.status != build_pb2.BUILD_STATUS_CANCELED:
            walk.violations.append(
                f"{build.build_id}: a cancel was ACCEPTED, the build is"
                f" {name(build_pb2.BuildStatus, build.status)}"
            )
    return builds


def _check_results(walk: Walk, builds: dict[str, build_pb2.Build]) -> None:
    """Told results must show in the store. Only with long timers: short ones may end
    a job FORCED or LOST before a result arrives, which is the promise, not a loss."""
    if walk.timers.short:
        return
    jobs = {
        job.job_id: job for build in builds.values() for stage in build.stages for job in stage.jobs
    }
    seen: set[str] = set()
    for agent in walk.agents:
        for result in agent.told:
            if result.job_id in seen or result.job_id not in jobs:
                continue
            seen.add(result.job_id)
            problem = _result_missing(result, jobs[result.job_id])
            if problem:
                walk.violations.append(
                    f"{result.build_id}/{result.job_id}: {agent.agent_id} was told its result"
                    f" is committed, but {problem}"
                )


def _result_missing(result: Result, job: build_pb2.Job) -> str | None:
    status, outcome = job.status, job.outcome
    shown = f"the job is {name(build_pb2.JobStatus, status)}/{name(build_pb2.JobOutcome, outcome)}"
    if result.message.HasField("job_finished"):
        wanted = (
            build_pb2.JOB_STATUS_SUCCEEDED
            if result.message.job_finished.succeeded
            else build_pb2.JOB_STATUS_FAILED
        )
        # A result reported after the cancel was applied is still CANCELED.
        fine = status == wanted and outcome != build_pb2.JOB_OUTCOME_LOST
        return None if fine or status == build_pb2.JOB_STATUS_CANCELED else f"{shown} (finished)"
    wanted_outcome = result.message.job_stopped.outcome
    fine = status == build_pb2.JOB_STATUS_CANCELED and outcome == wanted_outcome
    return None if fine else f"{shown} (stopped {name(build_pb2.JobOutcome, wanted_outcome)})"


def _check_single_agent(walk: Walk) -> None:
    owners: dict[str, str] = {}
    for agent in walk.agents:
        for job_id in agent.assigned:
            other = owners.setdefault(job_id, agent.agent_id)
            if other != agent.agent_id:
                walk.violations.append(f"job {job_id} was given to {other} and {agent.agent_id}")


def _explain_slot(walk: Walk, builds: dict[str, build_pb2.Build], job_id: str) -> str:
    """What the store and the agent say of a job whose slot is still held."""
    job = next(
        (j for b in builds.values() for s in b.stages for j in s.jobs if j.job_id == job_id), None
    )
    stored = (
        f"{name(build_pb2.JobStatus, job.status)}/{name(build_pb2.JobOutcome, job.outcome)}"
        if job
        else "not in the store"
    )
    agents = [a for a in walk.agents if job_id in a.assigned]
    known = []
    for agent in agents:
        held = agent.held.get(job_id)
        sent = [r.message.WhichOneof("event") for r in agent.sent_results if r.job_id == job_id]
        state = (
            "not held"
            if held is None
            else f"held accepted={held.accepted} stop_seen={held.stop_seen}"
        )
        known.append(f"{agent.agent_id}: {state}, reported {sent or 'nothing'}")
    return f"{job_id} {stored}; {'; '.join(known)}"


async def _check_slots_free(walk: Walk, builds: dict[str, build_pb2.Build]) -> None:
    """Once every build is terminal no agent may hold a slot. The release follows the
    terminal commit; no event announces it, so look again for a bounded while."""
    loop = asyncio.get_running_loop()
    until = loop.time() + SLACK
    while True:
        listing = await walk.server.stub.ListAgents(
            build_control_pb2.ListAgentsRequest(), timeout=10
        )
        holding = {a.agent_id: list(a.job_ids) for a in listing.agents if a.job_ids}
        if not holding:
            return
        if loop.time() > until:
            jobs = [_explain_slot(walk, builds, j) for held in holding.values() for j in held]
            walk.violations.append(
                f"slots still held after every build ended: {holding} ({' | '.join(jobs)})"
            )
            return
        await asyncio.sleep(0.05)


async def _check_auditor(walk: Walk) -> None:
    auditor = walk.server.auditor()
    if auditor is None:
        return
    walk.note("settle: auditor check")
    checking = asyncio.ensure_future(auditor.check())
    done, _ = await asyncio.wait({checking}, timeout=AUDIT_WITHIN)
    if not done:
        where = " <- ".join(
            f"{frame.f_code.co_name}:{frame.f_lineno}" for frame in checking.get_stack(limit=8)
        )
        checking.cancel()
        walk.violations.append(
            f"auditor.check() did not answer within {AUDIT_WITHIN:g} s (waiting in {where})"
        )
        return
    found = checking.result()
    for violation in found or ():
        walk.violations.append(f"auditor: {violation}")
