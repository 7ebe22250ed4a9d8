"""The pooled connection classes, the pool's ``check`` callback and the session reset."""

from __future__ import annotations

import select
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from utils.db._core import RESET_SQL

__all__ = ["AsyncPooledConnection", "PooledConnection", "acheck", "areset", "check", "reset"]


class PooledConnection(psycopg.Connection[Any]):
    """A psycopg connection that remembers what utils.db changed on its session."""

    #: The caller ran something that may change session state: reset before reuse.
    utils_dirty: bool = False
    #: The statement_timeout (ms) utils.db set on the session, None for the default.
    utils_timeout: int | None = None
    #: A poller of the socket, for the cheap checkout check.
    utils_poller: select.poll | None = None


class AsyncPooledConnection(psycopg.AsyncConnection[Any]):
    """The async twin of :class:`PooledConnection`."""

    utils_dirty: bool = False
    utils_timeout: int | None = None
    utils_poller: select.poll | None = None


def _has_input(conn: PooledConnection | AsyncPooledConnection) -> bool:
    """True when an idle connection has bytes waiting: the server closed it or said goodbye.

    An idle connection receives nothing unless the server terminated it (or a stray
    notification arrived), so this costs one ``poll`` instead of a round trip. The poller
    is made once per connection; a closed socket reports ``POLLNVAL`` (also "has input").
    """
    poller = conn.utils_poller
    if poller is None:
        try:
            socket = conn.pgconn.socket
        except psycopg.OperationalError:  # closed: let the round trip say so
            return True
        poller = conn.utils_poller = select.poll()
        poller.register(socket, select.POLLIN)
    return bool(poller.poll(0))


def check(conn: PooledConnection) -> None:
    """Pool ``check``: a round trip only when the socket says something happened."""
    if _has_input(conn):
        ConnectionPool.check_connection(conn)


async def acheck(conn: AsyncPooledConnection) -> None:
    """Async pool ``check``."""
    if _has_input(conn):
        await AsyncConnectionPool.check_connection(conn)


def reset(conn: PooledConnection) -> None:
    """Undo the session changes of a dirty connection before it goes back to the pool.

    Called by the shell in the caller's thread, not as psycopg_pool's ``reset`` callback:
    the pool runs that callback in a worker thread on *every* return, which costs a thread
    hand-off per query. A connection that cannot be reset is closed (the pool replaces it).
    Prepared statements survive (no ``DISCARD ALL``).
    """
    try:
        if conn.pgconn.transaction_status != TransactionStatus.IDLE:
            conn.rollback()
        conn.execute(RESET_SQL)
    except psycopg.Error:
        conn.close()
    conn.utils_dirty = False
    conn.utils_timeout = None


async def areset(conn: AsyncPooledConnection) -> None:
    """The async twin of :func:`reset`."""
    try:
        if conn.pgconn.transaction_status != TransactionStatus.IDLE:
            await conn.rollback()
        await conn.execute(RESET_SQL)
    except psycopg.Error:
        await conn.close()
    conn.utils_dirty = False
    conn.utils_timeout = None
