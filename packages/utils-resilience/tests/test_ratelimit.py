"""RateLimiter (GCRA) and the in-memory storage: arithmetic, concurrency, bounded memory."""

from __future__ import annotations

import asyncio
import doctest
import math
import pickle
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import FrozenInstanceError
from datetime import timedelta
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import utils.resilience._ratelimit_redis as ratelimit_redis_module
import utils.resilience.ratelimit as ratelimit_module
from utils.core import ThrottledError, UnavailableError, ValidationError, deadline
from utils.core.metrics import InMemorySink
from utils.core.testing import FakeClock
from utils.resilience import _timing
from utils.resilience._strategy import Strategy
from utils.resilience.errors import RateLimitExceeded
from utils.resilience.ratelimit import (
    Decision,
    MemoryRateLimitStorage,
    RateLimiter,
    RateLimitStorage,
    RateLimitStorageError,
)

# --------------------------------------------------------------------------------------
# Helpers


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1000.0)


class DelegatingStorage:
    """A third-party storage: any RateLimitStorage goes through the generic path."""

    def __init__(self, inner: RateLimitStorage | None = None) -> None:
        self.inner = inner or MemoryRateLimitStorage()
        self.calls = 0

    def update(
        self, key: str, emission_interval: float, tolerance: float, cost: int, clock: Any
    ) -> tuple[bool, float]:
        self.calls += 1
        return self.inner.update(key, emission_interval, tolerance, cost, clock)

    async def aupdate(
        self, key: str, emission_interval: float, tolerance: float, cost: int, clock: Any
    ) -> tuple[bool, float]:
        self.calls += 1
        await asyncio.sleep(0)  # a real await between tasks
        return await self.inner.aupdate(key, emission_interval, tolerance, cost, clock)


class DownStorage:
    """A storage whose backend is down and that fails closed."""

    def update(self, *args: Any) -> tuple[bool, float]:
        raise RateLimitStorageError("backend down", retry_after=2.5)

    async def aupdate(self, *args: Any) -> tuple[bool, float]:
        raise RateLimitStorageError("backend down", retry_after=2.5)


def generic_storage(kind: str) -> dict[str, Any]:
    """Extra RateLimiter arguments that select the generic (non-memory) path."""
    return {"storage": DelegatingStorage(), "name": "g"} if kind == "generic" else {}


def limiters(clock: FakeClock, **kwargs: Any) -> Iterator[RateLimiter]:
    """The same configuration on the fast in-memory path and on the generic path."""
    yield RateLimiter(clock=clock, **kwargs)
    yield RateLimiter(clock=clock, storage=DelegatingStorage(), name="generic", **kwargs)


# --------------------------------------------------------------------------------------
# Basic behaviour


@pytest.mark.parametrize("kind", ["memory", "generic"])
def test_burst_then_steady_rate(clock: FakeClock, kind: str) -> None:
    limiter = list(limiters(clock, rate=4, per=2.0, burst=3))[kind == "generic"]
    assert limiter.emission_interval == 0.5
    assert [limiter.try_acquire("k").remaining for _ in range(3)] == [2, 1, 0]
    refused = limiter.try_acquire("k")
    assert refused == Decision(False, 0.5, 0)
    assert not refused
    clock.advance(0.5)
    assert limiter.try_acquire("k") == Decision(True, 0.0, 0)
    clock.advance(10)  # idle: back to a full burst
    assert limiter.try_acquire("k").remaining == 2
    assert limiter.try_acquire("other").remaining == 2  # keys are independent


@pytest.mark.parametrize("kind", ["memory", "generic"])
def test_cost(clock: FakeClock, kind: str) -> None:
    limiter = list(limiters(clock, rate=10, per=1.0, burst=5))[kind == "generic"]
    assert limiter.try_acquire("k", cost=3).remaining == 2
    refused = limiter.try_acquire("k", cost=3)
    assert not refused.allowed
    assert refused.remaining == 2
    assert refused.retry_after == pytest.approx(0.1)
    assert limiter.try_acquire("k", cost=2).remaining == 0


def test_defaults() -> None:
    limiter = RateLimiter(2.5, per=timedelta(seconds=5))
    assert (limiter.rate, limiter.per, limiter.burst, limiter.name) == (2.5, 5.0, 2, None)
    assert RateLimiter(0.1).burst == 1
    assert isinstance(limiter.storage, MemoryRateLimitStorage)
    assert repr(limiter) == (
        "RateLimiter(rate=2.5, per=5.0, burst=2, name=None, storage=MemoryRateLimitStorage)"
    )
    assert limiter.try_acquire().allowed  # key "default"


