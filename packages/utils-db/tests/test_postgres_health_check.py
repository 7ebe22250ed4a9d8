"""postgres_check(database) against the real server, and an unreachable private port."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterator

import pytest
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from utils.core import ValidationError
from utils.core import health as health_module
from utils.core.health import register_check, run_checks
from utils.core.testing import find_free_port
from utils.db import AsyncDatabase, Database, DatabaseUnavailableError
from utils.db.health import postgres_check

pytestmark = pytest.mark.postgres


@pytest.fixture(autouse=True)
def _clean_registry() -> Iterator[None]:
    before = dict(health_module._state.checks)
    yield
    health_module._state.checks = before


def test_database_and_pool_pass(utils_postgres_url: str) -> None:
    with Database(utils_postgres_url, max_size=2) as db:
        check = postgres_check(db)
        assert not inspect.iscoroutinefunction(check)
        detail = check()
        assert detail.startswith("PostgreSQL ")
        assert "127.0.0.1:5432/test" in str(detail)
    with ConnectionPool(utils_postgres_url, min_size=1, max_size=1, open=True) as pool:
        assert str(postgres_check(pool)()).startswith("PostgreSQL ")


def test_async_database_and_pool_give_async_checks(utils_postgres_url: str) -> None:
    async def scenario() -> list[str]:
        async with AsyncDatabase(utils_postgres_url, max_size=2) as db:
            check = postgres_check(db)
            assert inspect.iscoroutinefunction(check)
            first = await check()
        async with AsyncConnectionPool(
            utils_postgres_url, min_size=1, max_size=1, open=False
        ) as pool:
            second = await postgres_check(pool)()
        return [first, second]

    assert all(detail.startswith("PostgreSQL ") for detail in asyncio.run(scenario()))


def test_unreachable_database_fails_without_showing_the_password() -> None:
    url = f"postgresql://app:hunter2@127.0.0.1:{find_free_port()}/test"
    with Database(url, timeout=0.3) as db:
        with pytest.raises(DatabaseUnavailableError) as caught:
            postgres_check(db)()
        assert "hunter2" not in str(caught.value)
        register_check("postgres", postgres_check(db), timeout=3.0)
        [result] = run_checks(["postgres"], kind="readiness")
    assert not result.ok
    assert "hunter2" not in result.detail
    assert "Error" in result.detail


def test_unreachable_pool_fails() -> None:
    url = f"postgresql://app:hunter2@127.0.0.1:{find_free_port()}/test"
    pool = ConnectionPool(url, min_size=1, max_size=1, timeout=0.3, open=False)
    with pool, pytest.raises(DatabaseUnavailableError) as caught:
        postgres_check(pool)()
    assert "hunter2" not in str(caught.value)
    assert "within 0.30s" in str(caught.value)


def test_anything_else_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"postgres_check needs a utils\.db Database"):
        postgres_check("postgresql://db/app")
