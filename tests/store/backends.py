"""A store of the backend a path or URL names."""

from __future__ import annotations

from buildcontrol_server.store.base import BuildStore
from buildcontrol_server.store.postgres import PostgresStore
from buildcontrol_server.store.sqlite import SqliteStore


def make_store(store_path: str) -> BuildStore:
    """A store (not yet open) of the backend that `store_path` names."""
    if store_path.startswith("postgresql://"):
        return PostgresStore(store_path)
    return SqliteStore(store_path)
