"""Readiness checks on the clients the application already uses, served by ``/readyz``.

- ``postgres``: one query through a one-connection :class:`~utils.db.Database` pool on the
  database Django uses (:func:`~utils.db.health.postgres_check`). A pool of its own rather
  than Django's connection: a check runs in a thread of its own, where Django would open a
  connection per probe and leave it to the garbage collector.
- ``redis``: a ``PING`` through the Redis client of the ``default`` cache
  (:func:`~utils.cache.health.redis_check` on the backend's tiered cache).

No liveness check touches a dependency: a database outage must make the pods unready, not
restart them all.
"""

from __future__ import annotations

import threading

from django.core.cache import caches
from django.db import connections

from shop_project.config import conninfo_of
from utils.cache.health import redis_check
from utils.core import register_check, unregister_check
from utils.db import Database
from utils.db.health import postgres_check

__all__ = ["CHECKS", "close_checks", "register_checks"]

#: The readiness checks this module registers.
CHECKS = ("postgres", "redis")

_lock = threading.Lock()
_database: list[Database] = []


def register_checks() -> None:
    """Register the ``postgres`` and ``redis`` readiness checks (again: replaces them)."""
    with _lock:
        if not _database:
            entry = connections["default"].settings_dict
            database = Database(
                conninfo_of(entry),
                min_size=1,
                max_size=1,
                timeout=1.0,
                name="health",
                application_name="shop-health",
            )
            _database.append(database.open())
    register_check("postgres", postgres_check(_database[0]), timeout=1.0, replace=True)
    # The backend object is per thread; the tiered cache behind it is the process's one.
    register_check("redis", redis_check(caches["default"].cache), timeout=0.5, replace=True)


def close_checks() -> None:
    """Unregister the checks and close the probe's pool (tests; a clean exit)."""
    for name in CHECKS:
        unregister_check(name)
    with _lock:
        while _database:
            _database.pop().close()
