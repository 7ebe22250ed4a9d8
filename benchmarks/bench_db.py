"""utils.db against raw psycopg_pool / psycopg (and asyncpg, for information), side by side.

Run with ``nox -s bench`` or ``python benchmarks/bench_db.py [--quick] [--json PATH]
[--verbose]`` in an environment holding the utils-core and utils-db wheels and the peers of
``requirements.txt``, with PostgreSQL at ``UTILS_TEST_POSTGRES_URL`` (default
postgresql://postgres@127.0.0.1:5432/test); skipped with a note when none answers. Every
comparison checks first, untimed, that both sides return the same thing.

All rows are WALL-CLOCK time (the calls wait on the server), interleaved in the same rounds.

1. ``Database.fetch_one("select 1")`` against raw psycopg_pool
   ``with pool.connection() as c: c.execute("select 1").fetchone()`` on a pool of
   autocommit connections (the same round trips as ours; target <= 1.10). Informational:
   the same pair in CPU time of the process (what the wrapper costs, free of the scheduler
   noise that dominates wall time on a busy 2-core machine), the raw pool returning the
   same dict (``row_factory=dict_row``), and the raw pool with psycopg's default (a
   transaction per checkout: BEGIN + COMMIT).
2. ``AsyncDatabase.fetch_one`` against ``AsyncConnectionPool`` the same way (target <= 1.10);
   asyncpg's ``pool.fetchrow("select 1")`` for information (when installed).
3. ``fetch_all`` of 1,000 rows as dicts against raw psycopg ``cursor(row_factory=dict_row)``
   ``.execute(...).fetchall()`` on a pooled connection (target <= 1.10).
4. ``copy_records`` of 1,000,000 rows x 3 columns (100,000 with ``--quick``) against raw
   ``cursor.copy(...)`` + ``write_row`` (target <= 1.20) and against ``execute_many`` INSERT
   (measured on 20,000 rows, compared per row: target >= 10x faster, ratio <= 0.10). Peak
   Python memory (tracemalloc) of ``copy_records`` from a generator at 10% and 100% of the
   rows: "flat" means the two peaks are within 2x of each other (not proportional to rows).
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import os
import statistics
import sys
import time
import timeit
import traceback
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

from _harness import (
    Measure,
    Result,
    Settings,
    environment,
    installed_version,
    interleaved,
    pair_result,
    parse_args,
    print_table,
    summarize,
    write_json,
)

PEERS = ("utils-db", "psycopg", "psycopg-pool", "asyncpg")
URL = os.environ.get("UTILS_TEST_POSTGRES_URL") or "postgresql://postgres@127.0.0.1:5432/test"
TABLE = "utils_bench_copy"


def wall_loop(
    stmt: str, *, clock: Callable[[], float] = time.perf_counter, **names: Any
) -> Measure:
    """A timeit loop of ``stmt`` in wall-clock time (the calls wait on the network)."""
    bind = [f"{name} = _names[{name!r}]" for name in names]
    timer = timeit.Timer(
        stmt, setup="\n".join(bind) or "pass", timer=clock, globals={"_names": names}
    )
    return timer.timeit


def async_loop(event_loop: asyncio.AbstractEventLoop, make: Callable[[], Any]) -> Measure:
    """``await make()`` n times inside one coroutine (wall-clock time, GC off)."""

    async def batch(n: int) -> float:
        started = time.perf_counter()
        for _ in itertools.repeat(None, n):
            await make()
        return time.perf_counter() - started

    def measure(n: int) -> float:
        enabled = gc.isenabled()
        gc.disable()
        try:
            return event_loop.run_until_complete(batch(n))
        finally:
            if enabled:
                gc.enable()

    return measure


# -- 1. and 3.: sync ----------------------------------------------------------------------


def bench_sync(settings: Settings) -> list[Result]:
    from psycopg.rows import dict_row
    from psycopg_pool import ConnectionPool

    from utils.db import Database

    options = {"min_size": 1, "max_size": 1, "open": True}
    with (
        Database(URL, min_size=1, max_size=1) as db,
        ConnectionPool(URL, kwargs={"autocommit": True}, **options) as raw,
        ConnectionPool(URL, **options) as raw_tx,
    ):
        db.open(wait=True)
        raw.wait()
        raw_tx.wait()

        def raw_one() -> Any:
            with raw.connection() as conn:
                return conn.execute("select 1").fetchone()

        def raw_dict_one() -> Any:
            with raw.connection() as conn:
                return conn.cursor(row_factory=dict_row).execute("select 1").fetchone()

        def raw_tx_one() -> Any:
            with raw_tx.connection() as conn:
                return conn.execute("select 1").fetchone()

        many = "select g as id, 'name ' || g as name, g * 1.5 as score from generate_series(1, 1000) g"

        def raw_all() -> Any:
            with raw.connection() as conn:
                return conn.cursor(row_factory=dict_row).execute(many).fetchall()

        assert db.fetch_one("select 1") == {"?column?": 1}
        assert raw_one() == (1,)
        assert db.fetch_all(many) == raw_all()
        measures = {
            "ours": wall_loop("f('select 1')", f=db.fetch_one),
            "raw": wall_loop("f()", f=raw_one),
            "raw-dict": wall_loop("f()", f=raw_dict_one),
            "raw-tx": wall_loop("f()", f=raw_tx_one),
        }
        rounds, loops = interleaved(measures, settings, min_time=settings.min_time * 5)
        cpu = {
            "ours-cpu": wall_loop("f('select 1')", f=db.fetch_one, clock=time.process_time),
            "raw-cpu": wall_loop("f()", f=raw_one, clock=time.process_time),
        }
        cpu_rounds, cpu_loops = interleaved(cpu, settings, min_time=settings.min_time * 5)
        many_measures = {
            "ours-all": wall_loop("f(q)", f=db.fetch_all, q=many),
            "raw-all": wall_loop("f()", f=raw_all),
        }
        many_rounds, many_loops = interleaved(
            many_measures, settings, min_time=settings.min_time * 5
        )
    return [
        pair_result(
            "1. fetch_one('select 1') vs psycopg_pool",
            rounds,
            loops,
            ("ours", "Database.fetch_one('select 1') -> dict"),
            (
                "raw",
                "with pool.connection() as c: c.execute('select 1').fetchone(), autocommit pool",
            ),
            max_ratio=1.10,
            target="<= 1.10",
        ),
        pair_result(
            "1c. fetch_one, CPU time of the process",
            cpu_rounds,
            cpu_loops,
            ("ours-cpu", "Database.fetch_one('select 1'), CPU time (client + pool threads)"),
            (
                "raw-cpu",
                "the raw autocommit pool, CPU time: what the wrapper adds, without the network",
            ),
        ),
        pair_result(
            "1d. fetch_one vs psycopg_pool + dict_row",
            rounds,
            loops,
            ("ours", "Database.fetch_one('select 1') -> dict"),
            (
                "raw-dict",
                "the raw autocommit pool with cursor(row_factory=dict_row): the same dict",
            ),
        ),
        pair_result(
            "1b. fetch_one vs psycopg_pool default",
            rounds,
            loops,
            ("ours", "Database.fetch_one('select 1')"),
            ("raw-tx", "the same on psycopg_pool's default pool (BEGIN ... COMMIT per checkout)"),
        ),
        pair_result(
            "3. fetch_all 1,000 rows as dicts",
            many_rounds,
            many_loops,
            ("ours-all", "Database.fetch_all(query) -> list[dict]"),
            ("raw-all", "pool.connection() + cursor(row_factory=dict_row).execute().fetchall()"),
            max_ratio=1.10,
            target="<= 1.10",
        ),
    ]


# -- 2.: async ----------------------------------------------------------------------------


def bench_async(settings: Settings, event_loop: asyncio.AbstractEventLoop) -> list[Result]:
    from psycopg_pool import AsyncConnectionPool

    from utils.db import AsyncDatabase

    async def setup() -> tuple[Any, Any, Any]:
        db = await AsyncDatabase(URL, min_size=1, max_size=1).open(wait=True)
        raw = AsyncConnectionPool(
            URL, kwargs={"autocommit": True}, min_size=1, max_size=1, open=False
        )
        await raw.open(wait=True)
        apg = None
        if installed_version("asyncpg"):
            import asyncpg

            apg = await asyncpg.create_pool(URL, min_size=1, max_size=1)
        return db, raw, apg

    db, raw, apg = event_loop.run_until_complete(setup())

    async def raw_one() -> Any:
        async with raw.connection() as conn:
            cursor = await conn.execute("select 1")
            return await cursor.fetchone()

    async def check() -> None:
        assert await db.fetch_one("select 1") == {"?column?": 1}
        assert await raw_one() == (1,)

    event_loop.run_until_complete(check())
    measures = {
        "ours": async_loop(event_loop, lambda: db.fetch_one("select 1")),
        "raw": async_loop(event_loop, raw_one),
    }
    if apg is not None:
        measures["asyncpg"] = async_loop(event_loop, lambda: apg.fetchrow("select 1"))
    try:
        rounds, loops = interleaved(measures, settings, min_time=settings.min_time * 5)
    finally:

        async def teardown() -> None:
            await db.close()
            await raw.close()
            if apg is not None:
                await apg.close()

        event_loop.run_until_complete(teardown())
    results = [
        pair_result(
            "2. AsyncDatabase.fetch_one vs AsyncConnectionPool",
            rounds,
            loops,
            ("ours", "await AsyncDatabase.fetch_one('select 1')"),
            ("raw", "async with pool.connection(): await execute + fetchone, autocommit pool"),
            max_ratio=1.10,
            target="<= 1.10",
        )
    ]
    if apg is not None:
        results.append(
            pair_result(
                "2b. AsyncDatabase.fetch_one vs asyncpg",
                rounds,
                loops,
                ("ours", "await AsyncDatabase.fetch_one('select 1')"),
                ("asyncpg", "await asyncpg pool.fetchrow('select 1')"),
            )
        )
    return results


# -- 4.: COPY -----------------------------------------------------------------------------


def rows(count: int) -> Iterator[tuple[int, str, float]]:
    for i in range(count):
        yield (i, "name", i * 0.5)


def bench_copy(settings: Settings) -> tuple[list[Result], dict[str, Any]]:
    from psycopg_pool import ConnectionPool

    from utils.db import Database

    total = 100_000 if settings.quick else 1_000_000
    inserts = 20_000
    extra: dict[str, Any] = {"copy_rows": total, "execute_many_rows": inserts}
    with (
        Database(URL, min_size=1, max_size=1) as db,
        ConnectionPool(URL, kwargs={"autocommit": True}, min_size=1, max_size=1) as raw,
    ):
        db.execute(f"drop table if exists {TABLE}")
        db.execute(f"create unlogged table {TABLE} (id int, name text, score float8)")
        try:

            def ours(n: int) -> float:
                db.execute(f"truncate {TABLE}")
                started = time.perf_counter()
                sent = db.copy_records(TABLE, ["id", "name", "score"], rows(n))
                took = time.perf_counter() - started
                assert sent == n
                return took

            def peer(n: int) -> float:
                with raw.connection() as conn:
                    conn.execute(f"truncate {TABLE}")
                    started = time.perf_counter()
                    cursor = conn.cursor()
                    with cursor.copy(
                        f"COPY {TABLE} (id, name, score) FROM STDIN (FORMAT BINARY)"
                    ) as copy:
                        copy.set_types(["int4", "text", "float8"])
                        for row in rows(n):
                            copy.write_row(row)
                    return time.perf_counter() - started

            def many(n: int) -> float:
                db.execute(f"truncate {TABLE}")
                started = time.perf_counter()
                db.execute_many(
                    f"insert into {TABLE} (id, name, score) values (%s, %s, %s)", rows(n)
                )
                return time.perf_counter() - started

            ours(1000)
            assert db.fetch_val(f"select count(*) from {TABLE}") == 1000
            copy_rounds = max(2, min(settings.rounds, 3))
            per_row: dict[str, list[float]] = {"ours": [], "peer": [], "many": []}
            for index in range(copy_rounds):
                order = [("ours", ours, total), ("peer", peer, total), ("many", many, inserts)]
                if index % 2:
                    order.reverse()
                for name, run, n in order:
                    per_row[name].append(run(n) / n * 1e6)
            db.execute(f"truncate {TABLE}")
            peaks = {}
            for share in (total // 10, total):
                gc.collect()
                tracemalloc.start()
                db.copy_records(TABLE, ["id", "name", "score"], rows(share))
                peaks[share] = tracemalloc.get_traced_memory()[1]
                tracemalloc.stop()
                db.execute(f"truncate {TABLE}")
        finally:
            db.execute(f"drop table if exists {TABLE}")
    small, big = peaks[total // 10], peaks[total]
    extra["copy_peak_bytes"] = {str(total // 10): small, str(total): big}
    extra["copy_memory_flat"] = big <= 2 * small
    extra["copy_rows_per_second"] = round(1e6 / statistics.median(per_row["ours"]))
    results = [
        summarize(
            f"4. copy_records {total:,} rows x 3 cols vs raw COPY",
            ours="Database.copy_records(table, cols, generator) (binary COPY), µs per row",
            peer="cursor.copy('COPY ... FROM STDIN (FORMAT BINARY)') + set_types + write_row",
            rounds_us=list(zip(per_row["ours"], per_row["peer"], strict=True)),
            max_ratio=1.20,
            target="<= 1.20",
        ),
        summarize(
            "4b. copy_records vs execute_many INSERT",
            ours="Database.copy_records, µs per row",
            peer=f"Database.execute_many(INSERT ..., {inserts:,} rows), µs per row",
            rounds_us=list(zip(per_row["ours"], per_row["many"], strict=True)),
            max_ratio=0.10,
            target="<= 0.10 (10x faster)",
        ),
    ]
    return results, extra


def reachable() -> str | None:
    try:
        import psycopg

        with psycopg.connect(URL, connect_timeout=2):
            return None
    except Exception as exc:
        return f"PostgreSQL not reachable at {URL.split('@')[-1]} ({type(exc).__name__}): skipped"


def main() -> int:
    settings = parse_args(__doc__.splitlines()[0], rounds=(15, 3))
    skipped = reachable()
    results: list[Result] = []
    extra: dict[str, Any] = {}
    errors: dict[str, str] = {}
    if skipped:
        print(skipped)
    else:
        event_loop = asyncio.new_event_loop()
        plan: list[tuple[str, Callable[[], Any]]] = [
            ("sync", lambda: bench_sync(settings)),
            ("async", lambda: bench_async(settings, event_loop)),
            ("copy", lambda: bench_copy(settings)),
        ]
        for name, run in plan:
            try:
                outcome = run()
            except Exception:
                errors[name] = traceback.format_exc()
                print(f"{name} failed:\n{errors[name]}", file=sys.stderr)
                continue
            if isinstance(outcome, tuple):
                results.extend(outcome[0])
                extra.update(outcome[1])
            else:
                results.extend(outcome)
        event_loop.close()
        print_table(
            "utils.db vs raw psycopg / psycopg_pool (ratio = ours/peer, lower is better)",
            results,
            settings,
            method=(
                f"median of {settings.rounds} interleaved rounds (COPY: 3 rounds, per row), "
                f"min of {settings.repeat} per side per round, WALL-CLOCK time per call"
            ),
        )
        if extra:
            print(
                f"\n  COPY peak Python memory: {extra['copy_peak_bytes']} bytes "
                f"({'flat' if extra['copy_memory_flat'] else 'NOT flat'}); "
                f"{extra['copy_rows_per_second']:,} rows/s"
            )
    if settings.json_path:
        env = environment({"peers": {dist: installed_version(dist) for dist in PEERS}})
        write_json(
            settings.json_path, "bench_db", results, env, skipped=skipped, errors=errors, **extra
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
