from __future__ import annotations

import asyncio
import time

import pytest

from utils.db import AsyncDatabase, Database, DatabaseUnavailableError


def test_reset_rolls_back_an_open_transaction(utils_postgres_url: str) -> None:
    with Database(utils_postgres_url, min_size=1, max_size=1) as db:
        with db.connection() as conn:
            conn.execute("begin")
            conn.execute("create temp table left_open (x int)")
        assert db.fetch_val("select to_regclass('left_open')") is None
        assert db.fetch_val("select 1") == 1


def test_a_connection_that_cannot_be_reset_is_replaced(utils_postgres_url: str) -> None:
    with Database(utils_postgres_url, min_size=1, max_size=1) as db:
        with pytest.raises(DatabaseUnavailableError), db.connection() as conn:
            conn.execute("select pg_terminate_backend(pg_backend_pid())")
        assert db.fetch_val("select 1") == 1


def test_async_reset_and_check(utils_postgres_url: str) -> None:
    async def main() -> None:
        async with AsyncDatabase(
            utils_postgres_url, min_size=2, max_size=2, application_name="utils-db-async-idle"
        ) as db:
            async with db.connection() as conn:
                await conn.execute("begin")
                await conn.execute("set local work_mem = '7MB'")
                await conn.execute("set application_name = 'leaked'")
            assert await db.fetch_val("show application_name") == "utils-db-async-idle"
            with pytest.raises(DatabaseUnavailableError):
                async with db.connection() as conn:
                    await conn.execute("select pg_terminate_backend(pg_backend_pid())")
            await db.open(wait=True)
            async with AsyncDatabase(utils_postgres_url, max_size=1) as admin:
                killed = await admin.fetch_all(
                    # In the select list, not the WHERE clause: there the planner may call it
                    # on rows the name test has not filtered out yet (this very session).
                    "select pid, pg_terminate_backend(pid) from pg_stat_activity "
                    "where application_name = 'utils-db-async-idle'"
                )
                # Until those backends are gone (each try is I/O). Only those: the pool may
                # already be refilling itself with new connections of the same name.
                pids = [row["pid"] for row in killed]
                gone_by = time.monotonic() + 10.0
                while await admin.fetch_val(
                    "select count(*) from pg_stat_activity where pid = any(%s)", [pids]
                ):
                    assert time.monotonic() < gone_by, f"backends {pids} still alive after 10 s"
            for _ in range(4):
                assert await db.fetch_val("select 1") == 1  # dead ones caught on checkout

    asyncio.run(main())


def test_check_of_a_closed_connection(utils_postgres_url: str) -> None:
    from utils.db import _conn

    conn = _conn.PooledConnection.connect(utils_postgres_url, autocommit=True)
    conn.close()
    assert _conn._has_input(conn)
    with pytest.raises(Exception):  # noqa: B017 - psycopg's own error for a closed connection
        _conn.check(conn)
