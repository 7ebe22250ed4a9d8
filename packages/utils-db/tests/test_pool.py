from __future__ import annotations

import threading
import time

import pytest

from utils.core import InMemorySink, Secret, deadline
from utils.core.testing import wait_until
from utils.db import Database, DatabaseError, PoolTimeoutError, PostgresSettings, QueryTimeoutError
from utils.db.testing import unique_name


def test_session_state_never_reaches_the_next_caller(utils_postgres_url: str) -> None:
    with Database(utils_postgres_url, min_size=1, max_size=1) as db:
        pid = db.fetch_val("select pg_backend_pid()")
        db.execute("set search_path = nowhere")
        db.execute("set application_name = 'leaked'")
        db.fetch_val("select pg_advisory_lock(4242)")
        db.execute("create temp table scratch (x int)")
        db.execute("listen somewhere")
        assert db.fetch_val("select pg_backend_pid()") == pid  # same connection, reset
        assert db.fetch_val("show search_path") == '"$user", public'
        assert db.fetch_val("show application_name") != "leaked"
        assert (
            db.fetch_val(
                "select count(*) from pg_locks where locktype = 'advisory' and pid = pg_backend_pid()"
            )
            == 0
        )
        assert db.fetch_val("select count(*) from pg_tables where tablename = 'scratch'") == 0
        assert db.fetch_val("select count(*) from pg_listening_channels()") == 0
        with db.connection() as conn:
            conn.execute("set work_mem = '7MB'")
        assert db.fetch_val("show work_mem") != "7MB"


def test_prepared_statements_survive_the_reset(utils_postgres_url: str) -> None:
    with Database(utils_postgres_url, min_size=1, max_size=1) as db:
        for _ in range(7):
            db.fetch_val("select 41 + %s", [1])
        db.execute("set search_path = public")  # makes the connection dirty: reset on return
        for _ in range(3):
            assert db.fetch_val("select 41 + %s", [1]) == 42
        assert db.fetch_val("select count(*) from pg_prepared_statements") >= 1


def test_pgbouncer_mode_prepares_nothing(utils_postgres_url: str) -> None:
    with Database(utils_postgres_url, min_size=1, max_size=1, pgbouncer=True) as db:
        for _ in range(10):
            db.fetch_val("select 41 + %s", [1])
        assert db.fetch_val("select count(*) from pg_prepared_statements") == 0


def test_pool_timeout_names_size_and_wait(utils_postgres_url: str) -> None:
    with Database(utils_postgres_url, min_size=1, max_size=1, timeout=0.2) as db:
        with db.transaction():
            holder = threading.Thread(target=lambda: errors.append(_try(db)))
            errors: list[BaseException | None] = []
            holder.start()
            holder.join()
        error = errors[0]
        assert isinstance(error, PoolTimeoutError)
        assert "max_size=1" in str(error)
        assert "0.20s" in str(error)
        assert error.details["max_size"] == 1
        assert error.details["wait_seconds"] == 0.2
        assert not db._core.outage.down  # an exhausted pool is not an outage


def _try(db: Database) -> BaseException | None:
    try:
        db.fetch_val("select 1")
    except BaseException as exc:
        return exc
    return None


def test_not_open(utils_postgres_url: str) -> None:
    db = Database(utils_postgres_url)
    with pytest.raises(DatabaseError, match="not open"):
        db.fetch_val("select 1")
    assert db.open() is db.open()
    db.close()


def test_terminated_backends_are_never_handed_out(utils_postgres_url: str) -> None:
    with Database(
        utils_postgres_url, min_size=4, max_size=4, application_name="utils-db-kill"
    ) as db:
        db.open(wait=True)
        stop = threading.Event()
        failures: list[BaseException] = []
        done = [0]

        def load() -> None:
            while not stop.is_set():
                try:
                    assert db.fetch_val("select 1") == 1
                    done[0] += 1
                except BaseException as exc:
                    failures.append(exc)

        workers = [threading.Thread(target=load) for _ in range(3)]
        for worker in workers:
            worker.start()
        wait_until(lambda: done[0] >= 20)  # the load is running on every pooled connection
        with Database(utils_postgres_url, max_size=1) as admin:
            killed = admin.fetch_val(
                "select count(pg_terminate_backend(pid)) from pg_stat_activity "
                "where application_name = 'utils-db-kill'"
            )
        after_kill = done[0]
        wait_until(lambda: done[0] >= after_kill + 50)  # plenty of calls after the kill
        stop.set()
        for worker in workers:
            worker.join()
        assert killed >= 1
        # A statement running on a backend as it is killed may fail (translated): at most
        # once per killed connection, which is then discarded. After that every call
        # succeeds: the checkout check never hands out a dead connection.
        assert all(type(f).__name__ == "DatabaseUnavailableError" for f in failures), failures
        assert len(failures) <= killed, failures
        for _ in range(20):
            assert db.fetch_val("select 1") == 1


