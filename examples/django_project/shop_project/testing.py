"""``python manage.py test`` with a test database and a cache namespace of the run's own.

Django's runner creates ``test_<NAME>``; two runs at once (two CI jobs, two developers on
one server) would drop each other's database. This runner names the test databases and the
cache's Redis namespace with a random token, and clears that namespace at the end. It also
closes database connections after each request (``CONN_MAX_AGE`` 0), because the test
servers run every request in a new thread.
"""

from __future__ import annotations

import secrets
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import connections
from django.test.runner import DiscoverRunner
from django.test.utils import override_settings

from utils.cache.django import shutdown

__all__ = ["ShopTestRunner"]


class ShopTestRunner(DiscoverRunner):
    """Django's runner, isolated: ``test_shop_<token>`` databases, ``shop-test-<token>`` keys."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.token = secrets.token_hex(4)
        self._cache_settings: override_settings | None = None

    def setup_test_environment(self, **kwargs: Any) -> None:
        super().setup_test_environment(**kwargs)
        caches = {alias: dict(entry) for alias, entry in settings.CACHES.items()}
        for alias, entry in caches.items():
            options = dict(entry.get("OPTIONS", {}))
            options["namespace"] = f"{options.get('namespace', alias)}-test-{self.token}"
            entry["OPTIONS"] = options
        self._cache_settings = override_settings(CACHES=caches)
        self._cache_settings.enable()  # resets the cache handler: the next use sees these

    def teardown_test_environment(self, **kwargs: Any) -> None:
        cache.clear()  # the namespace only (SCAN + UNLINK), never the whole Redis database
        shutdown()  # close the Redis clients and the invalidation subscriber thread
        if self._cache_settings is not None:
            self._cache_settings.disable()
        super().teardown_test_environment(**kwargs)

    def setup_databases(self, **kwargs: Any) -> Any:
        for alias in connections:
            entry = connections[alias].settings_dict
            entry["TEST"] = {**entry.get("TEST", {}), "NAME": f"test_shop_{self.token}"}
            # The tests' WSGI servers run each request in a thread of its own: a connection
            # kept open for reuse would outlive its thread and block DROP DATABASE at the end.
            entry["CONN_MAX_AGE"] = 0
        return super().setup_databases(**kwargs)

    def teardown_databases(self, old_config: Any, **kwargs: Any) -> None:
        from shop_project.health import close_checks

        close_checks()  # the probe's pool holds a connection to the test database
        super().teardown_databases(old_config, **kwargs)
