"""Connections to PostgreSQL: the bounded pool, the one-server lock, and being
unavailable until the database is back.

- **Pool**: `min_size`..`max_size` connections (default 1..8) for the writer and the
  reads; nothing else opens connections, so the server's footprint on the database
  is bounded. The group-commit writer keeps one of them between its batches (held()).
- **Dead peers**: asyncpg does not notice a silently dead connection by itself (a
  cable cut, a host gone: no RST ever comes). Every connection sets TCP keepalives
  and `TCP_USER_TIMEOUT` on its own socket, and asks the server for the same on its
  side (`tcp_keepalives_*`, `tcp_user_timeout`), so a dead peer is noticed within
  about KEEPALIVE_IDLE + KEEPALIVE_INTERVAL * KEEPALIVE_COUNT seconds (11 s), and a
  write to it fails after USER_TIMEOUT_MS; `command_timeout` bounds any statement.
- **One server per database**: a session advisory lock (`pg_try_advisory_lock`) held
  on a dedicated connection outside the pool (the pool's reset on release runs
  `pg_advisory_unlock_all()`). PostgreSQL drops it when that session ends, so a
  crashed server never leaves it behind. A second server is refused at start.
- **Unavailable**: when a connection is lost (the lock's session ends, or a statement
  fails for lack of a connection), the store is marked unavailable: writes fail at
  once with StoreUnavailable (gRPC UNAVAILABLE) and the listener (health) is told. A
  task reconnects with backoff, takes the lock again, replaces the pool's
  connections, and marks the store available again; the server goes on without a
  restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg

from buildcontrol_server import metrics
from buildcontrol_server.store.errors import StoreOpenError, StoreUnavailable

log = logging.getLogger(__name__)

# Session advisory lock of "one server per database": the two-key form, this class
# ("bctl" in ASCII) and a hash of the schema the server uses, so servers on separate
# schemas of one database (search_path in the URL) do not exclude each other.
SERVER_LOCK_CLASS = 0x6263746C
TAKE_LOCK = "SELECT pg_try_advisory_lock($1, hashtext(current_schema()))"
KEEPALIVE_IDLE = 5
KEEPALIVE_INTERVAL = 2
KEEPALIVE_COUNT = 3
USER_TIMEOUT_MS = 10_000
COMMAND_TIMEOUT = 30.0
CONNECT_TIMEOUT = 5.0
# Reconnect attempts start this often and back off to RETRY_MAX.
RETRY_FIRST = 0.1
RETRY_MAX = 1.0


@dataclass(frozen=True)
class PoolSize:
    min_size: int = 1
    max_size: int = 8


def is_connection_loss(error: BaseException) -> bool:
    """True when the error means "no usable connection", not "this statement failed"."""
    return isinstance(
        error,
        (
            OSError,
            TimeoutError,
            asyncpg.InterfaceError,  # includes ConnectionDoesNotExistError
            asyncpg.PostgresConnectionError,  # SQLSTATE class 08
            asyncpg.exceptions.OperatorInterventionError,  # 57: admin shutdown, crash
            asyncpg.exceptions.CannotConnectNowError,
        ),
    )


def _server_settings() -> dict[str, str]:
    return {
        "application_name": f"buildcontrol pid {os.getpid()}",
        "tcp_keepalives_idle": str(KEEPALIVE_IDLE),
        "tcp_keepalives_interval": str(KEEPALIVE_INTERVAL),
        "tcp_keepalives_count": str(KEEPALIVE_COUNT),
        "tcp_user_timeout": str(USER_TIMEOUT_MS),
    }


def tune_socket(connection: Any) -> None:
    """Client-side keepalives on a TCP connection (a Unix socket has no dead peers)."""
    transport = getattr(connection, "_transport", None)
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in (
        ("TCP_KEEPIDLE", KEEPALIVE_IDLE),
        ("TCP_KEEPINTVL", KEEPALIVE_INTERVAL),
        ("TCP_KEEPCNT", KEEPALIVE_COUNT),
        ("TCP_USER_TIMEOUT", USER_TIMEOUT_MS),
    ):
        if hasattr(socket, option):  # Linux has all four; others some
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)


async def _tune_pool_connection(connection: Any) -> None:
    tune_socket(connection)


async def _reset_pool_connection(connection: Any) -> None:
    """Instead of asyncpg's default reset on release (`pg_advisory_unlock_all(); CLOSE
    ALL; UNLISTEN *; RESET ALL`: one more round trip per transaction, ~10 % of a
    cancel's commit here): pool connections never take session locks, LISTEN, SET or
    open cursors, so only a transaction left open by an interrupted caller needs
    undoing."""
    if connection.is_in_transaction():
        await connection.execute("ROLLBACK")


class PostgresConnections:
    def __init__(
        self, url: str, shown_url: str, pool_size: PoolSize, exclusive: bool = True
    ) -> None:
        """`exclusive`: take the one-server lock (off for replicas, which share the
        database; their dedicated connection still tells them when it is lost)."""
        self._url = url
        self._exclusive = exclusive
        self._shown_url = shown_url
        self._pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._lock_connection: asyncpg.Connection | None = None
        self._available = False
        self._closing = False
        self._recovery: asyncio.Task[None] | None = None
        self._listeners: list[Callable[[bool], None]] = []
        # The writer's connection between its batches (held()), and the recovery it
        # was taken after: every recovery counts one (the kept one may be dead).
        self._kept: asyncpg.Connection | None = None
        self._kept_after = 0
        self._recoveries = 0

    @property
    def available(self) -> bool:
        return self._available

    def watch(self, listener: Callable[[bool], None]) -> None:
        self._listeners.append(listener)

    # ---- open / close -------------------------------------------------------------

    async def connect(self) -> asyncpg.Connection:
        """One connection outside the pool (the lock's, and migrations')."""
        connection = await asyncpg.connect(
            self._url,
            timeout=CONNECT_TIMEOUT,
            command_timeout=COMMAND_TIMEOUT,
            server_settings=_server_settings(),
        )
        tune_socket(connection)
        return connection

    async def open(self) -> None:
        """Take the one-server lock, then open the pool. StoreOpenError if refused."""
        await self._take_lock()
        self._pool = await asyncpg.create_pool(
            self._url,
            min_size=self._pool_size.min_size,
            max_size=self._pool_size.max_size,
            timeout=CONNECT_TIMEOUT,
            command_timeout=COMMAND_TIMEOUT,
            server_settings=_server_settings(),
            init=_tune_pool_connection,
            reset=_reset_pool_connection,
        )
        self._set_available(True)

    async def close(self) -> None:
        self._closing = True
        recovery, self._recovery = self._recovery, None
        if recovery is not None:
            recovery.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await recovery
        pool, self._pool = self._pool, None
        if pool is not None:
            await self._give_back(pool)
            await pool.close()
        lock, self._lock_connection = self._lock_connection, None
        if lock is not None and not lock.is_closed():
            # Closing the session releases the advisory lock.
            await lock.close()

    async def _take_lock(self) -> None:
        connection = await self.connect()
        try:
            taken = not self._exclusive or await connection.fetchval(TAKE_LOCK, SERVER_LOCK_CLASS)
            if not taken:
                holder = await self._lock_holder(connection)
                raise StoreOpenError(
                    self._shown_url,
                    f"already open by another buildcontrol server ({holder}); one server"
                    " per database",
                )
        except BaseException:
            await connection.close()
            raise
        connection.add_termination_listener(self._on_lock_session_ended)
        self._lock_connection = connection

    @staticmethod
    async def _lock_holder(connection: asyncpg.Connection) -> str:
        found = await connection.fetchrow(
            "SELECT a.application_name, a.client_addr::text AS addr FROM pg_locks l"
            " JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory'"
            " AND l.granted AND l.database = (SELECT oid FROM pg_database"
            " WHERE datname = current_database())"
            " AND l.objsubid = 2 AND l.classid::bigint = $1"
            " AND l.objid::bigint = hashtext(current_schema())::bigint & 4294967295",
            SERVER_LOCK_CLASS,
        )
        if found is None:
            return "holder unknown"
        return f"{found['application_name'] or 'a client'} at {found['addr'] or 'local socket'}"

    # ---- use ----------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[asyncpg.Connection]:
        """A pool connection; a lost connection becomes StoreUnavailable."""
        pool = self._pool
        if pool is None or not self._available:
            raise StoreUnavailable(self._unavailable_message())
        try:
            # No acquire timeout: asyncpg would wrap every acquire in a task of its own;
            # a wait for a free connection is bounded by the holders' command_timeout,
            # and connecting by the pool's connect timeout.
            async with pool.acquire() as connection:
                yield connection
        except Exception as error:
            if not is_connection_loss(error):
                raise
            self.lost(error)
            raise StoreUnavailable(self._unavailable_message()) from error

    @contextlib.asynccontextmanager
    async def held(self) -> AsyncIterator[asyncpg.Connection]:
        """acquire() for the group-commit writer, whose batches come one at a time: the
        connection stays out of the pool between them (a release and an acquire of
        asyncpg's pool are task hops, ~0.1 ms of a lone cancel's stop path). Given
        back on any error and once the store recovered (the kept one may be dead)."""
        pool = self._pool
        if pool is None or not self._available:
            raise StoreUnavailable(self._unavailable_message())
        try:
            if self._kept is not None and (
                self._kept_after != self._recoveries or self._kept.is_closed()
            ):
                await self._give_back(pool)
            if self._kept is None:
                self._kept = await pool.acquire()
                self._kept_after = self._recoveries
            yield self._kept
        except Exception as error:
            # Whatever it was, the next batch starts on a connection the pool reset.
            await self._give_back(pool)
            if not is_connection_loss(error):
                raise
            self.lost(error)
            raise StoreUnavailable(self._unavailable_message()) from error
        except BaseException:
            # Cancelled, maybe mid-transaction: the pool's reset rolls it back.
            await self._give_back(pool)
            raise

    async def _give_back(self, pool: asyncpg.Pool) -> None:
        kept, self._kept = self._kept, None
        if kept is not None:
            with contextlib.suppress(Exception):  # a dead one is closed by the pool
                await pool.release(kept)

    def _unavailable_message(self) -> str:
        return "the database is unreachable; try again"

    def lost(self, error: BaseException | None) -> None:
        """A connection was lost: unavailable until the recovery task gets one back."""
        if self._closing:
            return
        if self._available:
            log.error("database %s unreachable (%s); reconnecting", self._shown_url, error)
            metrics.STORE_CONNECTION_LOSSES.inc()
            self._set_available(False)
        if self._recovery is None or self._recovery.done():
            self._recovery = asyncio.get_running_loop().create_task(
                self._recover(), name="store-reconnect"
            )

    def _on_lock_session_ended(self, connection: asyncpg.Connection) -> None:
        if connection is self._lock_connection:
            self.lost(None)

    def _set_available(self, available: bool) -> None:
        self._available = available
        metrics.STORE_AVAILABLE.set(1 if available else 0)
        for listener in self._listeners:
            listener(available)

    async def _recover(self) -> None:
        delay = RETRY_FIRST
        while not self._closing:
            try:
                await self._reconnect()
            except Exception as error:
                if not (is_connection_loss(error) or isinstance(error, StoreOpenError)):
                    raise
                log.info("database %s still unreachable: %s", self._shown_url, error)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)
                continue
            log.info("database %s reachable again", self._shown_url)
            self._recoveries += 1
            self._set_available(True)
            return

    async def _reconnect(self) -> None:
        lock = self._lock_connection
        if lock is None or lock.is_closed():
            self._lock_connection = None
            await self._take_lock()
        else:
            await lock.fetchval("SELECT 1")
        pool = self._pool
        if pool is None:
            return
        # Idle connections of the pool may be dead too: replace them all, then prove
        # one new connection works before writes are let through.
        await pool.expire_connections()
        async with pool.acquire(timeout=CONNECT_TIMEOUT) as connection:
            await connection.fetchval("SELECT 1")