def test_idle_killed_connections_are_replaced_on_checkout(utils_postgres_url: str) -> None:
    with Database(
        utils_postgres_url, min_size=2, max_size=2, application_name="utils-db-idle"
    ) as db:
        db.open(wait=True)
        with Database(utils_postgres_url, max_size=1) as admin:
            admin.fetch_val(
                "select count(pg_terminate_backend(pid)) from pg_stat_activity "
                "where application_name = 'utils-db-idle'"
            )
            wait_until(  # the backends are gone: the pool now holds two dead connections
                lambda: (
                    admin.fetch_val(
                        "select count(*) from pg_stat_activity "
                        "where application_name = 'utils-db-idle'"
                    )
                    == 0
                )
            )
        for _ in range(5):
            assert db.fetch_val("select 1") == 1  # never a dead connection


def test_deadline_cancels_the_statement(db: Database) -> None:
    started = time.monotonic()
    with deadline(0.2), pytest.raises(QueryTimeoutError):
        db.fetch_val("select pg_sleep(5)")
    assert time.monotonic() - started < 0.5
    assert db.fetch_val("select 1") == 1
    assert db.fetch_val("show statement_timeout") == "0"  # restored after the deadline


def test_deadline_inside_a_transaction_uses_set_local(db: Database) -> None:
    with db.transaction():
        with deadline(5):
            assert int(db.fetch_val("show statement_timeout").rstrip("ms")) <= 5000
        with deadline(0.2), pytest.raises(QueryTimeoutError):
            db.fetch_val("select pg_sleep(5)")
    assert db.fetch_val("show statement_timeout") == "0"


def test_deadline_spent_before_the_call(db: Database) -> None:
    with deadline(0), pytest.raises(QueryTimeoutError):
        db.fetch_val("select 1")
    with db.transaction(), deadline(0), pytest.raises(QueryTimeoutError):
        db.fetch_val("select 1")


def test_default_statement_timeout(utils_postgres_url: str) -> None:
    with Database(utils_postgres_url, statement_timeout=0.15) as db:
        assert db.fetch_val("show statement_timeout") == "150ms"
        with deadline(60):
            assert db.fetch_val("show statement_timeout") == "150ms"  # the smaller wins
        with pytest.raises(QueryTimeoutError):
            db.fetch_val("select pg_sleep(2)")


def test_settings_feed_the_pool(utils_postgres_url: str) -> None:
    settings = PostgresSettings.from_env(
        {
            "UTILS_PG_DSN": utils_postgres_url,
            "UTILS_PG_MAX_SIZE": "3",
            "UTILS_PG_APPLICATION_NAME": "from-env",
        }
    )
    with Database(settings, max_size=2) as db:
        assert db.stats()["pool_max"] == 2
        assert db.fetch_val("show application_name") == "from-env"
        assert db.name == "test"


def test_bad_options() -> None:
    from utils.core import ValidationError

    with pytest.raises(ValidationError):
        Database("postgresql://db/app", min_size=5, max_size=2)
    with pytest.raises(ValidationError):
        Database("postgresql://db/app", timeout=0)
    with pytest.raises(ValidationError):
        Database(42)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        Database("postgresql://db/app", pgbouncer="yes")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="min_size"):
        Database("postgresql://db/app", min_size=-1)


def test_min_size_zero_keeps_no_idle_connection(utils_postgres_url: str) -> None:
    name = unique_name("utils-db-min0")
    with Database(utils_postgres_url, min_size=0, max_size=1, application_name=name) as db:
        assert db.fetch_val("select 1") == 1


def test_repr_hides_passwords() -> None:
    for dsn in (
        "postgresql://ann:hunter2@db:5432/app",
        "host=db user=ann password=hunter2 dbname=app",
        "host=db user=ann password='hunter2 x' dbname=app",
    ):
        assert "hunter2" not in repr(Database(dsn))
    settings = PostgresSettings(
        dsn=Secret("postgresql://ann:hunter2@db/app"), password=Secret("x")
    )
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in repr(Database(settings))


def test_health_stats_and_metrics(db: Database, utils_metrics: InMemorySink) -> None:
    report = db.health()
    assert report["ok"]
    assert report["server_version"].startswith("15")
    db.fetch_one("select 1")
    db.execute("select 1")
    stats = db.stats()
    assert stats["pool_max"] == 4
    assert utils_metrics.count("db.query", op="select", db="test") == 1
    assert utils_metrics.count("db.query", op="execute", db="test") == 1
    assert utils_metrics.count("db.query", op="health", db="test") == 1
    assert utils_metrics.select("db.pool_size")[0].tags == {"db": "test"}
    with pytest.raises(DatabaseError):
        db.execute("selec")
    assert utils_metrics.count("db.error", op="execute", code="database_error") == 1


def test_unique_names() -> None:
    assert unique_name() != unique_name()


def test_unparsable_dsn_is_a_config_error_without_the_dsn() -> None:
    from utils.core import ConfigError

    with pytest.raises(ConfigError) as caught:
        Database("host=db password='hunter2")
    assert "hunter2" not in str(caught.value)
    assert caught.value.__cause__ is None
