"""Fixtures: the service under uvicorn on loopback, a flaky upstream, real PostgreSQL and Redis.

- PostgreSQL: one schema per test session (``schema.sql`` applied), dropped at the end; the
  service reaches it through ``search_path`` in its DSN.
- Redis: the shared test server, under a namespace of the test's own (keys deleted after);
  outage tests pass the URL of a private server instead.
- The pricing upstream: a raw ASGI app under a second uvicorn, answering from a script.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from orders_service.app import create_app
from orders_service.settings import ServiceSettings
from psycopg import sql
from psycopg.conninfo import make_conninfo
from tests.support import KEY, OTHER_KEY, Service, ServiceFactory, Upstream

from utils.core import Secret
from utils.core.testing import serve_asgi
from utils.db.testing import unique_name

SCHEMA_SQL = Path(__file__).resolve().parent.parent / "schema.sql"


@pytest.fixture(scope="session")
def db_schema(utils_postgres_url: str) -> Iterator[str]:
    """A schema of this test session with the service's tables; dropped at the end."""
    name = unique_name("orders_test")
    with psycopg.connect(utils_postgres_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(name)))
        # Our own file, not input: the one query that is not a literal.
        schema_sql = SCHEMA_SQL.read_text(encoding="utf-8")
        conn.execute(schema_sql)  # pyright: ignore[reportCallIssue, reportArgumentType]
    yield name
    with psycopg.connect(utils_postgres_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def database_url(utils_postgres_url: str, db_schema: str) -> str:
    """The service's DSN: the test server, with the session's schema first in search_path."""
    return make_conninfo(utils_postgres_url, options=f"-c search_path={db_schema}")


@pytest.fixture
def sql_conn(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    """A direct connection, for checking (or changing) what the service stored."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    up = Upstream()
    with serve_asgi(up, lifespan="off") as url:
        up.url = url
        yield up


@pytest.fixture
def namespace(utils_redis_url: str) -> Iterator[str]:
    """A Redis namespace of the test's own; its keys on the shared server go afterwards."""
    name = f"orders-test-{uuid.uuid4().hex[:12]}"
    yield name
    client = redis.Redis.from_url(utils_redis_url)
    try:
        keys = list(client.scan_iter(match=f"{name}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def make_service(
    database_url: str, utils_redis_url: str, upstream: Upstream, namespace: str
) -> ServiceFactory:
    """Start the service under uvicorn; keyword arguments override its settings."""

    @contextmanager
    def start(**overrides: Any) -> Iterator[Service]:
        options: dict[str, Any] = {
            "database_url": Secret(database_url),
            "pricing_url": upstream.url,
            "api_keys": Secret(f"{KEY},{OTHER_KEY}"),
            "redis_url": Secret(utils_redis_url),
            "redis_namespace": namespace,
            "probe_max_age": 0.0,  # every probe runs the checks: no waiting for an expiry
            "rate_limit": 1000.0,
            "rate_limit_burst": 1000,
        }
        options.update(overrides)
        settings = ServiceSettings(**options)
        with serve_asgi(create_app(settings)) as url:
            yield Service(url, settings, upstream)

    return start


@pytest.fixture
def service(make_service: ServiceFactory) -> Iterator[Service]:
    with make_service() as running:
        yield running
