from __future__ import annotations

import threading
import time

import pytest

from utils.core import InMemorySink, ValidationError, deadline
from utils.db import (
    CommitUnknownError,
    Database,
    DeadlockError,
    SerializationError,
    TransactionStateError,
    UniqueViolationError,
)


def _insert_then_fail(db: Database, table: str) -> None:
    with db.transaction():
        db.insert(table, {"name": "b"})
        raise KeyError


def _insert_twice(db: Database, table: str) -> None:
    with db.transaction():
        db.insert(table, {"name": "inner"})
        db.insert(table, {"name": "outer"})  # fails: only the savepoint is lost


def test_commit_and_rollback(db: Database, table: str) -> None:
    with db.transaction():
        db.insert(table, {"name": "a"})
        assert db.fetch_val("select txid_current_if_assigned() is not null")
    with pytest.raises(KeyError):
        _insert_then_fail(db, table)
    assert db.fetch_val(f"select string_agg(name, ',') from {table}") == "a"


def test_nested_blocks_are_savepoints(db: Database, table: str) -> None:
    with db.transaction():
        db.insert(table, {"name": "outer"})
        with pytest.raises(UniqueViolationError):
            _insert_twice(db, table)
        with db.transaction():
            db.insert(table, {"name": "kept"})
        backend = db.fetch_val("select pg_backend_pid()")
        assert db.fetch_val("select pg_backend_pid()") == backend  # same connection inside
        with pytest.raises(TransactionStateError), db.transaction(isolation="serializable"):
            pass
    assert db.fetch_val(f"select string_agg(name, ',' order by name) from {table}") == "kept,outer"


def test_isolation_and_readonly(db: Database, table: str) -> None:
    with db.transaction(isolation="repeatable read", readonly=True):
        assert db.fetch_val("show transaction_isolation") == "repeatable read"
        assert db.fetch_val("show transaction_read_only") == "on"
        with pytest.raises(Exception, match="read-only"), db.transaction():
            db.insert(table, {"name": "x"})
    assert db.fetch_val("show transaction_isolation") == "read committed"
    with pytest.raises(ValidationError), db.transaction(isolation="chaos"):  # type: ignore[arg-type]
        pass


def test_other_threads_do_not_join(db: Database, table: str) -> None:
    seen: list[int] = []
    with db.transaction():
        mine = db.fetch_val("select pg_backend_pid()")
        thread = threading.Thread(
            target=lambda: seen.append(db.fetch_val("select pg_backend_pid()"))
        )
        thread.start()
        thread.join()
    assert seen
    assert seen[0] != mine


def test_serializable_increments_are_exact(utils_postgres_url: str, table: str) -> None:
    errors: list[BaseException] = []
    busy = Database(utils_postgres_url, max_size=8, retry_backoff=0.002, retry_cap=0.05)

    def increment() -> None:
        value = busy.fetch_val(f"select n from {table} where name = 'counter'")
        busy.execute(f"update {table} set n = %s where name = 'counter'", [value + 1])

    def worker() -> None:
        try:
            for _ in range(50):
                busy.run_in_transaction(increment, attempts=100)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    with busy:
        busy.insert(table, {"name": "counter", "n": 0})
        workers = [threading.Thread(target=worker) for _ in range(8)]
        for thread in workers:
            thread.start()
        for thread in workers:
            thread.join()
        assert not errors, errors
        assert busy.fetch_val(f"select n from {table} where name = 'counter'") == 400


def test_deadlock_is_retried(db: Database, table: str, utils_metrics: InMemorySink) -> None:
    db.insert(table, {"name": "a", "n": 0})
    db.insert(table, {"name": "b", "n": 0})
    barrier = threading.Barrier(2)
    calls: list[str] = []

    def swap(first: str, second: str) -> None:
        calls.append(first)
        db.execute(f"update {table} set n = n + 1 where name = %s", [first])
        if len(calls) <= 2:
            barrier.wait(timeout=5)
        db.execute(f"update {table} set n = n + 1 where name = %s", [second])

    errors: list[BaseException] = []

    def run(first: str, second: str) -> None:
        try:
            db.run_in_transaction(lambda: swap(first, second), isolation="read committed")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=pair) for pair in (("a", "b"), ("b", "a"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert len(calls) >= 3  # one of the two was re-run
    assert db.fetch_val(f"select sum(n) from {table}") == 4
    assert utils_metrics.count("db.retry", reason="deadlock_detected") >= 1


def test_unique_violation_is_never_retried(db: Database, table: str) -> None:
    calls = []

    def insert() -> None:
        calls.append(1)
        db.insert(table, {"name": "same"})
        db.insert(table, {"name": "same"})

    with pytest.raises(UniqueViolationError):
        db.run_in_transaction(insert)
    assert len(calls) == 1


def test_exhaustion_raises_last_error_with_note(db: Database) -> None:
    calls = []

    def conflict() -> None:
        calls.append(1)
        db.execute("select 1")
        raise SerializationError("forced")

    with pytest.raises(SerializationError) as caught:
        db.run_in_transaction(conflict)
    assert len(calls) == 5
    assert "gave up after 5 attempts" in getattr(caught.value, "__notes__", [""])[0]

    retried = db.retrying(attempts=2, isolation=None)(conflict)
    calls.clear()
    with pytest.raises(SerializationError):
        retried()
    assert len(calls) == 2


def test_retry_stops_at_the_deadline(utils_postgres_url: str) -> None:
    calls = []

    def conflict() -> None:
        calls.append(1)
        raise DeadlockError("forced")

    with Database(utils_postgres_url, retry_backoff=10.0, retry_cap=10.0, rng=lambda: 1.0) as db:
        started = time.monotonic()
        with deadline(1.0), pytest.raises(DeadlockError) as caught:
            db.run_in_transaction(conflict)
        assert time.monotonic() - started < 1.0
    assert len(calls) == 1
    assert "deadline" in getattr(caught.value, "__notes__", [""])[0]


def test_retrying_refuses_inside_a_transaction(db: Database) -> None:
    @db.retrying()
    def work() -> int:
        return 1

    assert work() == 1
    with db.transaction(), pytest.raises(TransactionStateError):
        work()
    with pytest.raises(ValidationError):
        db.retrying(attempts=0)


def test_commit_unknown(db: Database) -> None:
    db.execute("drop table if exists commit_unknown")
    db.execute("create table commit_unknown (id int)")
    db.execute(
        """create or replace function commit_unknown_kill() returns trigger language plpgsql as $$
        begin perform pg_terminate_backend(pg_backend_pid()); return null; end $$"""
    )
    db.execute(
        """create constraint trigger commit_unknown_trg after insert on commit_unknown
        deferrable initially deferred for each row execute function commit_unknown_kill()"""
    )
    calls = []

    def work() -> None:
        calls.append(1)
        db.execute("insert into commit_unknown values (1)")

    try:
        with pytest.raises(CommitUnknownError) as caught:
            db.run_in_transaction(work)
        assert len(calls) == 1
        assert not caught.value.retryable
        assert db.fetch_val("select 1") == 1  # the dead connection was not handed out again
    finally:
        db.execute("drop table if exists commit_unknown")
        db.execute("drop function if exists commit_unknown_kill()")
