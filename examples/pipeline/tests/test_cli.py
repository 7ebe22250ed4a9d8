"""The command line, as an operator runs it: a subprocess against moto's HTTP server and a
real PostgreSQL, 100,000 rows, killed mid-run, then run again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pipeline.cli import CRASH_EXIT_CODE
from psycopg import sql
from tests.conftest import upload
from tests.data import make_objects

from utils.aws import S3, client
from utils.aws.testing import MotoServer, moto_server
from utils.db import Database

EXAMPLE = Path(__file__).resolve().parents[1]


@pytest.fixture
def endpoint(utils_moto_server: MotoServer) -> Iterator[str]:
    """Fake credentials and UTILS_AWS_ENDPOINT_URL for this process and its children."""
    with moto_server(utils_moto_server) as url:
        yield url
    utils_moto_server.reset()


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", "load", *args],
        cwd=EXAMPLE,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.mark.slow
def test_100k_rows_killed_mid_run_then_resumed_load_exactly_once(
    endpoint: str, utils_postgres_url: str, schema: str, db: Database, tmp_path: Path
) -> None:
    client("s3").create_bucket(Bucket="lake")
    batches = make_objects("2026/03/", count=20, rows=5_000)  # CSV and JSON lines, 100,000 rows
    upload(S3("lake"), batches)
    good = sum(b.good for b in batches)
    bad = sum(b.bad for b in batches)
    assert good + bad == 100_000
    rejects = tmp_path / "rejects.jsonl"
    args = ["s3://lake/2026/", "--schema", schema, "--rejects", str(rejects), "--json"]
    env = {"UTILS_PG_DSN": utils_postgres_url, "PYTHONPATH": str(EXAMPLE)}

    crashed = run_cli(*args, env={**env, "PIPELINE_CRASH_AT": "8"})

    assert crashed.returncode == CRASH_EXIT_CODE, crashed.stderr
    assert "exiting inside the transaction" in crashed.stderr
    loaded = db.fetch_val(
        sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, "order_lines"))
    )
    assert loaded == sum(b.good for b in batches[:7])  # 7 committed; the 8th rolled back

    done = run_cli(*args, "--no-progress", env=env)

    assert done.returncode == 0, done.stderr
    summary: dict[str, Any] = json.loads(done.stdout)
    assert summary["objects_seen"] == 20
    assert summary["objects_skipped"] == 7
    assert summary["objects_loaded"] == 13
    assert summary["rows_loaded"] == sum(b.good for b in batches[7:])
    assert summary["rows_rejected"] == sum(b.bad for b in batches[7:])
    assert summary["rows_per_second"] > 0
    row = db.fetch_one(
        sql.SQL(
            "SELECT count(*) AS n, count(DISTINCT (source_key, line_no)) AS distinct_n, "
            "sum(amount) AS amount FROM {}"
        ).format(sql.Identifier(schema, "order_lines"))
    )
    assert row == {"n": good, "distinct_n": good, "amount": sum(b.amount for b in batches)}
    checkpoints = db.fetch_val(
        sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, "checkpoints"))
    )
    assert checkpoints == 20
    # The rejects file holds every run's rejects, each once.
    lines = [json.loads(line) for line in rejects.read_text(encoding="utf-8").splitlines()]
    assert summary["rejects_written"] == len(lines) == bad
    assert len({(r["source_key"], r["line_no"]) for r in lines}) == bad
    print(f"\nthroughput: {summary['rows_per_second']:,.0f} rows/s, {summary['seconds']:.2f} s")


def test_the_human_summary_and_a_bad_location(
    endpoint: str, utils_postgres_url: str, schema: str, tmp_path: Path
) -> None:
    client("s3").create_bucket(Bucket="lake")
    upload(S3("lake"), make_objects("in/", count=2, rows=100))
    env = {"UTILS_PG_DSN": utils_postgres_url}
    rejects = str(tmp_path / "r.jsonl")

    done = run_cli("s3://lake/in/", "--schema", schema, "--rejects", rejects, env=env)

    assert done.returncode == 0, done.stderr
    assert "rows:    200 read, 196 loaded, 4 rejected" in done.stdout
    assert "objects: 2 seen, 2 loaded, 0 already loaded, 0 ignored" in done.stdout

    wrong = run_cli("lake/in/", "--schema", schema, env=env)
    assert wrong.returncode == 2
    assert "expected s3://bucket/prefix" in wrong.stderr


def test_an_unreachable_database_is_a_clear_error(endpoint: str, schema: str) -> None:
    client("s3").create_bucket(Bucket="lake")
    # UTILS_PG_TIMEOUT: how long the pool waits for a connection (PostgresSettings).
    env = {"UTILS_PG_DSN": "postgresql://app:s3cret@127.0.0.1:1/none", "UTILS_PG_TIMEOUT": "1"}

    failed = run_cli("s3://lake/", "--schema", schema, "--no-progress", env=env)

    assert failed.returncode == 1
    assert "error: PoolTimeoutError" in failed.stderr  # a DatabaseUnavailableError
    assert "the database is not accepting connections" in failed.stderr
    assert "s3cret" not in failed.stderr + failed.stdout
