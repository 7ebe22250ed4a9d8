"""``Database``: the synchronous PostgreSQL client (psycopg 3 + psycopg_pool).

Example:
    >>> from utils.db import Database
    >>> with Database(DSN) as db:  # doctest: +SKIP
    ...     db.execute("create table if not exists users (id serial primary key, name text)")
    ...     db.insert("users", {"name": "ann"}, returning="id")
    ...     db.fetch_one("select name from users where name = %s", ["ann"])
    {'name': 'ann'}
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, overload

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from utils.core.validate import positive_int
from utils.db import _conn, _listen, _sql
from utils.db._core import DatabaseCore, Isolation
from utils.db._shell import BaseDatabase
from utils.db._types import Notification, Params, Query, Row, T, Table
from utils.db.errors import DeadlockError, RecordNotFoundError, SerializationError

__all__ = ["Database"]

P = ParamSpec("P")
R = TypeVar("R")


class Database(BaseDatabase):
    """A PostgreSQL database behind a psycopg_pool connection pool (sync).

    Args:
        dsn_or_settings: A DSN (``postgresql://...`` or ``host=... dbname=...``) or a
            :class:`~utils.db.PostgresSettings`; None-valued options below come from the
            settings, then from the defaults shown.
        min_size: Connections kept open (default 1).
        max_size: Connections at most (default 10).
        timeout: Seconds a call waits for a free connection before
            :class:`~utils.db.PoolTimeoutError` (default 5; capped by the deadline).
        max_idle: Seconds an idle connection above ``min_size`` is kept (default 300).
        max_lifetime: Seconds before a connection is replaced (default 1800).
        application_name: Shown in ``pg_stat_activity``.
        pgbouncer: True behind pgbouncer in transaction mode: no prepared statements.
        statement_timeout: Default ``statement_timeout`` in seconds (None: the server's).
        name: The ``db`` tag of metrics and logs (default: the database name).
        probe_interval: While the database is known to be down, one call per interval
            tries it; the others fail fast with :class:`~utils.db.DatabaseUnavailableError`.
        retry_backoff: First backoff of :meth:`run_in_transaction` (seconds, jittered).
        retry_cap: Largest backoff of :meth:`run_in_transaction`.
        rng: Jitter source (inject a fixed one in tests).

    The pool opens in ``with Database(...) as db:`` (or :meth:`open`), never at import or
    construction. Reads run in autocommit; :meth:`transaction` opens a transaction that every
    ``db.*`` call of the same thread joins.

    Example:
        >>> db = Database("postgresql://app:s3cret@db.internal/app")
        >>> db
        <Database app@db.internal/app pool=1..10 closed>
    """

    _pool: ConnectionPool[_conn.PooledConnection]

    _owner = staticmethod(threading.get_ident)

    def _new_pool(self, core: DatabaseCore) -> ConnectionPool[_conn.PooledConnection]:
        return ConnectionPool(
            core.conninfo,
            connection_class=_conn.PooledConnection,
            check=_conn.check,
            **core.pool_options(),
        )

    # -- life cycle ------------------------------------------------------------------------

    def open(self, *, wait: bool = False) -> Database:
        """Open the pool (``wait=True``: until ``min_size`` connections are made).

        Example:
            >>> Database("postgresql://db/app").open  # doctest: +ELLIPSIS
            <bound method Database.open of <Database ...>>
        """
        if self._pool.closed:
            self._pool.open(wait=wait, timeout=self._core.timeout)
        return self

    def close(self) -> None:
        """Close the pool and its connections.

        Example:
            >>> Database("postgresql://db/app").close()
        """
        self._pool.close()

    def __enter__(self) -> Database:
        return self.open()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- plumbing --------------------------------------------------------------------------

    def _checkout(self) -> _conn.PooledConnection:
        waited = self._core.checkout_timeout()
        try:
            return self._pool.getconn(waited)
        except PoolTimeout as exc:
            raise self._core.pool_timeout(waited, self._pool.get_stats()) from exc
        except PoolClosed as exc:
            raise self._core.pool_closed() from exc

    @contextmanager
    def _session(self, op: str, text: object) -> Iterator[_conn.PooledConnection]:
        core = self._core
        state = core.joined()
        started = time.perf_counter()
        conn = self._checkout() if state is None else state.conn
        try:
            setup = core.setup(conn, text, state, op)
            if setup is not None:
                conn.execute(setup)
            yield conn
        except psycopg.Error as exc:
            raise core.failed(exc, op) from exc
        finally:
            if state is None:
                if conn.utils_dirty:
                    _conn.reset(conn)
                self._pool.putconn(conn)
        core.done(op, started)

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        """The raw psycopg connection (the transaction's, inside :meth:`transaction`).

        Everything it does to the session is undone before the pool reuses it. psycopg
        errors raised inside the block are translated.

        Example:
            >>> with db.connection() as conn:  # doctest: +SKIP
            ...     conn.execute("select 1").fetchone()
            (1,)
        """
        with self._session("execute", b"") as conn:
            yield conn

    # -- queries ---------------------------------------------------------------------------

    @overload
    def fetch_one(self, sql: Query, params: Params = None) -> Row | None: ...
    @overload
    def fetch_one(self, sql: Query, params: Params = None, *, as_: type[T]) -> T | None: ...
    def fetch_one(self, sql: Query, params: Params = None, *, as_: Any = None) -> Any:
        """The first row (a dict, or an ``as_`` instance), None when there is none.

        Example:
            >>> db.fetch_one("select 1 as one")  # doctest: +SKIP
            {'one': 1}
        """
        with self._session("select", sql) as conn:
            cursor = conn.cursor(row_factory=self._core.rows(as_))
            return cursor.execute(sql, params).fetchone()

    @overload
    def fetch_required(self, sql: Query, params: Params = None) -> Row: ...
    @overload
    def fetch_required(self, sql: Query, params: Params = None, *, as_: type[T]) -> T: ...
    def fetch_required(self, sql: Query, params: Params = None, *, as_: Any = None) -> Any:
        """Like :meth:`fetch_one`, but no row raises :class:`~utils.db.RecordNotFoundError`.

        Example:
            >>> db.fetch_required("select 1 where false")  # doctest: +SKIP
            Traceback (most recent call last):
            utils.db.errors.RecordNotFoundError: the query returned no row
        """
        row = self.fetch_one(sql, params, as_=as_)
        if row is None:
            raise RecordNotFoundError("the query returned no row", details={"db": self._core.name})
        return row

    @overload
    def fetch_all(self, sql: Query, params: Params = None) -> list[Row]: ...
    @overload
    def fetch_all(self, sql: Query, params: Params = None, *, as_: type[T]) -> list[T]: ...
    def fetch_all(self, sql: Query, params: Params = None, *, as_: Any = None) -> Any:
        """Every row, as dicts or ``as_`` instances.

        Example:
            >>> db.fetch_all("select generate_series(1, 2) as n")  # doctest: +SKIP
            [{'n': 1}, {'n': 2}]
        """
        with self._session("select", sql) as conn:
            cursor = conn.cursor(row_factory=self._core.rows(as_))
            return cursor.execute(sql, params).fetchall()

    def fetch_val(self, sql: Query, params: Params = None) -> Any:
        """The first column of the first row (None when there is no row).

        Example:
            >>> db.fetch_val("select count(*) from users")  # doctest: +SKIP
            3
        """
        with self._session("select", sql) as conn:
            row = conn.execute(sql, params).fetchone()
        return None if row is None else row[0]

    def execute(self, sql: Query, params: Params = None) -> int:
        """Run a statement; return the rows it affected (``rowcount``).

        Example:
            >>> db.execute("update users set active = true")  # doctest: +SKIP
            3
        """
        with self._session("execute", sql) as conn:
            return conn.execute(sql, params).rowcount

    def execute_many(
        self, sql: Query, params_seq: Iterable[Sequence[Any] | Mapping[str, Any]]
    ) -> int:
        """Run a statement once per parameter set (pipelined); return the rows affected.

        Example:
            >>> db.execute_many("insert into t (x) values (%s)", [[1], [2]])  # doctest: +SKIP
            2
        """
        with self._session("execute_many", sql) as conn:
            cursor = conn.cursor()
            cursor.executemany(sql, params_seq)
            return cursor.rowcount

    @overload
    def stream(
        self, sql: Query, params: Params = None, *, batch_size: int = 1000
    ) -> Iterator[Row]: ...
    @overload
    def stream(
        self, sql: Query, params: Params = None, *, batch_size: int = 1000, as_: type[T]
    ) -> Iterator[T]: ...
    def stream(
        self, sql: Query, params: Params = None, *, batch_size: int = 1000, as_: Any = None
    ) -> Iterator[Any]:
        """Rows one by one through a server-side cursor, ``batch_size`` per round trip.

        Lazy: nothing runs until iteration starts, and the connection (in a transaction: a
        server-side cursor needs one) is held until it ends; close the generator to stop
        early. ``db.*`` calls made while iterating join that transaction, so they commit
        together when the iteration ends.

        Example:
            >>> for row in db.stream("select * from events", batch_size=500):  # doctest: +SKIP
            ...     handle(row)
        """
        positive_int(batch_size, "batch_size")
        with self.transaction(), self._session("stream", sql) as conn:
            name = self._core.cursor_name()
            with conn.cursor(name, row_factory=self._core.rows(as_)) as cursor:
                cursor.itersize = batch_size
                yield from cursor.execute(sql, params)

    # -- transactions ----------------------------------------------------------------------

    @contextmanager
    def transaction(
        self, isolation: Isolation | None = None, readonly: bool = False
    ) -> Iterator[None]:
        """A transaction; nested blocks are savepoints; ``db.*`` calls inside join it.

        Commits when the block ends, rolls back when it raises. A connection lost during
        ``COMMIT`` raises :class:`~utils.db.CommitUnknownError`.

        Example:
            >>> with db.transaction():  # doctest: +SKIP
            ...     db.execute("update accounts set balance = balance - 10 where id = 1")
            ...     db.execute("update accounts set balance = balance + 10 where id = 2")
        """
        with self._session("transaction", None) as conn:
            frame = self._core.begin(conn, self._core.joined(), isolation, readonly)
            conn.execute(frame.begin)
            try:
                yield
            except BaseException:
                frame.close()
                with suppress(psycopg.Error):  # a dead connection rolled back already
                    conn.execute(frame.rollback)
                raise
            frame.close()
            try:
                conn.execute(frame.commit)
            except psycopg.Error as exc:
                raise self._core.commit_failed(exc, frame) from exc

    def run_in_transaction(
        self,
        fn: Callable[[], R],
        *,
        isolation: Isolation | None = "serializable",
        attempts: int = 5,
    ) -> R:
        """Run ``fn()`` in a transaction (SERIALIZABLE by default), re-run on conflicts.

        Serialization failures (40001) and deadlocks (40P01) re-run the whole function in a
        fresh transaction after a jittered backoff, as long as ``attempts`` and the deadline
        allow; then the last error is raised with a note. Anything else is raised at once.
        ``db.*`` calls inside ``fn`` join the transaction; pass arguments with a lambda or
        :func:`functools.partial`.

        Raises:
            TransactionStateError: Called inside a transaction.
            CommitUnknownError: The connection died during COMMIT (never retried).

        Example:
            >>> def transfer() -> None:  # doctest: +SKIP
            ...     db.execute("update accounts set balance = balance - 10 where id = 1")
            ...     db.execute("update accounts set balance = balance + 10 where id = 2")
            >>> db.run_in_transaction(transfer, attempts=10)  # doctest: +SKIP
        """
        return self._run(fn, (), {}, isolation, attempts)

    def _run(
        self,
        fn: Callable[..., R],
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        isolation: Isolation | None,
        attempts: int,
    ) -> R:
        plan = self._core.retry_plan(attempts, isolation)
        while True:
            try:
                with self.transaction(isolation):
                    return fn(*args, **kwargs)
            except (SerializationError, DeadlockError) as exc:
                time.sleep(plan.backoff(exc))

    def retrying(
        self, *, isolation: Isolation | None = "serializable", attempts: int = 5
    ) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """Decorator: every call runs as :meth:`run_in_transaction` with these options.

        Example:
            >>> @db.retrying(attempts=10)  # doctest: +SKIP
            ... def book(seat: int) -> None:
            ...     db.execute("update seats set taken = true where id = %s", [seat])
        """
        positive_int(attempts, "attempts")

        def decorate(fn: Callable[P, R]) -> Callable[P, R]:
            @functools.wraps(fn)
            def run(*args: P.args, **kwargs: P.kwargs) -> R:
                return self._run(fn, args, kwargs, isolation, attempts)

            return run

        return decorate

    # -- helpers ---------------------------------------------------------------------------

    def insert(
        self, table: Table, row: Mapping[str, Any], *, returning: str | Sequence[str] | None = None
    ) -> Row | None:
        """Insert one row; return the ``returning`` columns as a dict (else None).

        Table and column names are quoted identifiers (:mod:`psycopg.sql`), never formatted.

        Example:
            >>> db.insert("users", {"name": "ann"}, returning="id")  # doctest: +SKIP
            {'id': 1}
        """
        query, values = _sql.insert_sql(table, row, returning)
        return self._write("insert", query, values, returning)

    def upsert(
        self,
        table: Table,
        row: Mapping[str, Any],
        *,
        conflict: str | Sequence[str],
        update: Sequence[str] | None = None,
        returning: str | Sequence[str] | None = None,
    ) -> Row | None:
        """Insert, or update the existing row on a ``conflict`` of those columns.

        ``update``: the columns to overwrite (default: every column not in ``conflict``;
        ``[]``: ``DO NOTHING``).

        Example:
            >>> db.upsert("users", {"email": "a@x", "name": "Ann"}, conflict="email")  # doctest: +SKIP
        """
        query, values = _sql.upsert_sql(table, row, conflict, update, returning)
        return self._write("upsert", query, values, returning)

    def _write(
        self, op: str, query: sql.Composed, values: list[Any], returning: Any
    ) -> Row | None:
        with self._session(op, None) as conn:
            cursor = conn.cursor(row_factory=self._core.rows(None)).execute(query, values)
            return cursor.fetchone() if returning is not None else None

    def copy_records(
        self, table: Table, columns: Sequence[str], rows: Iterable[Sequence[Any]]
    ) -> int:
        """Bulk-load ``rows`` with binary ``COPY FROM STDIN``; return how many were sent.

        ``rows`` may be any iterable (a generator, a CSV reader): it is streamed, never held
        in memory.

        Example:
            >>> db.copy_records("points", ["x", "y"], ((i, i * i) for i in range(3)))  # doctest: +SKIP
            3
        """
        probe, statement = _sql.copy_in_sql(table, columns)
        sent = 0
        with self._session("copy_in", None) as conn:
            cursor = conn.cursor()
            types = self._core.types_of(cursor.execute(probe))
            with cursor.copy(statement) as copy:
                copy.set_types(types)
                for sent, row in enumerate(rows, 1):  # noqa: B007 - the count is the result
                    copy.write_row(row)
        return sent

    def copy_out(self, query: str, params: Params = None) -> Iterator[tuple[Any, ...]]:
        """The rows of ``query`` through binary ``COPY TO STDOUT``, as typed tuples (lazy).

        Example:
            >>> list(db.copy_out("select 1, 'a'"))  # doctest: +SKIP
            [(1, 'a')]
        """
        probe, statement = _sql.copy_out_sql(query)
        with self._session("copy_out", query) as conn:
            cursor = conn.cursor()
            types = self._core.types_of(cursor.execute(probe, params))
            with cursor.copy(statement, params) as copy:
                copy.set_types(types)
                yield from copy.rows()

    # -- locks and notifications -----------------------------------------------------------

    @contextmanager
    def advisory_lock(self, key: int | str, *, timeout: float | None = None) -> Iterator[None]:
        """Hold a session advisory lock on a dedicated connection: one holder across processes.

        ``timeout`` (seconds, capped by the deadline): give up with
        :class:`~utils.db.LockTimeoutError`; None waits as long as it takes.

        Example:
            >>> with db.advisory_lock("nightly-report", timeout=1):  # doctest: +SKIP
            ...     build_report()
        """
        plan = self._core.lock_plan(key, timeout)
        try:
            conn = psycopg.connect(self._core.conninfo, **plan.connect)
            try:
                for statement, params in plan.acquire:
                    conn.execute(statement, params)
            except BaseException:
                conn.close()
                raise
        except psycopg.Error as exc:
            raise self._core.lock_failed(exc, plan) from exc
        try:
            yield
        finally:
            with conn, suppress(psycopg.Error):  # a lost session released the lock already
                conn.execute(plan.release, plan.params)

    def listen(self, channel: str) -> Iterator[Notification]:
        """Notifications sent to ``channel``, forever; reconnects after a server restart.

        Runs on a dedicated connection. Notifications sent while it is reconnecting are lost
        (LISTEN/NOTIFY is not a queue). Close the generator to stop listening.

        Example:
            >>> for note in db.listen("jobs"):  # doctest: +SKIP
            ...     print(note.payload)
        """
        return _listen.listen(self._core, channel)

    def notify(self, channel: str, payload: str = "") -> None:
        """Send ``payload`` to ``channel`` (inside a transaction: delivered on commit).

        Example:
            >>> db.notify("jobs", "42")  # doctest: +SKIP
        """
        with self._session("notify", None) as conn:
            conn.execute("SELECT pg_notify(%s, %s)", [channel, payload])

    # -- health ----------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """One round trip: ``{"ok": True, "server_version": ..., "seconds": ...}`` or raises.

        Example:
            >>> db.health()["ok"]  # doctest: +SKIP
            True
        """
        started = time.perf_counter()
        with self._session("health", None) as conn:
            version = conn.execute(self._core.HEALTH_SQL).fetchone()
        return self._core.health_report(version, started)
