from __future__ import annotations

from typing import Any

import psycopg

from utils.db import Database
from utils.db.testing import rolled_back, throwaway_database


def test_utils_db_fixture_rolls_back(utils_db: Any) -> None:
    utils_db.execute("create table fixture_table (x int)")
    utils_db.insert("fixture_table", {"x": 1})
    with utils_db.transaction():  # a savepoint inside the test's transaction
        utils_db.insert("fixture_table", {"x": 2})
    assert utils_db.fetch_val("select count(*) from fixture_table") == 2


def test_utils_db_fixture_sees_nothing_from_the_previous_test(
    utils_db: Any, utils_db_url: str
) -> None:
    assert utils_db.fetch_val("select to_regclass('fixture_table')") is None
    assert "utils_test_" in utils_db_url


def test_throwaway_database(utils_postgres_url: str) -> None:
    with (
        throwaway_database(utils_postgres_url, prefix="utils_tmp") as url,
        Database(url) as db,
    ):
        name = db.fetch_val("select current_database()")
        assert name.startswith("utils_tmp_")
        with rolled_back(db):
            db.execute("create table gone (x int)")
        assert db.fetch_val("select to_regclass('gone')") is None
    with psycopg.connect(utils_postgres_url) as conn:
        assert conn.execute(
            "select count(*) from pg_database where datname = %s", [name]
        ).fetchone() == (0,)
