from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from utils.core import ValidationError, deadline
from utils.db import (
    AsyncDatabase,
    CommitUnknownError,
    DatabaseError,
    DeadlockError,
    LockTimeoutError,
    PoolTimeoutError,
    QueryTimeoutError,
    RecordNotFoundError,
    SerializationError,
    TransactionStateError,
    UniqueViolationError,
)
from utils.db.testing import arolled_back, unique_name


@dataclasses.dataclass
class Item:
    id: int
    name: str
    n: int | None


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _db(url: str, **options: Any) -> AsyncDatabase:
    return await AsyncDatabase(url, **{"max_size": 4, "retry_backoff": 0.002, **options}).open()


def test_queries(utils_postgres_url: str) -> None:
    async def main() -> None:
        async with AsyncDatabase(utils_postgres_url, max_size=4) as db:
            table = unique_name("t")
            await db.execute(
                f"create table {table} (id serial primary key, name text unique, n int)"
            )
            try:
                assert await db.fetch_one("select 1 as one") == {"one": 1}
                assert await db.fetch_one("select 1 where false") is None
                assert await db.fetch_val("select 1 where false") is None
                assert (
                    await db.execute_many(
                        f"insert into {table} (name, n) values (%s, %s)", [("a", 1), ("b", 2)]
                    )
                    == 2
                )
                assert await db.fetch_required(
                    f"select * from {table} where name = 'a'", as_=Item
                ) == Item(1, "a", 1)
                with pytest.raises(RecordNotFoundError):
                    await db.fetch_required(f"select * from {table} where false")
                assert [
                    r.name
                    for r in await db.fetch_all(f"select * from {table} order by id", as_=Item)
                ] == ["a", "b"]
                assert await db.insert(table, {"name": "c", "n": 3}, returning="id") == {"id": 3}
                assert await db.upsert(
                    table, {"name": "c", "n": 30}, conflict="name", returning="n"
                ) == {"n": 30}
                assert await db.insert(table, {"name": "d"}) is None
                assert [
                    row["n"]
                    async for row in db.stream(
                        f"select n from {table} where n is not null order by n", batch_size=1
                    )
                ] == [1, 2, 30]
                typed = [
                    row
                    async for row in db.stream(
                        f"select * from {table} order by id limit 1", as_=Item
                    )
                ]
                assert typed == [Item(1, "a", 1)]

                async def rows() -> AsyncIterator[tuple[str, int]]:
                    for i in range(5):
                        yield (f"x{i}", i)

                assert await db.copy_records(table, ["name", "n"], rows()) == 5
                assert await db.copy_records(table, ["name", "n"], [("y", 1)]) == 1
                out = [
                    row
                    async for row in db.copy_out(
                        f"select name, n from {table} where name like 'x%%' order by n"
                    )
                ]
                assert out == [(f"x{i}", i) for i in range(5)]
                with pytest.raises(UniqueViolationError):
                    await db.insert(table, {"name": "a"})
                async with db.connection() as conn:
                    cursor = await conn.execute("select 2")
                    assert await cursor.fetchone() == (2,)
                report = await db.health()
                assert report["ok"]
                assert db.stats()["pool_max"] == 4
                assert "closed" not in repr(db)
            finally:
                await db.execute(f"drop table {table}")

    run(main())


def test_transactions_and_tasks(utils_postgres_url: str) -> None:
    async def main() -> None:
        async with AsyncDatabase(utils_postgres_url, max_size=4) as db:
            async with db.transaction(isolation="serializable", readonly=True):
                mine = await db.fetch_val("select pg_backend_pid()")
                assert await db.fetch_val("show transaction_isolation") == "serializable"
                other = await asyncio.create_task(db.fetch_val("select pg_backend_pid()"))
                assert other != mine  # another task never joins this transaction
                async with db.transaction():
                    assert await db.fetch_val("select pg_backend_pid()") == mine
                with pytest.raises(KeyError):
                    async with db.transaction():
                        raise KeyError
                with pytest.raises(TransactionStateError):
                    await db.run_in_transaction(lambda: db.fetch_val("select 1"))
            async with arolled_back(db):
                await db.execute("create table rolled_back_async (x int)")
            assert await db.fetch_val("select to_regclass('rolled_back_async')") is None

    run(main())


def test_retries(utils_postgres_url: str) -> None:
    async def main() -> None:
        async with AsyncDatabase(utils_postgres_url, retry_backoff=0.001) as db:
            calls: list[int] = []

            @db.retrying(attempts=3)
            async def conflict() -> None:
                calls.append(1)
                await db.execute("select 1")
                raise SerializationError("forced")

            with pytest.raises(SerializationError) as caught:
                await conflict()
            assert len(calls) == 3
            assert "gave up after 3 attempts" in getattr(caught.value, "__notes__", [""])[0]

            async def ok() -> int:
                return 7

            assert await db.run_in_transaction(ok) == 7
            with pytest.raises(ValidationError):
                db.retrying(attempts=0)

    run(main())


