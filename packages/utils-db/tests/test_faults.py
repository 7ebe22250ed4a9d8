"""Fault tests on a PRIVATE cluster (initdb + pg_ctl on a free port): never the shared server."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from utils.core.testing import wait_until
from utils.db import Database, DatabaseUnavailableError, Notification

from .conftest import PrivatePostgres

pytestmark = pytest.mark.slow


def test_restart_under_load(private_pg: PrivatePostgres, utils_logs: list[dict[str, Any]]) -> None:
    timeout = 1.0
    outcomes: list[tuple[float, float, str]] = []  # (ended at, seconds, outcome)
    notes: list[Notification] = []
    stop = threading.Event()
    with Database(private_pg.url, min_size=2, max_size=4, timeout=timeout) as db:
        db.open(wait=True)

        def load() -> None:
            while not stop.is_set():
                started = time.monotonic()
                try:
                    db.fetch_val("select 1")
                    outcome = "ok"
                except DatabaseUnavailableError:
                    outcome = "unavailable"
                except Exception as exc:  # pragma: no cover - reported by the assertion
                    outcome = repr(exc)
                ended = time.monotonic()
                outcomes.append((ended, ended - started, outcome))
                stop.wait(0.01)  # pacing: a steady trickle of calls, ended by the stop signal

        listener = db.listen("restarts")

        def listen() -> None:
            for note in listener:
                notes.append(note)
                if note.payload == "after":
                    return

        listening = threading.Thread(target=listen, daemon=True)
        listening.start()
        workers = [threading.Thread(target=load) for _ in range(3)]
        for worker in workers:
            worker.start()
        wait_until(lambda: sum(o[2] == "ok" for o in outcomes) >= 10, timeout=10)
        private_pg.stop()
        stopped = time.monotonic()
        # The scenario: the server stays down for 2 s under load — until the load
        # threads have seen failures spanning that long (each within its timeout, below).
        wait_until(
            lambda: any(o[2] == "unavailable" and o[0] > stopped + 2.0 for o in outcomes),
            timeout=15,
        )
        private_pg.start()
        restarted = time.monotonic()

        def settled() -> bool:
            oks = [o[0] for o in outcomes if o[0] > restarted and o[2] == "ok"]
            return bool(oks) and any(o[0] > min(oks) + 0.5 for o in outcomes)

        wait_until(settled, timeout=15)  # recovered, and calls kept coming for a while after
        stop.set()
        for worker in workers:
            worker.join()
        deadline_at = time.monotonic() + 10
        while listening.is_alive() and time.monotonic() < deadline_at:
            db.notify("restarts", "after")
            listening.join(0.1)

    unexpected = [o for o in outcomes if o[2] not in ("ok", "unavailable")]
    assert not unexpected, unexpected
    during = [o for o in outcomes if stopped + 0.1 < o[0] < restarted]
    assert during
    assert all(o[2] == "unavailable" for o in during)
    assert all(o[1] <= timeout + 0.5 for o in during), max(o[1] for o in during)
    first_ok = min(o[0] for o in outcomes if o[0] > restarted and o[2] == "ok")
    print(f"recovered {first_ok - restarted:.3f}s after the restart")
    assert first_ok - restarted <= 1.0, first_ok - restarted
    assert all(o[2] == "ok" for o in outcomes if o[0] > first_ok + 0.2)
    assert [n.payload for n in notes][-1] == "after"  # LISTEN resumed after the restart
    events = [entry["event"] for entry in utils_logs]
    assert events.count("db.unavailable") == 1
    assert events.count("db.recovered") == 1
    assert "db.listen_lost" in events


def test_async_restart(private_pg: PrivatePostgres) -> None:
    import asyncio

    from utils.db import AsyncDatabase

    async def main() -> None:
        async with AsyncDatabase(private_pg.url, min_size=1, max_size=2, timeout=1.0) as db:
            assert await db.fetch_val("select 1") == 1
            listener = db.listen("async_restarts")
            first = asyncio.ensure_future(listener.__anext__())
            while not first.done():  # resend until the listener is in place and hears one
                await db.notify("async_restarts", "before")
                await asyncio.wait({first}, timeout=0.02)
            assert first.result().payload == "before"
            private_pg.stop()
            started = time.monotonic()
            with pytest.raises(DatabaseUnavailableError):
                await db.fetch_val("select 1")
            assert time.monotonic() - started <= 1.5
            private_pg.start()
            restarted = time.monotonic()
            while True:
                try:
                    assert await db.fetch_val("select 1") == 1
                    break
                except DatabaseUnavailableError:
                    # pg_ctl start -w returned once the server accepts connections: a
                    # failure here is the pool noticing, and each try waits on real I/O.
                    assert time.monotonic() - restarted < 5
            resumed = asyncio.ensure_future(listener.__anext__())
            while not resumed.done() and time.monotonic() - restarted < 10:
                await db.notify("async_restarts", "after")
                await asyncio.wait({resumed}, timeout=0.05)
            assert resumed.result().payload == "after"
            await listener.aclose()  # type: ignore[attr-defined]

    asyncio.run(main())
