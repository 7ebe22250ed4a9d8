"""utils-db in one screen: queries, a retrying transaction, COPY and translated errors.

Run it with `python examples/db_demo.py` where utils-db is installed and PostgreSQL answers at
UTILS_PG_DSN (default postgresql://postgres@127.0.0.1:5432/test). It creates and drops its own
table, and says what to start when no server answers.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from utils.core import ConflictError, deadline
from utils.db import Database, DatabaseUnavailableError, QueryTimeoutError
from utils.db.testing import unique_name

DSN = os.environ.get("UTILS_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")


@dataclass
class Account:
    id: int
    owner: str
    balance: int


def section(title: str) -> None:
    print(f"\n== {title}")


def main() -> None:
    table = unique_name("demo_accounts")
    with Database(DSN, max_size=4) as db:
        try:
            db.health()
        except DatabaseUnavailableError as exc:
            print(f"no PostgreSQL at {db!r}: {exc}\nstart one, or set UTILS_PG_DSN")
            sys.exit(0)
        db.execute(f"create table {table} (id serial primary key, owner text unique, balance int)")
        try:
            section("insert / upsert with quoted identifiers, rows as dataclasses")
            db.insert(table, {"owner": "ann", "balance": 100})
            db.upsert(table, {"owner": "bob", "balance": 50}, conflict="owner")
            print(db.fetch_all(f"select * from {table} order by id", as_=Account))

            section("a SERIALIZABLE transaction, re-run on conflicts")

            def transfer() -> None:
                db.execute(f"update {table} set balance = balance - 10 where owner = 'ann'")
                db.execute(f"update {table} set balance = balance + 10 where owner = 'bob'")

            db.run_in_transaction(transfer)
            print(db.fetch_all(f"select owner, balance from {table} order by id"))

            section("COPY 10,000 rows from a generator")
            sent = db.copy_records(
                table, ["owner", "balance"], ((f"user{i}", i) for i in range(10_000))
            )
            print(
                f"sent {sent:,} rows; table has {db.fetch_val(f'select count(*) from {table}'):,}"
            )

            section("translated errors: no row data in the message")
            try:
                db.insert(table, {"owner": "ann", "balance": 1})
            except ConflictError as exc:
                print(f"{type(exc).__name__}: {exc} details={exc.details}")

            section("a deadline caps statement_timeout")
            try:
                with deadline(0.2):
                    db.fetch_val("select pg_sleep(5)")
            except QueryTimeoutError as exc:
                print(f"{type(exc).__name__}: {exc}")
            print("next call on the pool:", db.fetch_val("select 'fine'"))
        finally:
            db.execute(f"drop table if exists {table}")


if __name__ == "__main__":
    main()
