"""PostgreSQL health checks: for the application's own database, and from the environment.

:func:`postgres_check` takes the :class:`~utils.db.Database`, :class:`~utils.db.AsyncDatabase`
or psycopg_pool pool the application already uses and returns a check for
:func:`utils.core.health.register_check` (async for the async ones): one round trip through
that pool, within the check's deadline. While the database is known to be down, a
:class:`~utils.db.Database` fails fast, so a probe storm does not queue on a dead server.

``utils doctor`` runs :func:`postgres_ping`: it reads :class:`~utils.db.PostgresSettings`
from the environment (``UTILS_PG_DSN`` or ``UTILS_PG_HOST``...), opens one connection
(no pool), and reports the server version. It honours the doctor's deadline.

Example:
    >>> postgres_ping()  # doctest: +SKIP
    'PostgreSQL 15.4 at postgres@127.0.0.1:5432/test'
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, overload

from utils.core import ConfigError, ValidationError, clamp_timeout
from utils.db.settings import PostgresSettings

if TYPE_CHECKING:
    from psycopg_pool import AsyncConnectionPool, ConnectionPool

    from utils.db.async_database import AsyncDatabase
    from utils.db.database import Database

__all__ = [
    "NOT_CONFIGURED",
    "check_server",
    "configured_conninfo",
    "postgres_check",
    "postgres_ping",
]


def _conninfo_from_env(environ: Mapping[str, str] | None) -> str | None:
    settings = PostgresSettings.from_env(environ)
    if settings.dsn is None and settings.host is None and settings.dbname is None:
        return None  # nothing says where a database is
    return settings.conninfo()


def configured_conninfo(environ: Mapping[str, str] | None = None) -> str:
    """The connection string configured by ``UTILS_PG_*`` variables.

    Raises:
        ConfigError: Nothing says where the database is.

    Example:
        >>> configured_conninfo({})
        Traceback (most recent call last):
        ...
        utils.core.errors.ConfigError: no database configured: set UTILS_PG_DSN (or UTILS_PG_HOST and UTILS_PG_DBNAME)
    """
    conninfo = _conninfo_from_env(environ)
    if conninfo is None:
        raise ConfigError(
            "no database configured: set UTILS_PG_DSN (or UTILS_PG_HOST and UTILS_PG_DBNAME)"
        )
    return conninfo


def check_server(conninfo: str, timeout: float = 5.0) -> dict[str, Any]:
    """Connect once (no pool) and describe the server; errors are translated.

    Example:
        >>> check_server("postgresql://postgres@127.0.0.1:5432/test")["ok"]  # doctest: +SKIP
        True
    """
    import psycopg

    from utils.db._core import describe_conninfo
    from utils.db._translate import translate

    started = time.perf_counter()
    waited = clamp_timeout(timeout) or 0.0
    try:
        with psycopg.connect(
            conninfo, autocommit=True, connect_timeout=max(1, math.ceil(waited))
        ) as conn:
            row = conn.execute(
                "SELECT current_setting('server_version'), current_database(), pg_is_in_recovery()"
            ).fetchone()
    except psycopg.Error as exc:
        raise translate(exc, operation="health check") from exc
    assert row is not None
    return {
        "ok": True,
        "server": describe_conninfo(conninfo),
        "server_version": row[0],
        "database": row[1],
        "in_recovery": row[2],
        "seconds": round(time.perf_counter() - started, 6),
    }


#: What the check answers when no ``UTILS_PG_*`` variable says where a database is: the
#: package is installed but configured in code (or not used here), so there is nothing to
#: reach — like a ``memory://`` cache.
NOT_CONFIGURED = "not configured: set UTILS_PG_DSN (or UTILS_PG_HOST) to check a database"


def postgres_ping(environ: Mapping[str, str] | None = None) -> str:
    """The ``utils.health`` check: one round trip to the configured database.

    Passes with :data:`NOT_CONFIGURED` when no ``UTILS_PG_*`` variable names a database.

    Example:
        >>> postgres_ping({})
        'not configured: set UTILS_PG_DSN (or UTILS_PG_HOST) to check a database'
    """
    conninfo = _conninfo_from_env(environ)  # a malformed variable raises ConfigError
    if conninfo is None:
        return NOT_CONFIGURED
    report = check_server(conninfo)
    return f"PostgreSQL {report['server_version']} at {report['server']}"


def _detail(report: Mapping[str, Any], started: float) -> str:
    elapsed_ms = (time.perf_counter() - started) * 1000
    return f"PostgreSQL {report['server_version']} at {report['server']} ({elapsed_ms:.1f} ms)"


@overload
def postgres_check(
    database: AsyncDatabase | AsyncConnectionPool[Any],
) -> Callable[[], Awaitable[str]]: ...
@overload
def postgres_check(database: Database | ConnectionPool[Any]) -> Callable[[], str]: ...
@overload
def postgres_check(database: Any) -> Callable[[], str | Awaitable[str]]: ...
def postgres_check(database: Any) -> Callable[[], str | Awaitable[str]]:
    """A health check that runs one query through the application's own database or pool.

    Register it as a readiness check (it is a dependency)::

        register_check("postgres", postgres_check(db), kind="readiness", timeout=1.0)

    Args:
        database: A :class:`~utils.db.Database` or :class:`~utils.db.AsyncDatabase`, or a
            ``psycopg_pool.ConnectionPool`` / ``AsyncConnectionPool``.

    Returns:
        A callable taking no arguments (async for the async kinds) that returns
        ``"PostgreSQL 15.4 at app@db:5432/app (1.2 ms)"`` (never a password) and raises a
        :class:`~utils.db.DatabaseError` (a :class:`~utils.db.DatabaseUnavailableError` when
        the server cannot be reached) when the query fails or the deadline runs out.

    Raises:
        ValidationError: ``database`` is none of the kinds above.

    Example:
        >>> from utils.db import Database
        >>> check = postgres_check(Database("postgresql://postgres@127.0.0.1:5432/test"))
        >>> check()  # doctest: +SKIP
        'PostgreSQL 15.4 at postgres@127.0.0.1:5432/test (1.2 ms)'
    """
    from psycopg_pool import AsyncConnectionPool, ConnectionPool

    from utils.db.async_database import AsyncDatabase
    from utils.db.database import Database

    if isinstance(database, Database):

        def check_database() -> str:
            started = time.perf_counter()
            return _detail(database.health(), started)

        return check_database
    if isinstance(database, AsyncDatabase):

        async def acheck_database() -> str:
            started = time.perf_counter()
            return _detail(await database.health(), started)

        return acheck_database
    if isinstance(database, ConnectionPool):
        return _pool_check(database)
    if isinstance(database, AsyncConnectionPool):
        return _async_pool_check(database)
    raise ValidationError(
        "postgres_check needs a utils.db Database or AsyncDatabase, or a psycopg_pool "
        f"ConnectionPool or AsyncConnectionPool, got {type(database).__name__}",
        details={"name": "database"},
    )


_HEALTH_SQL = "SELECT current_setting('server_version')"


def _pool_error(exc: Exception, server: str, waited: float | None) -> Exception:
    """A psycopg / psycopg_pool error as the :class:`~utils.db.DatabaseError` it means."""
    from psycopg_pool import PoolTimeout

    from utils.db._translate import translate
    from utils.db.errors import PoolTimeoutError

    if isinstance(exc, PoolTimeout):  # the pool could not connect (or is exhausted)
        return PoolTimeoutError(
            f"could not get a connection to {server} within {waited or 0:.2f}s",
            details={"server": server},
        )
    return translate(exc, operation="health check")


def _pool_check(pool: Any) -> Callable[[], str]:
    import psycopg

    from utils.db._core import describe_conninfo

    server = describe_conninfo(pool.conninfo)

    def check_pool() -> str:
        started = time.perf_counter()
        waited = clamp_timeout(pool.timeout, f"health check of {server}")
        try:
            with pool.connection(timeout=waited) as conn:
                row = conn.execute(_HEALTH_SQL).fetchone()
        except psycopg.Error as exc:
            raise _pool_error(exc, server, waited) from exc
        return _detail({"server_version": row[0] if row else "?", "server": server}, started)

    return check_pool


def _async_pool_check(pool: Any) -> Callable[[], Awaitable[str]]:
    import psycopg

    from utils.db._core import describe_conninfo

    server = describe_conninfo(pool.conninfo)

    async def acheck_pool() -> str:
        started = time.perf_counter()
        waited = clamp_timeout(pool.timeout, f"health check of {server}")
        try:
            async with pool.connection(timeout=waited) as conn:
                cursor = await conn.execute(_HEALTH_SQL)
                row = await cursor.fetchone()
        except psycopg.Error as exc:
            raise _pool_error(exc, server, waited) from exc
        return _detail({"server_version": row[0] if row else "?", "server": server}, started)

    return acheck_pool
