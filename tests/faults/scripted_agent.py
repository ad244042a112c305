"""A scripted agent whose every move is chosen by the walk: what it holds, what it has
reported, and which of its results it was told are committed.

It keeps each result (JobFinished/JobStopped) until the server says it is committed,
as the reference agent does: with a protocol that acknowledges results
(ReportsCommitted naming the result's report_id) only that acknowledgement tells;
without one, a Welcome answering a Hello that re-sent the result is what tells. Results
told so go to `told`, which the invariants check.

An agent made with `batches` lists AGENT_FEATURE_STOP_BATCHES: the server may send it
StopJobs, each stop of which gets its own roll of the dice, and the results of one
message's stops go back as one JobsStopped when the server's Welcome listed the
feature too."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field

from buildcontrol_proto.v1 import agent_pb2, build_pb2

from tests.support.agent_peer import AgentPeer

LABELS = {"pool": "faults"}
# The server acknowledges results by id (ReportsCommitted), not by Welcome.
ACKS = hasattr(agent_pb2, "ReportsCommitted")


@dataclass
class Held:
    """A job the agent has been given. `accepted`: it runs; `stop_seen`: a StopJob for
    it arrived (answered or not)."""

    build_id: str
    job_id: str
    accepted: bool = False
    stop_seen: bool = False
    stop_ignored: bool = False


@dataclass
class Result:
    """A report that ended a job on the agent, as sent."""

    message: agent_pb2.ConnectRequest
    told: bool = False

    @property
    def job_id(self) -> str:
        kind = self.message.WhichOneof("event")
        return str(getattr(self.message, kind or "").job_id)

    @property
    def build_id(self) -> str:
        kind = self.message.WhichOneof("event")
        return str(getattr(self.message, kind or "").build_id)


@dataclass
class ScriptedAgent:
    agent_id: str
    target: str
    capacity: int = 2
    # The walk's own labels: walks that share a server never take each other's jobs.
    labels: dict[str, str] = field(default_factory=lambda: dict(LABELS))
    peer: AgentPeer | None = None
    held: dict[str, Held] = field(default_factory=dict)
    unconfirmed: list[Result] = field(default_factory=list)
    told: list[Result] = field(default_factory=list)
    sent_results: list[Result] = field(default_factory=list)
    assigned: set[str] = field(default_factory=set)  # every job id it was ever given
    batches: bool = False
    # The last Welcome listed the feature back: results may go as one JobsStopped.
    server_batches: bool = False

    @property
    def connected(self) -> bool:
        return self.peer is not None and not self.peer.closed.is_set()

    def hello(self) -> agent_pb2.Hello:
        running = [
            agent_pb2.RunningJob(build_id=h.build_id, job_id=h.job_id) for h in self.held.values()
        ]
        finished = [
            r.message.job_finished for r in self.unconfirmed if r.message.HasField("job_finished")
        ]
        stopped = [
            r.message.job_stopped for r in self.unconfirmed if r.message.HasField("job_stopped")
        ]
        return agent_pb2.Hello(
            agent_id=self.agent_id,
            labels=self.labels,
            capacity=self.capacity,
            running_jobs=running,
            finished_jobs=finished,
            stopped_jobs=stopped,
            features=[agent_pb2.AGENT_FEATURE_STOP_BATCHES] if self.batches else [],
        )

    async def connect(self, how: str) -> str:
        """Open a stream; `how`: "welcome" (wait for it), "drop-before-welcome",
        "drop-after-welcome". Returns what happened."""
        await self.drop()
        resent = list(self.unconfirmed)
        peer = AgentPeer(self.target, self.agent_id, self.labels, self.capacity)
        self.peer = peer
        peer.open(self.hello())
        if how == "drop-before-welcome":
            await peer.drop()
            return "dropped before welcome"
        try:
            # Not asyncio.wait_for: on Python 3.11 it swallows a cancellation that
            # comes as the Welcome arrives (returns the Welcome instead), and the
            # settle's responders, told to stop right then, served on for good.
            async with asyncio.timeout(10.0):
                first = await peer.received.get()
        except TimeoutError:
            await peer.drop()
            return "no welcome"
        if first.WhichOneof("event") != "welcome":
            await peer.drop()
            return f"first message {first.WhichOneof('event')}"
        self.server_batches = agent_pb2.AGENT_FEATURE_STOP_BATCHES in first.welcome.features
        self._welcomed(resent)
        if how == "drop-after-welcome":
            await peer.drop()
            return "dropped after welcome"
        return "welcomed"

    def _welcomed(self, resent: list[Result]) -> None:
        if not ACKS:
            self._told(resent)

    def _told(self, results: list[Result]) -> None:
        for result in results:
            result.told = True
            self.told.append(result)
            if result in self.unconfirmed:
                self.unconfirmed.remove(result)

    async def drop(self) -> None:
        if self.peer is not None:
            await self.peer.drop()
            self.peer = None

    async def crash(self) -> None:
        """What a SIGKILL of an agent without local state leaves: the stream is cut and
        everything the agent knew is gone (its told results stay in the ledger)."""
        await self.drop()
        self.held.clear()
        self.unconfirmed.clear()

    def send(self, message: agent_pb2.ConnectRequest) -> bool:
        if not self.connected:
            return False
        assert self.peer is not None
        self.peer._outgoing.put_nowait(message)
        return True

    def next_message(self) -> agent_pb2.ConnectResponse | None:
        if self.peer is None or self.peer.received.empty():
            return None
        return self.peer.received.get_nowait()

    # ---- moves ------------------------------------------------------------------------

    def accept(self, held: Held) -> None:
        held.accepted = True
        self.send(
            agent_pb2.ConnectRequest(
                job_accepted=agent_pb2.JobAccepted(build_id=held.build_id, job_id=held.job_id)
            )
        )
        self.send(
            agent_pb2.ConnectRequest(
                step_started=agent_pb2.StepStarted(build_id=held.build_id, job_id=held.job_id)
            )
        )

    def end(self, held: Held, message: agent_pb2.ConnectRequest, send: bool = True) -> None:
        """The job ended on the agent: report it (unless `send` is False: the caller
        sends it in a batch) and keep the result until told."""
        self.held.pop(held.job_id, None)
        if ACKS:
            kind = message.WhichOneof("event") or ""
            getattr(message, kind).report_id = f"{self.agent_id}/{held.job_id}"
        result = Result(message)
        self.unconfirmed.append(result)
        self.sent_results.append(result)
        if send:
            self.send(message)

    def send_stopped(self, messages: list[agent_pb2.ConnectRequest]) -> None:
        """Results of stopped jobs: one JobsStopped when the server takes them."""
        if len(messages) > 1 and self.server_batches:
            stopped = [message.job_stopped for message in messages]
            self.send(agent_pb2.ConnectRequest(jobs_stopped=agent_pb2.JobsStopped(stopped=stopped)))
        else:
            for message in messages:
                self.send(message)

    def finish(self, held: Held, succeeded: bool) -> None:
        self.end(
            held,
            agent_pb2.ConnectRequest(
                job_finished=agent_pb2.JobFinished(
                    build_id=held.build_id,
                    job_id=held.job_id,
                    succeeded=succeeded,
                    exit_code=0 if succeeded else 1,
                )
            ),
        )

    def stopped(self, held: Held, graceful: bool, send: bool = True) -> agent_pb2.ConnectRequest:
        outcome = build_pb2.JOB_OUTCOME_GRACEFUL if graceful else build_pb2.JOB_OUTCOME_KILLED
        message = agent_pb2.ConnectRequest(
            job_stopped=agent_pb2.JobStopped(
                build_id=held.build_id,
                job_id=held.job_id,
                outcome=outcome,
                exit_code=143 if graceful else 137,
            )
        )
        self.end(held, message, send)
        return message

    def acknowledged(self, message: agent_pb2.ConnectResponse) -> bool:
        """Take a ReportsCommitted: the results it names are told."""
        if message.WhichOneof("event") != "reports_committed":
            return False
        ids = set(message.reports_committed.report_ids)  # type: ignore[attr-defined]
        self._told([r for r in self.unconfirmed if _report_id(r) in ids])
        return True

    def handle(self, message: agent_pb2.ConnectResponse, rng: random.Random) -> str:
        """React to one server message the way the walk's dice say."""
        kind = message.WhichOneof("event")
        if self.acknowledged(message):
            return "results acknowledged"
        if kind == "assign_job":
            job = message.assign_job
            held = Held(job.build_id, job.job_id)
            self.held[job.job_id] = held
            self.assigned.add(job.job_id)
            if rng.random() < 0.75:
                self.accept(held)
                return f"accepted {job.job_id}"
            return f"holds {job.job_id} unaccepted"
        if kind in ("stop_job", "stop_jobs"):
            results: list[agent_pb2.ConnectRequest] = []
            said = [self._on_stop(stop, rng, results) for stop in _stops(message)]
            self.send_stopped(results)
            return "; ".join(said)
        if kind == "drain":
            return "drain"
        return f"got {kind}"

    def _on_stop(
        self, stop: agent_pb2.StopJob, rng: random.Random, results: list[agent_pb2.ConnectRequest]
    ) -> str:
        """One stop, as the dice say; a stopped job's result goes to `results`."""
        held_or_none = self.held.get(stop.job_id)
        if held_or_none is None:
            return f"stop of unknown {stop.job_id}"
        held = held_or_none
        held.stop_seen = True
        roll = rng.random()
        if not held.accepted:
            # The protocol allows ignoring a stop for a job not started yet.
            held.stop_ignored = True
            return f"ignored stop of unstarted {held.job_id}"
        if roll < 0.6:
            results.append(self.stopped(held, graceful=rng.random() < 0.8, send=False))
            return f"stopped {held.job_id}"
        if roll < 0.8:
            held.stop_ignored = True
            return f"ignored stop of {held.job_id}"
        return f"will stop {held.job_id} later"

    def settle(self, message: agent_pb2.ConnectResponse | None) -> None:
        """A well-behaved agent: take what it is given, answer every stop it has seen."""
        kind = None if message is None else message.WhichOneof("event")
        if message is not None and self.acknowledged(message):
            return
        if message is not None and kind == "assign_job":
            job = message.assign_job
            self.held[job.job_id] = Held(job.build_id, job.job_id)
            self.assigned.add(job.job_id)
        elif message is not None and kind in ("stop_job", "stop_jobs"):
            for stop in _stops(message):
                if stop.job_id in self.held:
                    self.held[stop.job_id].stop_seen = True
        results = []
        for held in list(self.held.values()):
            if held.stop_seen:
                results.append(self.stopped(held, graceful=True, send=False))
            elif not held.accepted:
                self.accept(held)
        self.send_stopped(results)


def _stops(message: agent_pb2.ConnectResponse) -> list[agent_pb2.StopJob]:
    if message.HasField("stop_jobs"):
        return list(message.stop_jobs.stops)
    return [message.stop_job]


def _report_id(result: Result) -> str:
    kind = result.message.WhichOneof("event") or ""
    return str(getattr(getattr(result.message, kind), "report_id", ""))
