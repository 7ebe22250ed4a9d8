"""Tests of the utils.core.testing additions: FakeClock and PrivateRedis.freeze/thaw/pid."""

from __future__ import annotations

import asyncio
import math
import os
import signal
from pathlib import Path

import pytest
import redis
import redis.exceptions as rex

from utils.core.testing import FakeClock, PrivateRedis, service_reachable, wait_until

# --- FakeClock -------------------------------------------------------------------------------


def test_reads() -> None:
    clock = FakeClock()
    assert clock() == 0.0
    assert clock.monotonic() == 0.0
    assert clock.sleeps == []
    started = FakeClock(100)
    assert started() == 100.0
    assert type(started()) is float
    assert repr(started) == "FakeClock(now=100.0)"


def test_advance() -> None:
    clock = FakeClock(10.0)
    clock.advance(2)
    clock.advance(0.5)
    clock.advance(0)
    assert clock() == clock.monotonic() == 12.5
    assert clock.sleeps == []  # advancing is not sleeping


@pytest.mark.parametrize("seconds", [-1, -1e-9, -math.inf, math.nan])
def test_refuses_going_back(seconds: float) -> None:
    clock = FakeClock(5.0)
    with pytest.raises(ValueError, match="a monotonic clock cannot go back"):
        clock.advance(seconds)
    assert clock() == 5.0


def test_jump_by_assignment() -> None:
    clock = FakeClock()
    clock.now = 42.0
    assert clock() == 42.0


def test_sleep_records_and_advances_without_waiting() -> None:
    clock = FakeClock()
    clock.sleep(1.5)
    clock.sleep(0)
    clock.sleep(3600 * 24 * 365)  # a year, instantly
    assert clock.sleeps == [1.5, 0, 3600 * 24 * 365]
    assert clock() == 1.5 + 3600 * 24 * 365


def test_negative_sleep_is_recorded_but_does_not_go_back() -> None:
    clock = FakeClock(1.0)
    clock.sleep(-2.0)
    assert clock.sleeps == [-2.0]
    assert clock() == 1.0


def test_asleep_advances_and_yields_to_the_loop() -> None:
    clock = FakeClock()
    order: list[str] = []

    async def sleeper() -> None:
        order.append("sleeper before")
        await clock.asleep(2.0)
        order.append("sleeper after")

    async def other() -> None:
        order.append("other")

    async def main() -> None:
        await asyncio.gather(sleeper(), other())

    asyncio.run(main())
    assert clock() == 2.0
    assert clock.sleeps == [2.0]
    assert order == ["sleeper before", "other", "sleeper after"]


def test_fixture_gives_a_fresh_clock(utils_fake_clock: FakeClock) -> None:
    assert isinstance(utils_fake_clock, FakeClock)
    assert utils_fake_clock() == 0.0
    assert utils_fake_clock.sleeps == []


# --- PrivateRedis.freeze / thaw / pid --------------------------------------------------------


def process_state(pid: int) -> str:
    """The kernel's one-letter state of a process: R/S running or sleeping, T stopped."""
    status = Path(f"/proc/{pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("State:"))
    return line.split()[1]


needs_proc = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")


def pid_of(server: PrivateRedis) -> int | None:
    return server.pid


def test_pid_follows_the_process(utils_private_redis: PrivateRedis) -> None:
    server = utils_private_redis
    pid = server.pid
    assert isinstance(pid, int)
    os.kill(pid, 0)  # a live process
    server.stop()
    assert pid_of(server) is None
    server.start()
    new_pid = pid_of(server)
    assert new_pid is not None
    assert new_pid != pid


@needs_proc
def test_freeze_and_thaw(utils_private_redis: PrivateRedis) -> None:
    server = utils_private_redis
    pid = server.pid
    assert pid is not None
    client = redis.Redis.from_url(server.url, socket_timeout=0.2)
    try:
        assert client.set("k", "v") is True
        server.freeze()
        try:
            wait_until(lambda: process_state(pid) == "T", message="redis-server stopped")
            assert server.is_running()  # stopped, not dead
            assert server.pid == pid
            assert not service_reachable(server.url, timeout=0.2)  # accepts, never answers
            with pytest.raises(rex.TimeoutError):
                client.get("k")
        finally:
            server.thaw()
        wait_until(lambda: process_state(pid) != "T", message="redis-server resumed")
        assert service_reachable(server.url)
        assert client.get("k") == b"v"  # nothing was lost
    finally:
        client.close()


def test_freeze_and_thaw_without_a_process_do_nothing(utils_private_redis: PrivateRedis) -> None:
    server = utils_private_redis
    server.stop()
    server.freeze()
    server.thaw()
    assert server.pid is None
    assert not server.is_running()


def test_a_frozen_server_can_be_stopped_and_restarted(utils_private_redis: PrivateRedis) -> None:
    server = utils_private_redis
    server.freeze()
    server.stop()  # SIGKILL works on a stopped process
    assert not server.is_running()
    server.start()
    assert service_reachable(server.url)


def test_freeze_and_thaw_after_the_server_died(utils_private_redis: PrivateRedis) -> None:
    server = utils_private_redis
    pid = server.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)  # a crash
    wait_until(lambda: not server.is_running(), message="redis-server gone")  # reaped: the
    server.freeze()  # pid may belong to another process now: nothing is signalled
    server.thaw()
    assert server.pid is None
