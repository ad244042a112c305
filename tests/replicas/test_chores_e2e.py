"""Work of the whole database is done once, not once per replica: housekeeping runs
on the replica holding shard 0 and moves with that lease, and a webhook notification
goes out from the owner of its build only."""

from __future__ import annotations

import collections
from pathlib import Path

import grpc
import pytest

from tests.replicas.replicas import (
    SHARDS,
    StartTwo,
    Stub,
    cancel,
    query,
    start_replica,
    unrunnable,
    until_shares,
    until_value,
)
from tests.support.processes import ServerProc, until
from tests.support.webhook_receiver import Receiver

TAKES_HOUSEKEEPING = "housekeeping runs on this replica"
HOLDER_OF_SHARD_0 = (
    "SELECT r.name FROM shard_leases l JOIN replicas r ON r.instance_id = l.owner WHERE l.shard = 0"
)


async def _cancelled_builds(replica: ServerProc, count: int) -> list[str]:
    """`count` builds submitted to `replica` and cancelled there (finished at once)."""
    async with grpc.aio.insecure_channel(replica.target) as channel:
        stub = Stub(channel)
        builds = [(await stub.SubmitBuild(unrunnable())).build.build_id for _ in range(count)]
        for build_id in builds:
            await cancel(stub, build_id, "done with it")
    return builds


def _log(replica: ServerProc) -> str:
    return (replica.data_dir / "server.log").read_text()


@pytest.mark.timeout(180)
async def test_housekeeping_runs_on_the_replica_holding_shard_0_and_moves_with_it(
    postgres_url: str, two_replicas: StartTwo
) -> None:
    # A pass every half second keeps one finished build: the purges are seen at once.
    a, b = await two_replicas(
        postgres_url, "--housekeeping-interval", "0.5", "--retain-builds-max", "1"
    )
    [[holder_name]] = await query(postgres_url, HOLDER_OF_SHARD_0)
    holder, other = (a, b) if holder_name == a.target else (b, a)
    for replica in (a, b):
        await _cancelled_builds(replica, 4)
    await until_value(postgres_url, "SELECT count(*) FROM builds", 1)
    # The logs reach their files through the test's pipes: waited for, not read once.
    await until(lambda: "purged" in _log(holder), 30, "the holder's purge in its log")
    assert TAKES_HOUSEKEEPING in _log(holder)
    assert TAKES_HOUSEKEEPING not in _log(other) and "purged" not in _log(other)
    # The holder leaves: shard 0, and the housekeeping with it, goes to the other one.
    assert await holder.stop() == 0
    await until_shares(postgres_url, {other.target: SHARDS})
    await until(lambda: TAKES_HOUSEKEEPING in _log(other), 30, "housekeeping to move")
    await _cancelled_builds(other, 3)
    await until_value(postgres_url, "SELECT count(*) FROM builds", 1)
    await until(lambda: "purged" in _log(other), 30, "the new holder's purge in its log")


@pytest.mark.timeout(240)
async def test_a_webhook_is_sent_by_the_owner_of_its_build_only(
    tmp_path: Path, postgres_url: str, replicas: list[ServerProc]
) -> None:
    receiver = await Receiver(503).start()
    try:
        await _parked_then_shared(tmp_path, postgres_url, replicas, receiver)
    finally:
        await receiver.close()


async def _parked_then_shared(
    tmp_path: Path, url: str, replicas: list[ServerProc], receiver: Receiver
) -> None:
    # One try per delivery and no breaker: a failed one is parked at once.
    flags = ("--webhook-url", receiver.url, "--webhook-max-attempts", "1")
    flags += ("--webhook-breaker-threshold", "1000")
    a = await start_replica(tmp_path, "a", url, *flags)
    replicas.append(a)
    await until_shares(url, {a.target: SHARDS})
    await _cancelled_builds(a, 8)
    # Each build.canceled failed once: FAILED in the outbox, parked in a's memory.
    failed = "SELECT count(*) FROM webhook_deliveries WHERE state = 'FAILED'"
    await until_value(url, failed, 8)
    receiver.status = 200
    first = len(receiver.requests)
    b = await start_replica(tmp_path, "b", url, *flags)
    replicas.append(b)
    await until_shares(url, {a.target: SHARDS // 2, b.target: SHARDS // 2})
    # b sent the waiting ones of the shards it took. a's parked ones go out again at
    # a's next answered delivery: those of the shards a still holds, no others.
    [trigger] = await _cancelled_builds(a, 1)
    delivered = "SELECT count(*) FROM webhook_deliveries WHERE state = 'DELIVERED'"
    await until_value(url, f"{delivered} AND delivery_id LIKE '%{trigger}%'", 1)
    # One worker per endpoint, in order: once this one arrived, a sent what it queued.
    [sentinel] = await _cancelled_builds(a, 1)
    while sentinel not in (await receiver.next_request(30)).body.decode():
        pass
    await until_value(url, delivered, 10)
    sent = collections.Counter(
        request.headers["x-buildcontrol-delivery"] for request in receiver.requests[first:]
    )
    ids = {row[0] for row in await query(url, "SELECT delivery_id FROM webhook_deliveries")}
    assert set(sent) == ids
    assert set(sent.values()) == {1}, f"sent twice: {[d for d, n in sent.items() if n > 1]}"
