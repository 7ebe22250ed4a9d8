from __future__ import annotations

import threading
import time

import pytest

from utils.core import ValidationError, deadline
from utils.core.testing import wait_until
from utils.db import Database, LockTimeoutError, Notification
from utils.db.testing import unique_name


def test_listen_and_notify(db: Database) -> None:
    channel = unique_name("chan")
    received: list[Notification] = []
    listener = db.listen(channel)

    def consume() -> None:
        for note in listener:
            received.append(note)
            return

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    for _ in range(300):
        db.notify(channel, "payload 1")
        thread.join(0.02)
        if not thread.is_alive():
            break
    assert received
    assert received[0].channel == channel
    assert received[0].payload == "payload 1"
    assert received[0].pid > 0
    with db.transaction():
        db.notify(channel, "only on commit")
    with pytest.raises(ValidationError):
        next(db.listen(""))


def test_advisory_lock_is_exclusive(db: Database) -> None:
    order: list[str] = []
    with db.advisory_lock("leader"):
        with (
            pytest.raises(LockTimeoutError) as caught,
            db.advisory_lock("leader", timeout=0.1),
        ):
            order.append("never")
        assert "'leader'" in str(caught.value)
        assert caught.value.details["timeout"] == 0.1
        other = threading.Thread(target=lambda: _hold(db, order))
        other.start()
        wait_until(  # the other session is queued behind our advisory lock
            lambda: (
                db.fetch_val(
                    "select count(*) from pg_locks where locktype = 'advisory' and not granted"
                )
                >= 1
            )
        )
        order.append("first released")
    other.join()
    assert order == ["first released", "second got it"]


def _hold(db: Database, order: list[str]) -> None:
    with db.advisory_lock("leader", timeout=5):
        order.append("second got it")


def test_advisory_lock_keys_and_deadline(db: Database) -> None:
    with db.advisory_lock(2**62):
        assert db.fetch_val("select count(*) from pg_locks where locktype = 'advisory'") >= 1
    for bad in (True, 2**63, 1.5):
        with pytest.raises(ValidationError), db.advisory_lock(bad):  # type: ignore[arg-type]
            pass
    with db.advisory_lock(7):
        started = time.monotonic()
        with deadline(0.2), pytest.raises(LockTimeoutError), db.advisory_lock(7):
            pass
        assert time.monotonic() - started < 1.0


def test_advisory_lock_connect_failure() -> None:
    from utils.db import DatabaseUnavailableError

    db = Database("postgresql://postgres@127.0.0.1:1/x", timeout=1)
    with pytest.raises(DatabaseUnavailableError), db.advisory_lock(1):
        pass


def test_listen_fails_at_once_when_it_never_connected() -> None:
    from utils.db import DatabaseUnavailableError

    db = Database("postgresql://postgres@127.0.0.1:1/x", timeout=1)
    with pytest.raises(DatabaseUnavailableError):
        next(db.listen("jobs"))
