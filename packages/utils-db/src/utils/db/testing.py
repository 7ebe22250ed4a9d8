"""Test helpers for applications that use utils.db (also served as pytest fixtures).

- :func:`throwaway_database`: create a database with a unique name for a test session and
  drop it afterwards (``DROP DATABASE ... WITH (FORCE)``);
- :func:`rolled_back` / :func:`arolled_back`: run a test inside a transaction that is always
  rolled back, so tests never see each other's rows. Code under test that opens
  ``db.transaction()`` gets savepoints; ``run_in_transaction`` refuses to run inside it
  (it could not retry), so test such code against a database of its own.

Pytest fixtures (``pytest11`` entry point ``utils_db``, imported lazily):

- ``utils_db_url``: the URL of a throwaway database, one per test session, made on the server
  of ``utils_postgres_url`` (``UTILS_TEST_POSTGRES_URL``);
- ``utils_db``: a :class:`~utils.db.Database` on it, inside a per-test transaction rolled
  back at the end of the test.

Example:
    >>> from utils.db.testing import unique_name
    >>> unique_name("utils_test").startswith("utils_test_")
    True
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from utils.db.async_database import AsyncDatabase
    from utils.db.database import Database

__all__ = ["arolled_back", "rolled_back", "throwaway_database", "unique_name"]


class _RollBack(Exception):  # noqa: N818 - a signal, not an error
    """Raised at the end of a rolled-back block to undo it."""


def unique_name(prefix: str = "utils_test") -> str:
    """A database (or table) name nobody else uses: ``<prefix>_<12 hex digits>``.

    Example:
        >>> len(unique_name("t"))
        14
    """
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


@contextmanager
def throwaway_database(server_url: str, *, prefix: str = "utils_test") -> Iterator[str]:
    """Create a fresh database on ``server_url``'s server; yield its URL; drop it.

    Example:
        >>> with throwaway_database("postgresql://postgres@127.0.0.1/test") as url:  # doctest: +SKIP
        ...     url
        'postgresql://postgres@127.0.0.1/utils_test_3f2a...'
    """
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    name = unique_name(prefix)
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        parts = conninfo_to_dict(server_url)
        parts["dbname"] = name
        yield make_conninfo("", **parts)
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@contextmanager
def rolled_back(db: Database) -> Iterator[Database]:
    """Run the block in a transaction of ``db`` that is rolled back whatever happens.

    Example:
        >>> with rolled_back(db):  # doctest: +SKIP
        ...     db.insert("users", {"name": "ann"})
        >>> db.fetch_val("select count(*) from users")  # doctest: +SKIP
        0
    """
    try:
        with db.transaction():
            yield db
            raise _RollBack
    except _RollBack:
        pass


@asynccontextmanager
async def arolled_back(db: AsyncDatabase) -> AsyncIterator[AsyncDatabase]:
    """The async twin of :func:`rolled_back`.

    Example:
        >>> async with arolled_back(db):  # doctest: +SKIP
        ...     await db.insert("users", {"name": "ann"})
    """
    try:
        async with db.transaction():
            yield db
            raise _RollBack
    except _RollBack:
        pass
