"""Checked by ``mypy --strict``: the rate limiter as a call site sees it.

Decorated functions keep their exact signatures (parameters and return types, sync and
async); decisions and storages are typed. The ``# type: ignore[...]`` lines are calls that
*must* be rejected: mypy --strict reports unused ignores, so if a decorator ever lost the
signature (accepting anything), this file would fail.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import Any

import redis
import redis.asyncio
from typing_extensions import assert_type

from utils.resilience._strategy import Strategy
from utils.resilience.pipeline import pipeline
from utils.resilience.ratelimit import (
    Decision,
    MemoryRateLimitStorage,
    RateLimiter,
    RateLimitStorage,
    RateLimitStorageError,
    RedisRateLimitStorage,
)

api = RateLimiter(100, per=60, burst=10, name="api")
hourly = RateLimiter(
    1000,
    per=timedelta(hours=1),
    storage=MemoryRateLimitStorage(max_keys=10_000),
    name="hourly",
    clock=lambda: 0.0,
    sleep=time.sleep,
)
shared = RateLimiter(
    50,
    per=1.0,
    storage=RedisRateLimitStorage(redis.Redis(), fail_open=True, prefix="svc:rl"),
    name="shared",
)
ashared = RateLimiter(
    50, storage=RedisRateLimitStorage(redis.asyncio.Redis(), fail_open=False), name="ashared"
)
storage: RateLimitStorage = hourly.storage
assert_type(api.burst, int)
assert_type(api.per, float)
assert_type(api.name, str | None)


@api.limit(key=lambda user_id, **_: f"user:{user_id}", cost=2, timeout=1.5)
def profile(user_id: int, *, detailed: bool = False) -> dict[str, int]:
    """A sync function limited per user."""
    return {"user": user_id, "detailed": int(detailed)}


@api.limit(key="search", timeout=None)
async def search(query: str, limit: int = 10) -> list[str]:
    """An async function with one shared budget."""
    return [query] * limit


@api
def ping() -> str:
    """The limiter itself is a decorator (key "default", never waits)."""
    return "pong"


sync_signature: Callable[[int], dict[str, int]] = profile
async_signature: Callable[[str, int], Coroutine[Any, Any, list[str]]] = search
assert_type(profile(1, detailed=True), dict[str, int])
assert_type(ping(), str)


def rejected_calls() -> None:
    """Calls a type checker must refuse (never run)."""
    profile("one")  # type: ignore[arg-type]
    profile(1, verbose=True)  # type: ignore[call-arg]
    api.try_acquire(42)  # type: ignore[arg-type]
    api.acquire("k", timeout="soon")  # type: ignore[arg-type]
    RateLimiter(10, per="1s")  # type: ignore[arg-type]
    RedisRateLimitStorage(redis.Redis(), fail_open="no")  # type: ignore[arg-type]


guard: Strategy = api.limit(key="k")
assert_type(api.call(len, "abc"), int)
assert_type(pipeline(api, guard).call(pow, 2, 8), int)


def sync_usage() -> None:
    """The decision API, sync."""
    decision = api.try_acquire("user:42", cost=3)
    assert_type(decision, Decision)
    allowed: bool = decision.allowed
    wait: float = decision.retry_after
    left: int = decision.remaining
    if decision:  # truthy when allowed
        print(allowed, wait, left)
    assert_type(api.acquire("user:42", timeout=2.0), Decision)
    assert_type(shared.try_acquire(), Decision)
    assert_type(storage.update("k", 1.0, 0.0, 1, lambda: 0.0), tuple[bool, float])


async def async_usage() -> None:
    """The decision API, async."""
    assert_type(await ashared.atry_acquire("k"), Decision)
    assert_type(await ashared.aacquire("k", cost=2, timeout=None), Decision)
    assert_type(await search("q"), list[str])
    await search(3)  # type: ignore[arg-type]

    async def double(x: int) -> int:
        return 2 * x

    assert_type(await api.acall(double, 21), int)
    try:
        await ashared.aacquire("k")
    except RateLimitStorageError as error:
        retry_after: float | None = error.retry_after
        print(retry_after)
