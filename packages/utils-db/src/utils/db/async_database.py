"""``AsyncDatabase``: the asyncio twin of :class:`~utils.db.Database` (same names, same semantics).

Example:
    >>> from utils.db import AsyncDatabase
    >>> async def main() -> None:  # doctest: +SKIP
    ...     async with AsyncDatabase(DSN) as db:
    ...         print(await db.fetch_val("select 1"))
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from time import perf_counter
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, overload

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool, PoolClosed, PoolTimeout

from utils.core.validate import positive_int
from utils.db import _conn, _listen, _sql
from utils.db._core import DatabaseCore, Isolation
from utils.db._shell import BaseDatabase
from utils.db._types import Notification, Params, Query, Row, T, Table
from utils.db.errors import DeadlockError, RecordNotFoundError, SerializationError

__all__ = ["AsyncDatabase"]

P = ParamSpec("P")
R = TypeVar("R")


def _task() -> object:
    return asyncio.current_task()


class AsyncDatabase(BaseDatabase):
    """A PostgreSQL database behind psycopg_pool's ``AsyncConnectionPool``.

    Takes the arguments of :class:`~utils.db.Database`; every method is a coroutine (or an
    async iterator / async context manager) with the same name and meaning. A transaction
    belongs to the task that opened it: other tasks (even ones it created) use their own
    connections.

    Example:
        >>> AsyncDatabase("host=db.internal dbname=app password=s3cret")
        <AsyncDatabase db.internal/app pool=1..10 closed>
    """

    _pool: AsyncConnectionPool[_conn.AsyncPooledConnection]

    _owner = staticmethod(_task)

    def _new_pool(self, core: DatabaseCore) -> AsyncConnectionPool[_conn.AsyncPooledConnection]:
        return AsyncConnectionPool(
            core.conninfo,
            connection_class=_conn.AsyncPooledConnection,
            check=_conn.acheck,
            **core.pool_options(),
        )

    async def open(self, *, wait: bool = False) -> AsyncDatabase:
        """Open the pool (``wait=True``: until ``min_size`` connections are made).

        Example:
            >>> AsyncDatabase("postgresql://db/app").open  # doctest: +ELLIPSIS
            <bound method AsyncDatabase.open of <AsyncDatabase ...>>
        """
        if self._pool.closed:
            await self._pool.open(wait=wait, timeout=self._core.timeout)
        return self

    async def close(self) -> None:
        """Close the pool and its connections.

        Example:
            >>> import asyncio
            >>> asyncio.run(AsyncDatabase("postgresql://db/app").close())
        """
        await self._pool.close()

    async def __aenter__(self) -> AsyncDatabase:
        return await self.open()

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def _checkout(self) -> _conn.AsyncPooledConnection:
        core = self._core
        waited = core.checkout_timeout()
        try:
            return await self._pool.getconn(waited)
        except PoolClosed as exc:
            raise core.pool_closed() from exc
        except PoolTimeout as exc:
            raise core.pool_timeout(waited, self._pool.get_stats()) from exc

    @asynccontextmanager
    async def _session(self, op: str, text: object) -> AsyncIterator[_conn.AsyncPooledConnection]:
        core = self._core
        state = core.joined()
        started = perf_counter()
        conn = await self._checkout() if state is None else state.conn
        try:
            if (setup := core.setup(conn, text, state, op)) is not None:
                await conn.execute(setup)
            yield conn
        except psycopg.Error as exc:
            raise core.failed(exc, op) from exc
        finally:
            if state is None:
                if conn.utils_dirty:
                    await _conn.areset(conn)
                await self._pool.putconn(conn)
        core.done(op, started)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """The raw psycopg async connection (the transaction's, inside :meth:`transaction`).

        Example:
            >>> async with db.connection() as conn:  # doctest: +SKIP
            ...     await conn.execute("select 1")
        """
        async with self._session("execute", b"") as conn:
            yield conn

    @overload
    async def fetch_one(self, sql: Query, params: Params = None) -> Row | None: ...
    @overload
    async def fetch_one(self, sql: Query, params: Params = None, *, as_: type[T]) -> T | None: ...
    async def fetch_one(self, sql: Query, params: Params = None, *, as_: Any = None) -> Any:
        """The first row (a dict, or an ``as_`` instance), None when there is none.

        Example:
            >>> await db.fetch_one("select 1 as one")  # doctest: +SKIP
            {'one': 1}
        """
        async with self._session("select", sql) as conn:
            cursor = await conn.cursor(row_factory=self._core.rows(as_)).execute(sql, params)
            return await cursor.fetchone()

    @overload
    async def fetch_required(self, sql: Query, params: Params = None) -> Row: ...
    @overload
    async def fetch_required(self, sql: Query, params: Params = None, *, as_: type[T]) -> T: ...
    async def fetch_required(self, sql: Query, params: Params = None, *, as_: Any = None) -> Any:
        """Like :meth:`fetch_one`; no row raises :class:`~utils.db.RecordNotFoundError`.

        Example:
            >>> await db.fetch_required("select 1 where false")  # doctest: +SKIP
            Traceback (most recent call last):
            utils.db.errors.RecordNotFoundError: the query returned no row
        """
        found = await self.fetch_one(sql, params, as_=as_)
        if found is not None:
            return found
        raise RecordNotFoundError("the query returned no row", details={"db": self._core.name})

    @overload
    async def fetch_all(self, sql: Query, params: Params = None) -> list[Row]: ...
    @overload
    async def fetch_all(self, sql: Query, params: Params = None, *, as_: type[T]) -> list[T]: ...
    async def fetch_all(self, sql: Query, params: Params = None, *, as_: Any = None) -> Any:
        """Every row, as dicts or ``as_`` instances.

        Example:
            >>> await db.fetch_all("select generate_series(1, 2) as n")  # doctest: +SKIP
            [{'n': 1}, {'n': 2}]
        """
        async with self._session("select", sql) as conn:
            cursor = await conn.cursor(row_factory=self._core.rows(as_)).execute(sql, params)
            return await cursor.fetchall()

    async def fetch_val(self, sql: Query, params: Params = None) -> Any:
        """The first column of the first row (None when there is no row).

        Example:
            >>> await db.fetch_val("select count(*) from users")  # doctest: +SKIP
            3
        """
        async with self._session("select", sql) as conn:
            cursor = await conn.execute(sql, params)
            row = await cursor.fetchone()
        return row[0] if row is not None else None

    async def execute(self, sql: Query, params: Params = None) -> int:
        """Run a statement; return the rows it affected (``rowcount``).

        Example:
            >>> await db.execute("update users set active = true")  # doctest: +SKIP
            3
        """
        async with self._session("execute", sql) as conn:
            cursor = await conn.execute(sql, params)
        return cursor.rowcount

    async def execute_many(
        self, sql: Query, params_seq: Iterable[Sequence[Any] | Mapping[str, Any]]
    ) -> int:
        """Run a statement once per parameter set (pipelined); return the rows affected.

        Example:
            >>> await db.execute_many("insert into t (x) values (%s)", [[1], [2]])  # doctest: +SKIP
            2
        """
        async with self._session("execute_many", sql) as conn:
            cursor = conn.cursor()
            await cursor.executemany(sql, params_seq)
        return cursor.rowcount

    @overload
    def stream(
        self, sql: Query, params: Params = None, *, batch_size: int = 1000
    ) -> AsyncIterator[Row]: ...
    @overload
    def stream(
        self, sql: Query, params: Params = None, *, batch_size: int = 1000, as_: type[T]
    ) -> AsyncIterator[T]: ...
    async def stream(
        self, sql: Query, params: Params = None, *, batch_size: int = 1000, as_: Any = None
    ) -> AsyncIterator[Any]:
        """Rows one by one through a server-side cursor (an async iterator; lazy).

        Holds a connection and a transaction until the iteration ends (see ``Database``).

        Example:
            >>> async for row in db.stream("select * from events"):  # doctest: +SKIP
            ...     handle(row)
        """
        positive_int(batch_size, "batch_size")
        async with self.transaction(), self._session("stream", sql) as conn:
            cursor = conn.cursor(self._core.cursor_name(), row_factory=self._core.rows(as_))
            async with cursor:
                cursor.itersize = batch_size
                await cursor.execute(sql, params)
                async for row in cursor:
                    yield row

    @asynccontextmanager
    async def transaction(
        self, isolation: Isolation | None = None, readonly: bool = False
    ) -> AsyncIterator[None]:
        """A transaction of the current task; nested blocks are savepoints.

        Example:
            >>> async with db.transaction():  # doctest: +SKIP
            ...     await db.execute("delete from carts where user_id = %s", [7])
        """
        async with self._session("transaction", None) as conn:
            core = self._core
            frame = core.begin(conn, core.joined(), isolation, readonly)
            await conn.execute(frame.begin)
            try:
                yield
            except BaseException:
                frame.close()
                with suppress(psycopg.Error):  # a dead connection rolled back already
                    await conn.execute(frame.rollback)
                raise
            frame.close()
            try:
                await conn.execute(frame.commit)
            except psycopg.Error as exc:
                raise core.commit_failed(exc, frame) from exc

    async def run_in_transaction(
        self,
        fn: Callable[[], Awaitable[R]],
        *,
        isolation: Isolation | None = "serializable",
        attempts: int = 5,
    ) -> R:
        """Await ``fn()`` in a transaction, re-run on conflicts (see ``Database``).

        Example:
            >>> await db.run_in_transaction(transfer, attempts=10)  # doctest: +SKIP
        """
        return await self._run(fn, (), {}, isolation, attempts)

    async def _run(
        self,
        fn: Callable[..., Awaitable[R]],
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        isolation: Isolation | None,
        attempts: int,
    ) -> R:
        plan = self._core.retry_plan(attempts, isolation)
        while True:
            try:
                async with self.transaction(isolation):
                    return await fn(*args, **kwargs)
            except (SerializationError, DeadlockError) as exc:
                await asyncio.sleep(plan.backoff(exc))

    def retrying(
        self, *, isolation: Isolation | None = "serializable", attempts: int = 5
    ) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
        """Decorator for coroutine functions: each call runs as :meth:`run_in_transaction`.

        Example:
            >>> @db.retrying(attempts=10)  # doctest: +SKIP
            ... async def book(seat: int) -> None:
            ...     await db.execute("update seats set taken = true where id = %s", [seat])
        """
        positive_int(attempts, "attempts")

        def wrap(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
            async def retried(*args: P.args, **kwargs: P.kwargs) -> R:
                return await self._run(fn, args, kwargs, isolation, attempts)

            return functools.wraps(fn)(retried)

        return wrap

    async def insert(
        self, table: Table, row: Mapping[str, Any], *, returning: str | Sequence[str] | None = None
    ) -> Row | None:
        """Insert one row; return the ``returning`` columns as a dict (else None).

        Example:
            >>> await db.insert("users", {"name": "ann"}, returning="id")  # doctest: +SKIP
            {'id': 1}
        """
        return await self._write("insert", *_sql.insert_sql(table, row, returning), returning)

    async def upsert(
        self,
        table: Table,
        row: Mapping[str, Any],
        *,
        conflict: str | Sequence[str],
        update: Sequence[str] | None = None,
        returning: str | Sequence[str] | None = None,
    ) -> Row | None:
        """Insert, or update the existing row on a ``conflict`` of those columns.

        Example:
            >>> await db.upsert("users", {"email": "a@x", "name": "Ann"}, conflict="email")  # doctest: +SKIP
        """
        built = _sql.upsert_sql(table, row, conflict, update, returning)
        return await self._write("upsert", *built, returning)

    async def _write(
        self, op: str, query: sql.Composed, values: list[Any], returning: Any
    ) -> Row | None:
        async with self._session(op, None) as conn:
            cursor = conn.cursor(row_factory=self._core.rows(None))
            await cursor.execute(query, values)
            return None if returning is None else await cursor.fetchone()

    async def copy_records(
        self,
        table: Table,
        columns: Sequence[str],
        rows: Iterable[Sequence[Any]] | AsyncIterator[Sequence[Any]],
    ) -> int:
        """Bulk-load ``rows`` (an iterable or async iterable) with binary COPY; return the count.

        Example:
            >>> await db.copy_records("points", ["x", "y"], [(1, 1), (2, 4)])  # doctest: +SKIP
            2
        """
        probe, statement = _sql.copy_in_sql(table, columns)
        async with self._session("copy_in", None) as conn:
            cursor = conn.cursor()
            types = self._core.types_of(await cursor.execute(probe))
            async with cursor.copy(statement) as copy:
                copy.set_types(types)
                return await _write_rows(copy, rows)

    async def copy_out(self, query: str, params: Params = None) -> AsyncIterator[tuple[Any, ...]]:
        """The rows of ``query`` through binary ``COPY TO STDOUT`` (an async iterator).

        Example:
            >>> [row async for row in db.copy_out("select 1, 'a'")]  # doctest: +SKIP
            [(1, 'a')]
        """
        probe, statement = _sql.copy_out_sql(query)
        async with self._session("copy_out", query) as conn:
            cursor = conn.cursor()
            types = self._core.types_of(await cursor.execute(probe, params))
            async with cursor.copy(statement, params) as copy:
                copy.set_types(types)
                async for row in copy.rows():
                    yield row

    @asynccontextmanager
    async def advisory_lock(
        self, key: int | str, *, timeout: float | None = None
    ) -> AsyncIterator[None]:
        """Hold a session advisory lock on a dedicated connection (see ``Database``).

        Example:
            >>> async with db.advisory_lock("nightly-report", timeout=1):  # doctest: +SKIP
            ...     await build_report()
        """
        plan = self._core.lock_plan(key, timeout)
        try:
            conn = await psycopg.AsyncConnection.connect(self._core.conninfo, **plan.connect)
            try:
                for statement, params in plan.acquire:
                    await conn.execute(statement, params)
            except BaseException:
                await conn.close()
                raise
        except psycopg.Error as exc:
            raise self._core.lock_failed(exc, plan) from exc
        try:
            yield
        finally:
            async with conn:
                with suppress(psycopg.Error):  # a lost session released the lock already
                    await conn.execute(plan.release, plan.params)

    def listen(self, channel: str) -> AsyncIterator[Notification]:
        """Notifications sent to ``channel`` as an async iterator; reconnects after restarts.

        Example:
            >>> async for note in db.listen("jobs"):  # doctest: +SKIP
            ...     print(note.payload)
        """
        return _listen.alisten(self._core, channel)

    async def notify(self, channel: str, payload: str = "") -> None:
        """Send ``payload`` to ``channel`` (inside a transaction: delivered on commit).

        Example:
            >>> await db.notify("jobs", "42")  # doctest: +SKIP
        """
        async with self._session("notify", None) as conn:
            await conn.execute("SELECT pg_notify(%s, %s)", [channel, payload])

    async def health(self) -> dict[str, Any]:
        """One round trip: ``{"ok": True, "server_version": ..., "seconds": ...}`` or raises.

        Example:
            >>> (await db.health())["ok"]  # doctest: +SKIP
            True
        """
        started = perf_counter()
        async with self._session("health", None) as conn:
            cursor = await conn.execute(self._core.HEALTH_SQL)
            version = await cursor.fetchone()
        return self._core.health_report(version, started)


async def _write_rows(
    copy: Any, rows: Iterable[Sequence[Any]] | AsyncIterator[Sequence[Any]]
) -> int:
    sent = 0
    if isinstance(rows, AsyncIterator):
        async for row in rows:
            await copy.write_row(row)
            sent += 1
        return sent
    for row in rows:
        await copy.write_row(row)
        sent += 1
    return sent
