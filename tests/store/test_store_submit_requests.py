"""Idempotency keys of SubmitBuild (schema v6), on every backend: stored with their
build in one transaction, found again, and never two builds for one key."""

from __future__ import annotations

import dataclasses

import pytest
from buildcontrol_server.domain.model import SubmitRequest
from buildcontrol_server.store.errors import StoreWriteError
from buildcontrol_server.store.sqlite import SqliteStore

from tests.support.store_samples import submitted


async def test_a_key_is_stored_with_its_build_and_found_again(store: SqliteStore) -> None:
    build, changes = submitted()
    changes.submit_request = SubmitRequest("alice", "k1", "d" * 64, build.build_id)
    await store.commit(changes)
    assert await store.submit_request("alice", "k1") == ("d" * 64, build.build_id)
    assert await store.submit_request("bob", "k1") is None
    assert await store.submit_request("alice", "k2") is None


async def test_a_second_build_for_one_key_is_refused_whole(store: SqliteStore) -> None:
    first, changes = submitted()
    key = SubmitRequest("alice", "k1", "d" * 64, first.build_id)
    changes.submit_request = key
    await store.commit(changes)
    second, again = submitted()
    again.submit_request = dataclasses.replace(key, build_id=second.build_id)
    with pytest.raises(StoreWriteError):
        await store.commit(again)
    # Nothing of the refused change set was written: not the key, not the build.
    assert await store.submit_request("alice", "k1") == ("d" * 64, first.build_id)
    assert await store.get_build(second.build_id) is None
