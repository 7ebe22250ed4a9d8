"""Type-checked, never run: how utils.db looks to mypy --strict at a call site.

Rows are ``dict[str, Any]`` without ``as_`` and instances of ``as_`` with it; the retrying
decorator keeps the decorated function's signature; async methods return what their sync
twins return, awaited.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

from typing_extensions import assert_type

from utils.db import AsyncDatabase, Database, Notification


@dataclass
class User:
    """A row type."""

    id: int
    name: str


def sync_usage(db: Database) -> None:
    """The sync API."""
    assert_type(db.fetch_one("select 1"), "dict[str, Any] | None")
    assert_type(db.fetch_one("select * from users", as_=User), "User | None")
    assert_type(db.fetch_required("select * from users", as_=User), User)
    assert_type(db.fetch_all("select * from users"), "list[dict[str, Any]]")
    assert_type(db.fetch_all("select * from users", [1], as_=User), "list[User]")
    assert_type(db.fetch_val("select 1"), Any)
    assert_type(db.execute("delete from users"), int)
    assert_type(db.execute_many("insert into t values (%s)", [[1], [2]]), int)
    assert_type(db.stream("select * from users", as_=User), Iterator[User])
    assert_type(db.insert("users", {"name": "a"}, returning="id"), "dict[str, Any] | None")
    assert_type(db.copy_records("users", ["name"], [("a",)]), int)
    assert_type(db.listen("jobs"), Iterator[Notification])

    @db.retrying(attempts=3)
    def book(seat: int, *, user: str) -> bool:
        return bool(db.execute("update seats set user_name = %s where id = %s", [user, seat]))

    assert_type(book(1, user="ann"), bool)
    assert_type(db.run_in_transaction(lambda: 42), int)
    with db.transaction(isolation="serializable", readonly=True):
        pass
    with db.advisory_lock("leader", timeout=1.0):
        pass


async def async_usage(db: AsyncDatabase) -> None:
    """The async API."""
    assert_type(await db.fetch_one("select 1"), "dict[str, Any] | None")
    assert_type(await db.fetch_one("select * from users", as_=User), "User | None")
    assert_type(await db.fetch_all("select * from users", as_=User), "list[User]")
    assert_type(await db.execute("delete from users"), int)
    assert_type(db.stream("select * from users"), "AsyncIterator[dict[str, Any]]")
    assert_type(db.listen("jobs"), AsyncIterator[Notification])

    @db.retrying()
    async def count(table: str) -> int:
        return int(await db.fetch_val("select count(*) from users where team = %s", [table]))

    assert_type(await count("users"), int)

    async def answer() -> int:
        return 42

    assert_type(await db.run_in_transaction(answer), int)
    async with db.transaction():
        pass
