"""The loader against moto's S3 (in-process) and a real PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from pipeline.load import Loader
from psycopg import sql
from tests.conftest import Faults, upload
from tests.data import Batch, make_objects

from utils.aws import S3
from utils.db import Database
from utils.resilience import RateLimiter
from utils.resilience.testing import instant_retries


def totals(db: Database, schema: str) -> dict[str, Any]:
    def count(table: str) -> Any:
        return db.fetch_val(
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, table))
        )

    return {
        "lines": count("order_lines"),
        "rejects": count("rejects"),
        "checkpoints": count("checkpoints"),
        "amount": db.fetch_val(
            sql.SQL("SELECT coalesce(sum(amount), 0) FROM {}").format(
                sql.Identifier(schema, "order_lines")
            )
        ),
    }


def expected(batches: list[Batch]) -> dict[str, Any]:
    return {
        "lines": sum(b.good for b in batches),
        "rejects": sum(b.bad for b in batches),
        "checkpoints": len(batches),
        "amount": sum((b.amount for b in batches), Decimal(0)),
    }


def test_a_run_loads_the_valid_rows_and_keeps_the_rejects(
    lake: S3, db: Database, schema: str, make_loader: Callable[..., Loader]
) -> None:
    batches = make_objects("in/", count=4, rows=120)
    upload(lake, batches)
    lake.put_text("in/README.txt", "not data")

    summary = make_loader().run("in/")

    assert totals(db, schema) == expected(batches)
    assert (summary.objects_seen, summary.objects_loaded, summary.objects_ignored) == (5, 4, 1)
    assert summary.rows_read == 480
    assert summary.rows_loaded == expected(batches)["lines"]
    assert summary.rows_rejected == expected(batches)["rejects"] == 9
    first = db.fetch_one(
        sql.SQL("SELECT * FROM {} ORDER BY source_key, line_no LIMIT 1").format(
            sql.Identifier(schema, "order_lines")
        )
    )
    assert first is not None
    assert first["source_key"] == "in/part-000.csv"
    assert first["line_no"] == 2  # line 1 is the CSV header
    assert first["sku"] == "SKU-0"  # transformed: upper-cased
    assert first["amount"] == first["quantity"] * first["unit_price"]
    assert first["ordered_at"].utcoffset().total_seconds() == 0
    reasons = [row["reason"] for row in make_loader().rejects("in/")]
    assert len(reasons) == 9
    assert any("quantity" in reason for reason in reasons)
    assert any("UTC offset" in reason for reason in reasons)


def test_a_rerun_loads_nothing_twice(
    lake: S3, db: Database, schema: str, make_loader: Callable[..., Loader]
) -> None:
    batches = make_objects("in/", count=3, rows=60)
    upload(lake, batches)
    make_loader().run("in/")

    again = make_loader().run("in/")

    assert (again.objects_loaded, again.objects_skipped, again.rows_read) == (0, 3, 0)
    assert totals(db, schema) == expected(batches)


def test_a_crash_inside_an_object_leaves_no_trace_and_a_rerun_completes_exactly(
    lake: S3, db: Database, schema: str, make_loader: Callable[..., Loader]
) -> None:
    batches = make_objects("in/", count=5, rows=100)
    upload(lake, batches)

    def crash(number: int) -> None:
        if number == 3:
            raise KeyboardInterrupt("the operator pressed Ctrl-C mid-object")

    with pytest.raises(KeyboardInterrupt):
        make_loader(after_copy=crash).run("in/")
    # Objects 1 and 2 committed; object 3 rolled back with its transaction.
    assert totals(db, schema) == expected(batches[:2])

    rerun = make_loader().run("in/")

    assert (rerun.objects_loaded, rerun.objects_skipped) == (3, 2)
    assert rerun.rows_loaded == sum(b.good for b in batches[2:])
    assert totals(db, schema) == expected(batches)


def test_transient_s3_errors_are_retried(
    lake: S3,
    db: Database,
    schema: str,
    make_loader: Callable[..., Loader],
    faults: Faults,
    utils_logs: list[dict[str, Any]],
) -> None:
    batches = make_objects("in/", count=2, rows=50)
    upload(lake, batches)
    faults.fail(2)  # the first object's first two reads get 503 SlowDown

    with instant_retries() as delays:
        summary = make_loader().run("in/")

    assert summary.objects_loaded == 2
    assert totals(db, schema) == expected(batches)
    assert (faults.failed, faults.calls) == (2, 4)
    assert len(delays) == 2
    failed = [e for e in utils_logs if e["event"] == "retry.attempt_failed"]
    assert [e["error"].split(":")[0] for e in failed] == ["AWSThrottledError"] * 2


def test_a_read_that_keeps_failing_stops_the_run_and_a_rerun_resumes(
    lake: S3, db: Database, schema: str, make_loader: Callable[..., Loader], faults: Faults
) -> None:
    batches = make_objects("in/", count=3, rows=40)
    upload(lake, batches)
    loader = make_loader()
    loader.run("in/part-000")  # the first object only
    faults.fail(100)

    with instant_retries(), pytest.raises(Exception, match="SlowDown"):
        loader.run("in/")
    assert totals(db, schema) == expected(batches[:1])

    faults.fail(0)
    assert loader.run("in/").objects_loaded == 2
    assert totals(db, schema) == expected(batches)


def test_reads_are_paced_by_the_rate_limiter(lake: S3, make_loader: Callable[..., Loader]) -> None:
    upload(lake, make_objects("in/", count=5, rows=10))
    loader = make_loader(limiter=RateLimiter(2, per=1.0, burst=1))  # one read per 0.5 s

    with instant_retries() as waits:
        loader.run("in/")

    assert len(waits) == 4  # the first read is free, then each one waits its turn
    assert all(wait == pytest.approx(0.5, abs=0.05) for wait in waits)


def test_an_unreadable_object_is_rejected_whole_and_not_retried(
    lake: S3, db: Database, schema: str, make_loader: Callable[..., Loader]
) -> None:
    lake.put_text("in/a.csv", "id,name\n1,ann\n")
    lake.put_bytes("in/b.jsonl", b"\xff\xfe not utf-8")

    first = make_loader().run("in/")
    again = make_loader().run("in/")

    assert (first.objects_loaded, first.rows_rejected, again.objects_skipped) == (2, 2, 2)
    reasons = {row["source_key"]: row["reason"] for row in make_loader().rejects("in/")}
    assert "header order_id,sku,quantity,unit_price,ordered_at" in reasons["in/a.csv"]
    assert "not UTF-8" in reasons["in/b.jsonl"]
    assert totals(db, schema)["lines"] == 0


def test_an_object_changed_after_loading_is_reported_not_reloaded(
    lake: S3,
    db: Database,
    schema: str,
    make_loader: Callable[..., Loader],
    utils_logs: list[dict[str, Any]],
) -> None:
    batches = make_objects("in/", count=1, rows=20)
    upload(lake, batches)
    make_loader().run("in/")
    lake.put_bytes(batches[0].key, batches[0].body + batches[0].body)

    summary = make_loader().run("in/")

    assert (summary.objects_skipped, summary.rows_read) == (1, 0)
    assert totals(db, schema) == expected(batches)
    changed = [e for e in utils_logs if e["event"] == "pipeline.object_changed"]
    assert [e["key"] for e in changed] == [batches[0].key]


def test_a_connection_lost_inside_an_object_transaction_is_retried(
    lake: S3,
    db: Database,
    schema: str,
    make_loader: Callable[..., Loader],
    utils_postgres_url: str,
    utils_logs: list[dict[str, Any]],
) -> None:
    batches = make_objects("in/", count=3, rows=50)
    upload(lake, batches)
    killed: list[int] = []

    def kill_my_connection(number: int) -> None:
        # A real fault: the server ends this transaction's backend, as a failover would.
        if number == 2 and not killed:
            pid = db.fetch_val("SELECT pg_backend_pid()")  # joins the transaction
            with psycopg.connect(utils_postgres_url, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", [pid])
            killed.append(pid)

    with instant_retries() as delays:
        summary = make_loader(after_copy=kill_my_connection).run("in/")

    assert len(killed) == 1
    assert len(delays) == 1
    assert summary.objects_loaded == 3
    assert totals(db, schema) == expected(batches)
    failed = [e for e in utils_logs if e["event"] == "retry.attempt_failed"]
    assert len(failed) == 1
    assert "DatabaseUnavailableError" in failed[0]["error"]
