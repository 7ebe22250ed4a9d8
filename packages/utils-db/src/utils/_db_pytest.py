"""Pytest fixtures of utils-db, registered through the ``pytest11`` entry point.

It lives outside ``utils.db`` so that pytest start-up imports nothing heavy (no psycopg).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="session")
def utils_db_url(utils_postgres_url: str) -> Iterator[str]:
    """A throwaway database for the test session (dropped at the end); its URL."""
    from utils.db.testing import throwaway_database

    with throwaway_database(utils_postgres_url) as url:
        yield url


@pytest.fixture(scope="session")
def _utils_db_session(utils_db_url: str) -> Iterator[Any]:
    from utils.db.database import Database

    with Database(utils_db_url, min_size=1, max_size=4, name="tests") as db:
        yield db


@pytest.fixture
def utils_db(_utils_db_session: Any) -> Iterator[Any]:
    """A ``Database`` on the session's throwaway database, in a transaction rolled back after the test."""
    from utils.db.testing import rolled_back

    with rolled_back(_utils_db_session) as db:
        yield db
