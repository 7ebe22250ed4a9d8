from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from utils.core import ValidationError
from utils.db import Database, DatabaseError, RecordNotFoundError


@dataclasses.dataclass
class Item:
    id: int
    name: str
    n: int | None


def test_fetch_helpers(db: Database, table: str) -> None:
    assert db.fetch_one("select 1 as one") == {"one": 1}
    assert db.fetch_one("select 1 where false") is None
    assert db.fetch_val("select 1 where false") is None
    assert db.fetch_val("select %s::int + 1", [41]) == 42
    assert db.fetch_all("select generate_series(1, 3) as n") == [{"n": 1}, {"n": 2}, {"n": 3}]
    assert db.execute(f"insert into {table} (name, n) values ('a', 1), ('b', 2)") == 2
    assert db.fetch_one(f"select * from {table} where name = %s", ["a"], as_=Item) == Item(
        1, "a", 1
    )
    items = db.fetch_all(f"select * from {table} order by id", as_=Item)
    assert [item.name for item in items] == ["a", "b"]
    assert (
        db.fetch_required(f"select * from {table} where name = %(name)s", {"name": "b"})["n"] == 2
    )
    with pytest.raises(RecordNotFoundError):
        db.fetch_required(f"select * from {table} where false", as_=Item)
    with pytest.raises(ValidationError):
        db.fetch_one("select 1", as_=42)  # type: ignore[call-overload]


def test_execute_many_and_stream(db: Database, table: str) -> None:
    count = db.execute_many(
        f"insert into {table} (name, n) values (%s, %s)", [(f"r{i}", i) for i in range(25)]
    )
    assert count == 25
    rows = db.stream(f"select n from {table} order by n", batch_size=4)
    assert [row["n"] for row in rows] == list(range(25))
    typed = list(db.stream(f"select * from {table} order by n limit 3", as_=Item, batch_size=2))
    assert [item.n for item in typed] == [0, 1, 2]
    with pytest.raises(ValidationError):
        list(db.stream("select 1", batch_size=0))


def test_stream_is_lazy_and_can_stop_early(db: Database) -> None:
    rows = db.stream("select generate_series(1, 100000) as n", batch_size=100)
    assert db.stats()["pool_max"] == 4
    first = next(iter(rows))
    assert first == {"n": 1}
    rows.close()  # type: ignore[attr-defined]
    assert db.fetch_val("select 1") == 1


def test_insert_upsert(db: Database, table: str) -> None:
    assert db.insert(table, {"name": "a", "n": 1}) is None
    assert db.insert(table, {"name": "b", "n": 2}, returning="id") == {"id": 2}
    assert db.upsert(table, {"name": "a", "n": 10}, conflict="name", returning=["name", "n"]) == {
        "name": "a",
        "n": 10,
    }
    assert (
        db.upsert(table, {"name": "a", "n": 99}, conflict=["name"], update=[], returning="n")
        is None
    )
    assert db.upsert(table, {"name": "c", "n": 3}, conflict="name", update=["n"]) is None
    assert db.fetch_all(f"select name, n from {table} order by name") == [
        {"name": "a", "n": 10},
        {"name": "b", "n": 2},
        {"name": "c", "n": 3},
    ]
    assert db.insert(("public", table), {"name": "d"}, returning="name") == {"name": "d"}


@pytest.mark.parametrize(
    "bad",
    [lambda t: {}, lambda t: {"": 1}, lambda t: [("name", 1)]],
)
def test_insert_refuses_bad_rows(db: Database, table: str, bad: Callable[[str], Any]) -> None:
    with pytest.raises(ValidationError):
        db.insert(table, bad(table))


HOSTILE = 'x"; drop table t; --'


def test_hostile_identifiers_fail_safely(db: Database, table: str) -> None:
    db.insert(table, {"name": "keep"})
    with pytest.raises(DatabaseError) as caught:
        db.insert(HOSTILE, {"name": "x"})
    assert caught.value.details["sqlstate"] == "42P01"  # undefined table: it was one name
    with pytest.raises(DatabaseError):
        db.insert(table, {HOSTILE: "x"})
    with pytest.raises(DatabaseError):
        db.upsert(table, {"name": "x"}, conflict=HOSTILE)
    with pytest.raises(DatabaseError):
        db.copy_records(HOSTILE, ["name"], [("x",)])
    with pytest.raises(DatabaseError):
        db.copy_records(table, [HOSTILE], [("x",)])
    with pytest.raises(ValidationError):
        db.insert("", {"name": "x"})
    assert db.fetch_val(f"select count(*) from {table}") == 1


def test_copy_round_trip(db: Database) -> None:
    name = "copy_rt"
    db.execute(f"drop table if exists {name}")
    db.execute(
        f"create table {name} (id int, t text, b bytea, ts timestamptz, d numeric, j jsonb)"
    )
    try:
        stamp = dt.datetime(2024, 2, 29, 23, 59, 59, 123456, tzinfo=dt.timezone.utc)
        rows = [
            (1, None, None, None, None, None),
            (2, "tab\there", b"\x00\x01\xff", stamp, Decimal("1.50"), None),
            (3, "new\nline\r\n", b"\\", stamp, Decimal("-0"), None),
            (4, "back\\slash and \\N", b"", stamp, None, None),
            (5, "ünïcødé ☃ 🎉 \u0000"[:-1], bytes(range(256)), stamp, Decimal("1e-20"), None),
            (6, "", b"x", stamp, None, None),
        ]
        sent = db.copy_records(name, ["id", "t", "b", "ts", "d"], (row[:5] for row in rows))
        assert sent == 6
        back = list(db.copy_out(f"select id, t, b, ts, d from {name} order by id"))
        assert [tuple(row) for row in back] == [row[:5] for row in rows]
        fetched = db.fetch_all(f"select id, t, b, ts, d from {name} order by id")
        assert [tuple(row.values()) for row in fetched] == [row[:5] for row in rows]
        assert list(db.copy_out(f"select id from {name} where id > %s order by id", [4])) == [
            (5,),
            (6,),
        ]
        assert db.copy_records(name, ["id"], iter([])) == 0
    finally:
        db.execute(f"drop table {name}")


def test_copy_out_refuses_empty_query(db: Database) -> None:
    with pytest.raises(ValidationError):
        list(db.copy_out("  "))


def test_raw_connection(db: Database) -> None:
    with db.connection() as conn:
        assert conn.execute("select 1").fetchone() == (1,)
    with pytest.raises(DatabaseError), db.connection() as conn:
        conn.execute("select * from no_such_table")
