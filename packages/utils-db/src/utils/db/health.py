"""The ``postgres`` health check (entry-point group ``utils.health``) and its building block.

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
from collections.abc import Mapping
from typing import Any

from utils.core import ConfigError, clamp_timeout
from utils.db.settings import PostgresSettings

__all__ = ["NOT_CONFIGURED", "check_server", "configured_conninfo", "postgres_ping"]


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
