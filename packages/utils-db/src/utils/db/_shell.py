"""What :class:`Database` and :class:`AsyncDatabase` share outright: options, repr, stats."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from utils.db._core import DatabaseCore, default_rng
from utils.db.settings import PostgresSettings

__all__ = ["BaseDatabase"]


class BaseDatabase:
    """The constructor and the I/O-free methods of both shells."""

    _core: DatabaseCore
    _pool: Any

    def __init__(
        self,
        dsn_or_settings: str | PostgresSettings,
        *,
        min_size: int | None = None,
        max_size: int | None = None,
        timeout: float | None = None,
        max_idle: float | None = None,
        max_lifetime: float | None = None,
        application_name: str | None = None,
        pgbouncer: bool | None = None,
        statement_timeout: float | None = None,
        name: str | None = None,
        probe_interval: float = 0.25,
        retry_backoff: float = 0.02,
        retry_cap: float = 1.0,
        rng: Callable[[], float] = default_rng,
    ) -> None:
        self._core = DatabaseCore(
            dsn_or_settings,
            owner=self._owner,
            min_size=min_size,
            max_size=max_size,
            timeout=timeout,
            max_idle=max_idle,
            max_lifetime=max_lifetime,
            application_name=application_name,
            pgbouncer=pgbouncer,
            statement_timeout=statement_timeout,
            name=name,
            probe_interval=probe_interval,
            retry_backoff=retry_backoff,
            retry_cap=retry_cap,
            rng=rng,
        )
        self._pool = self._new_pool(self._core)

    @staticmethod
    def _owner() -> object:  # pragma: no cover - each shell defines its own
        raise NotImplementedError

    def _new_pool(self, core: DatabaseCore) -> Any:  # pragma: no cover - each shell's own
        raise NotImplementedError

    @property
    def name(self) -> str:
        """The ``db`` tag of this database's metrics and logs.

        Example:
            >>> from utils.db import Database
            >>> Database("postgresql://db/app").name
            'app'
        """
        return self._core.name

    def stats(self) -> dict[str, int]:
        """psycopg_pool's statistics (not a coroutine); also reports the ``db.pool_*`` gauges.

        Example:
            >>> from utils.db import Database
            >>> Database("postgresql://db/app").stats()["pool_max"]
            10
        """
        return self._core.report_stats(self._pool.get_stats())

    def __repr__(self) -> str:
        state = "closed" if self._pool.closed else "open"
        return f"<{type(self).__name__} {self._core!r} {state}>"