def test_serializable_increments_async(utils_postgres_url: str) -> None:
    async def main() -> None:
        async with AsyncDatabase(
            utils_postgres_url, max_size=8, retry_backoff=0.002, retry_cap=0.05
        ) as db:
            table = unique_name("t")
            await db.execute(f"create table {table} (n int)")
            await db.execute(f"insert into {table} values (0)")

            async def increment() -> None:
                value = await db.fetch_val(f"select n from {table}")
                await db.execute(f"update {table} set n = %s", [value + 1])

            async def worker() -> None:
                for _ in range(25):
                    await db.run_in_transaction(increment, attempts=100)

            try:
                await asyncio.gather(*(worker() for _ in range(8)))
                assert await db.fetch_val(f"select n from {table}") == 200
            finally:
                await db.execute(f"drop table {table}")

    run(main())


def test_deadline_pool_timeout_and_commit_unknown(utils_postgres_url: str) -> None:
    async def main() -> None:
        async with AsyncDatabase(utils_postgres_url, min_size=1, max_size=1, timeout=0.2) as db:
            started = time.monotonic()
            with deadline(0.2), pytest.raises(QueryTimeoutError):
                await db.fetch_val("select pg_sleep(5)")
            assert time.monotonic() - started < 0.5
            assert await db.fetch_val("select 1") == 1
            async with db.transaction():
                with pytest.raises(PoolTimeoutError):
                    await asyncio.create_task(db.fetch_val("select 1"))
            await db.execute("drop table if exists commit_unknown_a")
            await db.execute("create table commit_unknown_a (id int)")
            await db.execute(
                "create or replace function commit_unknown_kill_a() returns trigger language plpgsql "
                "as $$ begin perform pg_terminate_backend(pg_backend_pid()); return null; end $$"
            )
            await db.execute(
                "create constraint trigger t after insert on commit_unknown_a deferrable initially "
                "deferred for each row execute function commit_unknown_kill_a()"
            )
            try:
                with pytest.raises(CommitUnknownError):
                    async with db.transaction():
                        await db.execute("insert into commit_unknown_a values (1)")
                assert await db.fetch_val("select 1") == 1
            finally:
                await db.execute("drop table commit_unknown_a")
                await db.execute("drop function commit_unknown_kill_a()")

    run(main())


def test_not_open_and_pgbouncer(utils_postgres_url: str) -> None:
    async def main() -> None:
        db = AsyncDatabase(utils_postgres_url, pgbouncer=True, max_size=1)
        with pytest.raises(DatabaseError, match="not open"):
            await db.fetch_val("select 1")
        async with db:
            for _ in range(8):
                await db.fetch_val("select %s::int", [1])
            assert await db.fetch_val("select count(*) from pg_prepared_statements") == 0

    run(main())


def test_listen_notify_and_lock(utils_postgres_url: str) -> None:
    async def main() -> None:
        async with AsyncDatabase(utils_postgres_url) as db:
            channel = unique_name("chan")
            listener = db.listen(channel)
            received = asyncio.ensure_future(listener.__anext__())
            for _ in range(200):
                await db.notify(channel, "hello")
                done, _ = await asyncio.wait({received}, timeout=0.02)
                if done:
                    break
            note = received.result()
            assert (note.channel, note.payload) == (channel, "hello")
            await listener.aclose()  # type: ignore[attr-defined]
            async with db.advisory_lock("async-key"):
                with pytest.raises(LockTimeoutError):
                    async with db.advisory_lock("async-key", timeout=0.1):
                        pass
            async with db.advisory_lock(12, timeout=1):
                pass

    run(main())


def test_deadlock_retried_async(utils_postgres_url: str) -> None:
    async def main() -> None:
        async with AsyncDatabase(utils_postgres_url, max_size=4, retry_backoff=0.001) as db:
            table = unique_name("t")
            await db.execute(f"create table {table} (name text primary key, n int)")
            await db.execute(f"insert into {table} values ('a', 0), ('b', 0)")
            both_locked = asyncio.Event()
            calls: list[str] = []
            locked: list[str] = []

            async def swap(first: str, second: str) -> None:
                calls.append(first)
                await db.execute(f"update {table} set n = n + 1 where name = %s", [first])
                locked.append(first)
                if len(locked) == 2:  # both first updates are done: now they deadlock
                    both_locked.set()
                await both_locked.wait()
                await db.execute(f"update {table} set n = n + 1 where name = %s", [second])

            try:
                await asyncio.gather(
                    db.run_in_transaction(lambda: swap("a", "b"), isolation="read committed"),
                    db.run_in_transaction(lambda: swap("b", "a"), isolation="read committed"),
                )
                assert len(calls) >= 3  # one of the two was re-run
                assert await db.fetch_val(f"select sum(n) from {table}") == 4
            finally:
                await db.execute(f"drop table {table}")

    run(main())


def test_deadlock_error_class() -> None:
    assert DeadlockError("x").retryable


def test_async_listen_fails_at_once_when_it_never_connected() -> None:
    from utils.db import DatabaseUnavailableError

    async def main() -> None:
        db = AsyncDatabase("postgresql://postgres@127.0.0.1:1/x", timeout=1)
        with pytest.raises(DatabaseUnavailableError):
            await db.listen("jobs").__anext__()

    run(main())