def test_the_fast_path_keeps_the_documented_face() -> None:
    limiter = RateLimiter(5)
    assert limiter.try_acquire.__doc__ == RateLimiter.try_acquire.__doc__
    assert limiter.try_acquire.__name__ == "try_acquire"
    assert RateLimiter.try_acquire(limiter, "k", 2).remaining == 3  # the class method too
    assert limiter.try_acquire("k").remaining == 2


def test_huge_burst_beyond_the_decision_cache(clock: FakeClock) -> None:
    for limiter in limiters(clock, rate=5000, per=1.0):
        assert limiter.try_acquire("k").remaining == 4999
        assert limiter.try_acquire("k", cost=4000).remaining == 999


def test_allowed_decisions_are_shared_objects(clock: FakeClock) -> None:
    limiter = RateLimiter(10, per=1.0, clock=clock)
    first = limiter.try_acquire("a")
    assert limiter.try_acquire("b") is first


# --------------------------------------------------------------------------------------
# Validation


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rate": 0}, "rate must be"),
        ({"rate": -1}, "rate must be"),
        ({"rate": math.inf}, "rate must be"),
        ({"rate": math.nan}, "rate must be"),
        ({"rate": True}, "rate must be"),
        ({"rate": "5"}, "rate must be"),
        ({"rate": 1, "per": 0}, "per must be"),
        ({"rate": 1, "per": -1.0}, "per must be"),
        ({"rate": 1, "per": math.nan}, "per must be"),
        ({"rate": 1, "per": "1s"}, "per must be"),
        ({"rate": 1, "per": timedelta(0)}, "per must be"),
        ({"rate": 1, "burst": 0}, "burst must be"),
        ({"rate": 1, "burst": 1.5}, "burst must be"),
        ({"rate": 1, "burst": True}, "burst must be"),
        ({"rate": 1, "name": ""}, "name must be"),
        ({"rate": 1, "name": 5}, "name must be"),
        ({"rate": 1, "storage": object(), "name": "x"}, "storage must implement"),
        ({"rate": 1, "storage": MemoryRateLimitStorage()}, "needs a name="),
        ({"rate": 1, "clock": 5}, "clock must be callable"),
        ({"rate": 1, "sleep": "no"}, "sleep must be callable"),
        ({"rate": 1e-300, "per": 1e300}, "per must be seconds or a timedelta, at most"),
        ({"rate": 1e-300, "per": 1e8, "burst": 10}, "cannot be represented"),
    ],
)
def test_invalid_configuration(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        RateLimiter(**kwargs)


@pytest.mark.parametrize("cost", [0, -1, 1.5, False, "2", 6])
def test_invalid_cost_is_rejected_up_front(clock: FakeClock, cost: Any) -> None:
    storage = DelegatingStorage()
    limiter = RateLimiter(5, clock=clock, storage=storage, name="n")
    fast = RateLimiter(5, clock=clock)
    calls: list[Any] = [
        lambda: limiter.try_acquire("k", cost),
        lambda: fast.try_acquire("k", cost),
        lambda: limiter.acquire("k", cost),
        lambda: asyncio.run(limiter.atry_acquire("k", cost)),
        lambda: asyncio.run(fast.atry_acquire("k", cost)),
        lambda: asyncio.run(limiter.aacquire("k", cost)),
        lambda: limiter.limit(cost=cost),
    ]
    for call in calls:
        with pytest.raises(ValidationError, match="cost"):
            call()
    assert storage.calls == 0


def test_cost_above_burst_says_it_could_never_succeed() -> None:
    with pytest.raises(ValidationError, match=r"exceeds the burst .* could never be allowed"):
        RateLimiter(5, name="api").try_acquire("k", cost=6)


@pytest.mark.parametrize("timeout", [-1, math.nan, True, "1"])
def test_invalid_timeout(timeout: Any) -> None:
    limiter = RateLimiter(5)
    with pytest.raises(ValidationError, match="timeout"):
        limiter.acquire("k", timeout=timeout)
    with pytest.raises(ValidationError, match="timeout"):
        asyncio.run(limiter.aacquire("k", timeout=timeout))
    with pytest.raises(ValidationError, match="timeout"):
        limiter.limit(timeout=timeout)


def test_invalid_key_for_limit() -> None:
    with pytest.raises(ValidationError, match="key must be"):
        RateLimiter(5).limit(key=5)  # type: ignore[arg-type]


@pytest.mark.parametrize("max_keys", [0, -5, 1.5, True])
def test_invalid_max_keys(max_keys: Any) -> None:
    with pytest.raises(ValidationError, match="max_keys"):
        MemoryRateLimitStorage(max_keys=max_keys)


# --------------------------------------------------------------------------------------
# Decision


def test_decision_is_a_frozen_slotted_value() -> None:
    decision = Decision(False, 1.5, 2)
    with pytest.raises(FrozenInstanceError):
        decision.allowed = True
    with pytest.raises(FrozenInstanceError):
        del decision.remaining
    assert not hasattr(decision, "__dict__")
    assert decision == Decision(False, 1.5, 2)
    assert decision != Decision(False, 1.5, 3)
    assert decision != (False, 1.5, 2)
    assert hash(decision) == hash(Decision(False, 1.5, 2))
    assert repr(decision) == "Decision(allowed=False, retry_after=1.5, remaining=2)"
    assert pickle.loads(pickle.dumps(decision)) == decision
    assert bool(Decision(True)) is True
    assert Decision(True) == Decision(True, 0.0, 0)


# --------------------------------------------------------------------------------------
# GCRA arithmetic, against an exact reference model


class ExactGCRA:
    """GCRA in exact rational arithmetic: the specification the storage must match."""

    def __init__(self, interval: Fraction, burst: int) -> None:
        self.interval = interval
        self.capacity = interval * burst
        self.tats: dict[str, Fraction] = {}

    def decide(self, key: str, now: Fraction, cost: int) -> tuple[bool, Fraction, int]:
        tat = max(self.tats.get(key, now), now)
        new_tat = tat + cost * self.interval
        if new_tat - now <= self.capacity:
            self.tats[key] = new_tat
            return True, Fraction(0), math.floor((self.capacity - (new_tat - now)) / self.interval)
        remaining = math.floor((self.capacity - (tat - now)) / self.interval)
        return False, new_tat - now - self.capacity, remaining


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[int, Fraction, int, list[tuple[int, str, int]]]:
    rate = draw(st.integers(1, 50))
    per = draw(
        st.sampled_from([Fraction(1, 2), Fraction(1), Fraction(2), Fraction(3), Fraction(60)])
    )
    burst = draw(st.integers(1, 20))
    steps = draw(
        st.lists(
            st.tuples(
                st.integers(0, 3000),  # milliseconds to advance
                st.sampled_from(["a", "b"]),
                st.integers(1, burst),
            ),
            min_size=1,
            max_size=80,
        )
    )
    return rate, per, burst, steps


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_decisions_match_the_exact_model(
    scenario: tuple[int, Fraction, int, list[tuple[int, str, int]]],
) -> None:
    rate, per, burst, steps = scenario
    model = ExactGCRA(per / rate, burst)
    exact_now = Fraction(1000)
    clock = FakeClock(float(exact_now))
    limiter = RateLimiter(rate, per=float(per), burst=burst, clock=clock)
    for advance_ms, key, cost in steps:
        exact_now += Fraction(advance_ms, 1000)
        clock.now = float(exact_now)
        allowed, retry_after, remaining = model.decide(key, exact_now, cost)
        decision = limiter.try_acquire(key, cost)
        assert decision.allowed == allowed
        assert decision.remaining == remaining
        assert decision.retry_after == pytest.approx(float(retry_after), abs=1e-9)


@settings(max_examples=200, deadline=None)
@given(
    rate=st.integers(1, 30),
    per=st.floats(0.01, 100),
    burst=st.integers(1, 15),
    steps=st.lists(
        st.tuples(st.floats(0, 3), st.integers(1, 15)),  # (advance in units of T, cost)
        min_size=1,
        max_size=120,
    ),
)
def test_no_window_admits_more_than_burst_plus_rate(
    rate: int, per: float, burst: int, steps: list[tuple[float, int]]
) -> None:
    """Invariant: cells admitted in any window [t1, t2] <= burst + (t2 - t1) / T."""
    clock = FakeClock(1000.0)
    limiter = RateLimiter(rate, per=per, burst=burst, clock=clock)
    interval = limiter.emission_interval
    admitted: list[tuple[float, int]] = []
    for advance, wanted in steps:
        clock.advance(advance * interval)
        cost = min(wanted, burst)
        if limiter.try_acquire("k", cost):
            admitted.append((clock.now, cost))
    for i, (start, _) in enumerate(admitted):
        total = 0
        for end, cost in admitted[i:]:
            total += cost
            assert total <= burst + (end - start) / interval + 1e-6


@settings(max_examples=200, deadline=None)
@given(
    rate=st.integers(1, 40),
    per=st.floats(0.001, 1000),
    burst=st.integers(1, 10),
    warmup=st.lists(st.tuples(st.floats(0, 2), st.integers(1, 10)), max_size=30),
    cost=st.integers(1, 10),
)
def test_retry_after_is_exact(
    rate: int, per: float, burst: int, warmup: list[tuple[float, int]], cost: int
) -> None:
    """Retrying after ``retry_after`` succeeds; retrying a microsecond earlier does not."""
    clock = FakeClock(12345.678)
    limiter = RateLimiter(rate, per=per, burst=burst, clock=clock)
    interval = limiter.emission_interval
    for advance, warm_cost in warmup:
        clock.advance(advance * interval)
        limiter.try_acquire("k", min(warm_cost, burst))
    cost = min(cost, burst)
    while (decision := limiter.try_acquire("k", cost)).allowed:
        pass
    assert decision.retry_after > 0
    start = clock.now
    if decision.retry_after > 2e-6:
        clock.now = start + decision.retry_after - 1e-6
        assert not limiter.try_acquire("k", cost).allowed
    clock.now = start + decision.retry_after
    assert limiter.try_acquire("k", cost).allowed


def test_exactly_burst_after_idle_with_awkward_floats(clock: FakeClock) -> None:
    # 0.1 and 1/3 are not representable: rounding must never cost a request.
    for rate, per in [(3, 1.0), (10, 1.0), (7, 0.7), (1000, 0.1)]:
        limiter = RateLimiter(rate, per=per, clock=clock)
        admitted = sum(limiter.try_acquire(f"{rate}/{per}").allowed for _ in range(rate + 5))
        assert admitted == rate


# --------------------------------------------------------------------------------------
# Concurrency


@pytest.mark.parametrize("kind", ["memory", "generic"])
def test_threads_hammering_one_key_admit_exactly_the_burst(clock: FakeClock, kind: str) -> None:
    limiter = list(limiters(clock, rate=50, per=60.0))[kind == "generic"]
    threads, attempts = 16, 200
    barrier = threading.Barrier(threads)
    results: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        barrier.wait()
        mine = sum(limiter.try_acquire("shared").allowed for _ in range(attempts))
        with lock:
            results.append(mine)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    assert len(results) == threads
    assert sum(results) == 50


def test_threads_inserting_many_keys_stay_bounded(clock: FakeClock) -> None:
    storage = MemoryRateLimitStorage(max_keys=500)
    limiter = RateLimiter(5, clock=clock, storage=storage, name="t")
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(5000):
                assert limiter.try_acquire(f"{n}-{i}").allowed
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    pool = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    assert errors == []
    limiter.try_acquire("one-more")  # sweeps if a racing insert left it above the bound
    assert len(storage) <= 500


@pytest.mark.parametrize("kind", ["memory", "generic"])
def test_asyncio_tasks_hammering_one_key_admit_exactly_the_burst(
    clock: FakeClock, kind: str
) -> None:
    limiter = list(limiters(clock, rate=20, per=60.0))[kind == "generic"]

    async def main() -> int:
        decisions = await asyncio.gather(*(limiter.atry_acquire("k") for _ in range(300)))
        return sum(decision.allowed for decision in decisions)

    assert asyncio.run(main()) == 20


@pytest.mark.parametrize("kind", ["memory", "generic"])
def test_asyncio_waiters_all_get_through_at_the_rate(clock: FakeClock, kind: str) -> None:
    limiter = RateLimiter(
        5,
        per=1.0,
        clock=clock,
        asleep=clock.asleep,
        **generic_storage(kind),
    )
    admitted: list[float] = []

    async def one() -> None:
        await limiter.aacquire("k")
        admitted.append(clock.now)

    async def main() -> None:
        await asyncio.gather(*(one() for _ in range(40)))

    asyncio.run(main())
    assert len(admitted) == 40
    for i, start in enumerate(admitted):
        for j in range(i, len(admitted)):
            assert j - i + 1 <= 5 + (admitted[j] - start) / 0.2 + 1e-6


# --------------------------------------------------------------------------------------
# Bounded memory


def test_a_million_distinct_keys_keep_memory_bounded() -> None:
    clock = FakeClock(1000.0)  # time stands still: no key ever expires (the worst case)
    limiter = RateLimiter(10, per=1.0, clock=clock)
    storage = limiter.storage  # the default: a private storage bounded at 100_000 keys
    assert isinstance(storage, MemoryRateLimitStorage)
    try_acquire = limiter.try_acquire
    largest = 0
    for block in range(100):
        for i in range(block * 10_000, (block + 1) * 10_000):
            try_acquire(str(i))
        largest = max(largest, len(storage))
    assert largest <= 100_000
    assert 90_000 <= len(storage) <= 100_000
    # The newest keys are the ones kept: their state is intact.
    assert limiter.try_acquire("999999").remaining == 8


def test_expired_keys_are_forgotten_first_and_change_no_decision(clock: FakeClock) -> None:
    storage = MemoryRateLimitStorage(max_keys=100)
    limiter = RateLimiter(1, per=1.0, clock=clock, storage=storage, name="e")
    for i in range(60):
        assert limiter.try_acquire(f"old-{i}").allowed
    clock.advance(5)  # every "old" key is now equivalent to a fresh one
    for i in range(41):
        assert limiter.try_acquire(f"new-{i}").allowed
    assert len(storage) == 41  # all 60 expired keys went, no live key was touched
    for i in range(41):
        assert not limiter.try_acquire(f"new-{i}").allowed  # state intact
    assert limiter.try_acquire("old-0").allowed  # forgotten == fresh


def test_live_keys_are_evicted_oldest_inserted_first(clock: FakeClock) -> None:
    storage = MemoryRateLimitStorage(max_keys=10)  # trims to 9 when above 10
    limiter = RateLimiter(1, per=60.0, clock=clock, storage=storage, name="o")
    for i in range(11):
        assert limiter.try_acquire(str(i)).allowed
    assert len(storage) == 9
    assert storage.max_keys == 10
    assert "keys=9" in repr(storage)
    # 0 and 1 were forgotten: more permissive for them (a fresh burst), never stricter.
    assert limiter.try_acquire("0").allowed
    assert not limiter.try_acquire("10").allowed


def test_update_protocol_of_the_memory_storage_sweeps_too(clock: FakeClock) -> None:
    storage = MemoryRateLimitStorage(max_keys=3)
    for key in "abcd":
        assert storage.update(key, 1.0, 0.0, 1, clock) == (True, 1.0)
    assert len(storage) == 2
    assert storage.update("d", 1.0, 0.0, 1, clock) == (False, 1.0)
    clock.advance(0.25)
    assert storage.update("d", 1.0, 1.0, 1, clock) == (True, 1.75)


def test_sweep_details(clock: FakeClock) -> None:
    storage = MemoryRateLimitStorage(max_keys=4)
    for key in "abc":
        storage.update(key, 1.0, 0.0, 1, clock)
    storage._sweep(clock())  # not above the bound (another thread swept): nothing to do
    assert len(storage) == 3
    # Another thread is sweeping: this one does not wait for it and does not sweep.
    storage._sweep_lock.acquire()
    try:
        for key in "defg":
            storage.update(key, 1.0, 0.0, 1, clock)
        assert len(storage) == 7
    finally:
        storage._sweep_lock.release()

    class RefreshingDict(dict[str, float]):
        """Simulates a key refreshed by another thread between snapshot and deletion."""

        def copy(self) -> dict[str, float]:
            snapshot = dict(self)
            self["a"] = clock() + 100.0
            del self["b"]
            return snapshot

    storage._tats = RefreshingDict(storage._tats)
    storage._sweep(clock() + 10)  # everything looked expired in the snapshot
    assert list(storage._tats) == ["a"]  # refreshed meanwhile: kept


# --------------------------------------------------------------------------------------
# acquire / aacquire


@pytest.mark.parametrize("kind", ["memory", "generic"])
def test_acquire_waits_exactly_the_retry_after(clock: FakeClock, kind: str) -> None:
    limiter = RateLimiter(
        2,
        per=1.0,
        clock=clock,
        sleep=clock.sleep,
        **generic_storage(kind),
    )
    for _ in range(2):
        limiter.acquire("k")
    assert limiter.acquire("k", cost=2, timeout=None) == Decision(True, 0.0, 0)
    assert clock.sleeps == [pytest.approx(1.0)]
    assert limiter.acquire("k", timeout=0.5).allowed
    assert clock.sleeps[1:] == [pytest.approx(0.5)]


def test_acquire_gives_up_when_the_wait_exceeds_the_timeout(
    clock: FakeClock, utils_metrics: InMemorySink
) -> None:
    limiter = RateLimiter(1, per=10.0, clock=clock, sleep=clock.sleep, name="api")
    limiter.acquire("k")
    with pytest.raises(RateLimitExceeded) as info:
        limiter.acquire("k", timeout=9.9)
    error = info.value
    assert isinstance(error, ThrottledError)
    assert error.retry_after == pytest.approx(10.0)
    assert error.retryable
    assert error.details == {"limiter": "api", "rate": 1, "per": 10.0}
    assert "limit reached" in str(error)
    assert "k" not in str(error).replace("api", "")  # keys never appear in messages
    assert clock.sleeps == []
    assert utils_metrics.count("ratelimit.rejected", limiter="api") == 1


@pytest.mark.parametrize("kind", ["memory", "generic"])
def test_acquire_counts_elapsed_time_against_the_timeout(clock: FakeClock, kind: str) -> None:
    """Another client takes the slot each time we wake up: the total wait is capped."""
    storage: RateLimitStorage = (
        MemoryRateLimitStorage() if kind == "memory" else DelegatingStorage()
    )
    other = RateLimiter(1, per=1.0, clock=clock, storage=storage, name="x")

    def sleep_and_lose_the_race(seconds: float) -> None:
        clock.sleep(seconds)
        assert other.try_acquire("k").allowed  # someone else got it

    waiting = RateLimiter(
        1, per=1.0, clock=clock, storage=storage, name="x", sleep=sleep_and_lose_the_race
    )
    other.try_acquire("k")
    with pytest.raises(RateLimitExceeded):
        waiting.acquire("k", timeout=2.5)
    assert clock.sleeps == [pytest.approx(1.0), pytest.approx(1.0)]


def test_acquire_never_waits_past_the_deadline(clock: FakeClock) -> None:
    limiter = RateLimiter(1, per=10.0, clock=clock, sleep=clock.sleep)
    limiter.acquire("k")
    with deadline(5.0), pytest.raises(RateLimitExceeded) as info:
        limiter.acquire("k")  # timeout=None, but the deadline is nearer than 10 s
    assert info.value.retry_after == pytest.approx(10.0)
    with deadline(60.0):
        assert limiter.acquire("k", timeout=30).allowed
    assert clock.sleeps == [pytest.approx(10.0)]


def test_async_acquire_timeout_and_deadline(clock: FakeClock) -> None:
    limiter = RateLimiter(1, per=10.0, clock=clock, asleep=clock.asleep)

    async def main() -> None:
        await limiter.aacquire("k")
        with pytest.raises(RateLimitExceeded):
            await limiter.aacquire("k", timeout=1)
        async with deadline(1.0):
            with pytest.raises(RateLimitExceeded):
                await limiter.aacquire("k")
        assert (await limiter.aacquire("k", timeout=10)).allowed

    asyncio.run(main())
    assert clock.sleeps == [pytest.approx(10.0)]


def test_clock_and_sleep_are_looked_up_at_call_time(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    limiter = RateLimiter(1, per=3.0)  # built before the patch
    generic = RateLimiter(1, per=3.0, storage=DelegatingStorage(), name="g")
    monkeypatch.setattr(_timing, "clock", clock)
    monkeypatch.setattr(_timing, "sleep", clock.sleep)
    monkeypatch.setattr(_timing, "asleep", clock.asleep)
    for each in (limiter, generic):
        each.acquire("k")
        each.acquire("k")
        asyncio.run(each.aacquire("k"))
    assert clock.sleeps == [pytest.approx(3.0)] * 4
    assert clock.now == pytest.approx(1012.0)


def test_an_interrupted_wait_holds_nothing(clock: FakeClock) -> None:
    def interrupted(seconds: float) -> None:
        raise KeyboardInterrupt

    limiter = RateLimiter(1, per=1.0, clock=clock, sleep=interrupted)
    limiter.acquire("k")
    with pytest.raises(KeyboardInterrupt):
        limiter.acquire("k")
    clock.advance(1.0)
    assert limiter.try_acquire("k") == Decision(True, 0.0, 0)  # nothing was reserved


def test_a_cancelled_async_wait_holds_nothing(clock: FakeClock) -> None:
    limiter = RateLimiter(1, per=1.0, clock=clock)  # real asyncio.sleep: cancelled at once

    async def main() -> None:
        await limiter.aacquire("k")
        task = asyncio.create_task(limiter.aacquire("k"))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    clock.advance(1.0)
    assert limiter.try_acquire("k").allowed


# --------------------------------------------------------------------------------------
# A storage that cannot decide (fail closed)


def test_unavailable_storage_refuses(utils_metrics: InMemorySink) -> None:
    limiter = RateLimiter(5, storage=DownStorage(), name="down")
    assert limiter.try_acquire("k") == Decision(False, 2.5, 0)
    assert asyncio.run(limiter.atry_acquire("k")) == Decision(False, 2.5, 0)
    with pytest.raises(RateLimitExceeded) as info:
        limiter.acquire("k", timeout=None)
    assert info.value.retry_after == 2.5
    assert "storage is unavailable" in str(info.value)
    assert isinstance(info.value.__cause__, RateLimitStorageError)
    with pytest.raises(RateLimitExceeded) as ainfo:
        asyncio.run(limiter.aacquire("k"))
    assert isinstance(ainfo.value.__cause__, UnavailableError)
    assert utils_metrics.count("ratelimit.rejected", limiter="down") == 4


def test_storage_error_taxonomy() -> None:
    error = RateLimitStorageError("down", retry_after=1.0)
    assert isinstance(error, UnavailableError)
    assert error.retryable
    assert error.code == "ratelimit_storage_unavailable"


# --------------------------------------------------------------------------------------
# Shared storages


def test_limiters_sharing_a_storage_are_namespaced(clock: FakeClock) -> None:
    storage = MemoryRateLimitStorage()
    a = RateLimiter(1, per=60.0, clock=clock, storage=storage, name="a")
    b = RateLimiter(1, per=60.0, clock=clock, storage=storage, name="b")
    assert a.try_acquire("user").allowed
    assert b.try_acquire("user").allowed
    assert not a.try_acquire("user").allowed
    assert sorted(storage._tats) == ["a:user", "b:user"]
    generic = RateLimiter(1, per=60.0, clock=clock, storage=DelegatingStorage(storage), name="c")
    assert generic.try_acquire("user").allowed
    assert "c:user" in storage._tats


def test_memory_storage_satisfies_the_protocol() -> None:
    assert isinstance(MemoryRateLimitStorage(), RateLimitStorage)
    assert isinstance(DelegatingStorage(), RateLimitStorage)
    assert not isinstance(object(), RateLimitStorage)


# --------------------------------------------------------------------------------------
# Metrics and logs


def test_allowed_path_is_silent_and_refusals_are_counted(
    clock: FakeClock, utils_logs: list[dict[str, Any]], utils_metrics: InMemorySink
) -> None:
    limiter = RateLimiter(2, clock=clock, name="quiet")
    unnamed = RateLimiter(1, clock=clock)
    limiter.try_acquire("k")
    limiter.try_acquire("k")
    assert utils_metrics.measurements == []
    limiter.try_acquire("k")
    asyncio.run(limiter.atry_acquire("k"))
    unnamed.try_acquire("k")
    unnamed.try_acquire("k")
    assert utils_metrics.count("ratelimit.rejected", limiter="quiet") == 2
    assert utils_metrics.count("ratelimit.rejected", limiter="ratelimiter") == 1
    assert utils_logs == []


# --------------------------------------------------------------------------------------
# As a strategy and a decorator


def test_limiter_as_strategy_and_bare_decorator(clock: FakeClock) -> None:
    limiter = RateLimiter(2, per=60.0, clock=clock, name="s")
    assert isinstance(limiter, Strategy)

    @limiter
    def ping() -> str:
        return "pong"

    assert ping() == "pong"
    assert limiter.call(str.upper, "a") == "A"
    with pytest.raises(RateLimitExceeded):
        ping()

    async def aping() -> str:
        return "apong"

    other = RateLimiter(1, per=60.0, clock=clock)
    decorated = other(aping)
    assert asyncio.run(decorated()) == "apong"
    with pytest.raises(RateLimitExceeded):
        asyncio.run(other.acall(aping))


def test_limit_decorator_with_a_key_function(clock: FakeClock) -> None:
    limiter = RateLimiter(2, per=60.0, clock=clock, name="api")
    ran: list[int] = []

    @limiter.limit(key=lambda user_id, *, verbose=False: f"user:{user_id}", cost=2)
    def handle(user_id: int, *, verbose: bool = False) -> int:
        ran.append(user_id)
        return user_id * 10

    assert handle.__name__ == "handle"
    assert handle(1) == 10
    assert handle(2, verbose=True) == 20
    with pytest.raises(RateLimitExceeded) as info:
        handle(1)
    assert info.value.retry_after == pytest.approx(60.0)
    assert ran == [1, 2]  # refused calls do not run


def test_limit_decorator_async_and_waiting(clock: FakeClock) -> None:
    limiter = RateLimiter(1, per=2.0, clock=clock, asleep=clock.asleep, sleep=clock.sleep)

    @limiter.limit(key="fixed", timeout=None)
    async def work(x: int) -> int:
        await asyncio.sleep(0)
        return x + 1

    @limiter.limit(key=lambda x: "sync", timeout=5)
    def sync_work(x: int) -> int:
        return x - 1

    async def main() -> list[int]:
        return [await work(1), await work(2), await work(3)]

    assert asyncio.run(main()) == [2, 3, 4]
    assert [sync_work(1), sync_work(2)] == [0, 1]
    assert clock.sleeps == [pytest.approx(2.0)] * 3


def test_limit_refuses_generator_functions() -> None:
    limiter = RateLimiter(1)

    def numbers() -> Iterator[int]:
        yield 1

    async def anumbers() -> Any:
        yield 1

    for fn in (numbers, anumbers):
        with pytest.raises(TypeError, match="generator"):
            limiter.limit(key="k")(fn)
        with pytest.raises(TypeError, match=r"RateLimiter\('ratelimiter'\)"):
            limiter(fn)


def test_limit_in_a_pipeline(clock: FakeClock) -> None:
    from utils.resilience.pipeline import pipeline

    limiter = RateLimiter(1, per=60.0, clock=clock)
    guarded = pipeline(limiter.limit(key="p"), limiter)
    assert guarded.call(int, "5") == 5
    with pytest.raises(RateLimitExceeded):
        guarded.call(int, "5")


# --------------------------------------------------------------------------------------
# Docstrings and imports


@pytest.mark.parametrize("module", [ratelimit_module, ratelimit_redis_module])
def test_docstring_examples(module: Any) -> None:
    if module is ratelimit_redis_module:
        pytest.importorskip("redis")  # its examples build (unconnected) redis clients
    results = doctest.testmod(
        module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, report=True
    )
    assert results.failed == 0
    assert results.attempted > 0


def test_memory_limiting_works_without_redis_installed() -> None:
    code = (
        "import sys; sys.modules['redis'] = None\n"
        "from utils.resilience.ratelimit import RateLimiter, RedisRateLimitStorage\n"
        "print(RateLimiter(1).try_acquire().allowed)\n"
        "try:\n"
        "    RedisRateLimitStorage(object(), fail_open=True)\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "True",
        "RedisRateLimitStorage needs redis-py: pip install 'utils-resilience[redis]'",
    ]


@given(
    rate=st.floats(min_value=1e-3, max_value=1e4),
    per=st.floats(min_value=1e-3, max_value=1e4),
    burst=st.integers(min_value=1, max_value=1000),
    now=st.floats(min_value=0.0, max_value=1e10),
    use_storage=st.booleans(),
)
def test_an_idle_key_admits_a_full_burst_whatever_the_clock_reads(
    rate: float, per: float, burst: int, now: float, use_storage: bool
) -> None:
    # Regression: with an absolute 1 ns slack, RateLimiter(0.015625, per=1971.0, burst=50)
    # refused a full burst on an idle key once the monotonic clock passed ~1e7 s (months of
    # uptime): the rounding of (tat + cost * T) - now grows with the clock's value.
    if use_storage:  # the storage's own update(), not the limiter's inlined fast path
        interval = per / rate
        allowed, _ = MemoryRateLimitStorage().update(
            "k", interval, (burst - 1) * interval, burst, lambda: now
        )
        assert allowed
    else:
        limiter = RateLimiter(rate, per=per, burst=burst, clock=lambda: now)
        assert limiter.try_acquire(cost=burst).allowed


def test_the_reported_rounding_case_is_admitted() -> None:
    limiter = RateLimiter(0.015625, per=1971.0, burst=50, clock=lambda: 1.0e7)
    assert limiter.try_acquire(cost=50).allowed
