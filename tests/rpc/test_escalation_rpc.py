"""A forced cancel on a cancel under way is kept as its own escalation: the first
cancel (who, why, grace, not forced) stays as it was asked, on the wire, in the store
across a restart, in the audit record and in the webhook payload."""

from __future__ import annotations

from pathlib import Path

from buildcontrol_proto.v1 import build_pb2

from tests.support.agent_peer import AgentPeer
from tests.support.build_calls import cancel_request, get, rest_of, settled, submit
from tests.support.servers import running_server
from tests.support.webhook_receiver import Receiver

WAIT = 20.0


def assert_first_cancel_kept(cancel: build_pb2.CancelInfo) -> None:
    assert (cancel.requested_by, cancel.reason, cancel.force) == ("alice", "slow", False)
    assert cancel.grace_period_seconds == 60
    [escalation] = cancel.escalations
    assert (escalation.requested_by, escalation.reason, escalation.force) == (
        "bob",
        "hung",
        True,
    )
    assert escalation.requested_at.ToNanoseconds() >= cancel.requested_at.ToNanoseconds()


async def test_force_keeps_the_first_cancel_and_records_who_escalated(tmp_path: Path) -> None:
    receiver = await Receiver(200).start()
    try:
        async with running_server(tmp_path / "data", webhook_urls=(receiver.url,)) as server:
            agent = AgentPeer(server.target, "a1")
            await agent.connect()
            build = await submit(server)
            job = await agent.take_job()
            # Its reports applied: a JobAccepted applied after the cancel would send the
            # gentle stop again, by design (lifecycle.stop_again_if_alive).
            await settled(server, build.build_id, jobs=1)
            gentle = server.stub.Cancel(
                cancel_request(
                    build.build_id,
                    requested_by="alice",
                    reason="slow",
                    grace_period={"seconds": 60},
                ),
                timeout=WAIT,
            )
            assert (await gentle.read()).accepted.cancel.escalations == []
            await agent.next("stop_job")
            forced = server.stub.Cancel(
                cancel_request(build.build_id, requested_by="bob", reason="hung", force=True),
                timeout=WAIT,
            )
            assert_first_cancel_kept((await forced.read()).accepted.cancel)
            stop = (await agent.next("stop_job")).stop_job
            assert stop.grace_period.ToNanoseconds() == 0 and stop.skip_cleanup
            assert_first_cancel_kept((await get(server, build.build_id)).cancel)
            agent.stopped(build.build_id, job.job_id, graceful=False)
            assert_first_cancel_kept((await rest_of(forced))[-1].finished.cancel)
            await agent.leave()
            # The record committed with the CANCELED write: there once the stream ended.
            [record] = await server.app.store.audit_records([build.build_id])
            assert (record.requested_by, record.force, record.grace_period) == (
                "alice",
                False,
                60,
            )
            assert [(e.requested_by, e.reason, e.force) for e in record.escalations] == [
                ("bob", "hung", True)
            ]
            body = (await receiver.next_request(WAIT)).json()["record"]
            assert (body["requested_by"], body["force"]) == ("alice", False)
            assert [(e["requested_by"], e["force"]) for e in body["escalations"]] == [("bob", True)]
        async with running_server(tmp_path / "data") as restarted:
            assert_first_cancel_kept((await get(restarted, build.build_id)).cancel)
    finally:
        await receiver.close()
