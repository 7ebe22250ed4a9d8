"""``PostgresSettings``: a database configured from ``UTILS_PG_*`` environment variables.

Either one DSN (``UTILS_PG_DSN``, a URL or key=value string, kept as a
:class:`~utils.core.Secret`) or its parts (``UTILS_PG_HOST``, ``UTILS_PG_PORT``,
``UTILS_PG_USER``, ``UTILS_PG_PASSWORD``, ``UTILS_PG_DBNAME``); parts given next to a DSN
override it. Pool options (``UTILS_PG_MAX_SIZE``, ``UTILS_PG_TIMEOUT``, ...) feed
:class:`~utils.db.Database` unless the constructor is given them explicitly.

Example:
    >>> settings = PostgresSettings.from_env(
    ...     {"UTILS_PG_DSN": "postgresql://app:s3cret@db.internal/app", "UTILS_PG_MAX_SIZE": "20"}
    ... )
    >>> settings.max_size
    20
    >>> "s3cret" in repr(settings)
    False
"""

from __future__ import annotations

from utils.core import Secret, Settings

__all__ = ["PostgresSettings"]


class PostgresSettings(Settings, env_prefix="UTILS_PG_"):
    """Where the database is and how the pool behaves (environment prefix ``UTILS_PG_``).

    Example:
        >>> PostgresSettings(host="db", dbname="app", password=Secret("pw")).conninfo()
        'host=db password=pw dbname=app'
    """

    dsn: Secret | None = None
    host: str | None = None
    port: int | None = None
    user: str | None = None
    password: Secret | None = None
    dbname: str | None = None
    application_name: str | None = None
    min_size: int = 1
    max_size: int = 10
    timeout: float = 5.0
    max_idle: float = 300.0
    max_lifetime: float = 1800.0
    statement_timeout: float | None = None
    pgbouncer: bool = False

    def conninfo(self) -> str:
        """The libpq connection string (it contains the password: never log it).

        Example:
            >>> PostgresSettings(dsn=Secret("postgresql://db/app"), port=6432).conninfo()
            'dbname=app host=db port=6432'
        """
        from psycopg.conninfo import make_conninfo

        parts = {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password.get_secret_value() if self.password else None,
            "dbname": self.dbname,
        }
        base = self.dsn.get_secret_value() if self.dsn else ""
        return make_conninfo(base, **{key: value for key, value in parts.items() if value})
