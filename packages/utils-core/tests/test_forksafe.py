"""utils.core.forksafe: a lock held by another thread at fork time is replaced in the child."""

from __future__ import annotations

import gc
import os
import threading
import weakref

import pytest

from utils.core.forksafe import registered, reset_after_fork

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


class Guarded:
    __slots__ = ("__weakref__", "lock", "resets")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.resets = 0
        reset_after_fork(self, Guarded._reset)

    def _reset(self) -> None:
        self.lock = threading.Lock()
        self.resets += 1


def _in_child(body: object) -> int:
    """Fork; run ``body()`` in the child (exit 0 if it returns True); return the exit code."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit code only
        code = 1
        try:
            code = 0 if body() else 3  # type: ignore[operator]
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_a_lock_held_by_another_thread_at_fork_is_usable_in_the_child() -> None:
    guarded = Guarded()
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with guarded.lock:
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(10)
    try:
        # Without the reset the child's acquire would block forever: bound it with a timeout.
        code = _in_child(lambda: guarded.lock.acquire(timeout=5) and guarded.resets == 1)
    finally:
        release.set()
        holder.join()
    assert code == 0
    assert guarded.resets == 0  # the parent is untouched


def test_late_resets_run_after_the_others() -> None:
    order: list[str] = []
    first, late = Guarded(), Guarded()
    reset_after_fork(late, lambda _: order.append("late"), late=True)
    reset_after_fork(first, lambda _: order.append("first"))
    assert _in_child(lambda: order[-2:] == ["first", "late"]) == 0


def test_registration_is_weak() -> None:
    guarded = Guarded()
    assert registered(guarded)
    assert not registered(object())  # not weak-referenceable: never registered
    ref = weakref.ref(guarded)
    del guarded
    gc.collect()
    assert ref() is None  # the registry did not keep it alive


def test_an_outage_whose_lock_was_held_at_fork_works_in_the_child() -> None:
    from utils.core.report import Outage
    from utils.core.testing import FakeClock

    clock = FakeClock()
    outage = Outage("redis", events=("t.down", "t.up"), logger="t", clock=clock)
    outage.failed(ConnectionError("gone"))
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with outage._lock:
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(10)
    try:
        clock.advance(5)  # a probe is due: allow() takes the lock
        code = _in_child(outage.allow)
    finally:
        release.set()
        holder.join()
    assert code == 0
