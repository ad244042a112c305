"""Build the store the server runs on from one setting: the store URL.

- none (no `--store`, no BUILDCONTROL_STORE): SQLite, the embedded default, in
  `buildcontrol.sqlite3` under the data directory;
- `postgresql://USER[:PASSWORD]@HOST[:PORT]/DB[?…]` (or `postgres://`): PostgreSQL.

Nothing outside store/ knows which backend runs: the rest of the server holds a
BuildStore and sees the same errors from both.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

from buildcontrol_server.store.base import BuildStore

if TYPE_CHECKING:
    from buildcontrol_server.store.fencing import Fence
    from buildcontrol_server.store.postgres_tokens import PostgresTokenTable

POSTGRES_SCHEMES = ("postgresql", "postgres")
STORE_ENV = "BUILDCONTROL_STORE"


class StoreUrlError(ValueError):
    """The store URL names no backend this server has."""


def check_url(url: str) -> str:
    """`url` if a backend takes it, else StoreUrlError saying what is accepted."""
    parts = urlsplit(url)
    if parts.scheme not in POSTGRES_SCHEMES:
        # The URL itself is not repeated: it may carry a password.
        scheme = f"scheme {parts.scheme!r}" if parts.scheme else "no scheme"
        raise StoreUrlError(
            f"store URL has {scheme}: expected postgresql://USER@HOST:PORT/DB"
            " (or no --store for SQLite under --data-dir)"
        )
    if not parts.hostname and "host=" not in parts.query:
        raise StoreUrlError("store URL: postgresql://USER@HOST:PORT/DB needs a host")
    return url


def build_store(
    url: str | None,
    database_path: Path,
    sqlite_synchronous: str = "NORMAL",
    fence: Fence | None = None,
) -> BuildStore:
    """The store for `url`, or SQLite at `database_path` (with `sqlite_synchronous`,
    NORMAL or FULL: SqliteStore refuses anything else) when there is none. `fence`:
    one replica of several on PostgreSQL (store/fencing.py)."""
    if fence is not None and not url:
        raise StoreUrlError("--replicas on needs a PostgreSQL store (--store postgresql://…)")
    if not url:
        from buildcontrol_server.store.sqlite import SqliteStore

        return SqliteStore(str(database_path), synchronous=cast(Any, sqlite_synchronous))
    check_url(url)
    from buildcontrol_server.store.postgres import PostgresStore

    return PostgresStore(url, fence=fence)


def token_table(url: str | None) -> PostgresTokenTable | None:
    """The access token table of the database at `url`; None for SQLite, whose
    tokens stay in the tokens file beside the database."""
    if not url:
        return None
    check_url(url)
    from buildcontrol_server.store.postgres import redacted
    from buildcontrol_server.store.postgres_tokens import PostgresTokenTable

    return PostgresTokenTable(url, redacted(url))
