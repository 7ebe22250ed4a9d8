"""Checked by ``mypy --strict``: the breaker keeps the signatures of what it decorates."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import pybreaker
from typing_extensions import assert_type

from utils.resilience.breaker import (
    BreakerSnapshot,
    BreakerState,
    CircuitBreaker,
    MemoryBreakerStorage,
)
from utils.resilience.errors import CircuitOpenError

breaker = CircuitBreaker(
    "payments",
    fail_max=3,
    reset_timeout=10.0,
    success_threshold=2,
    exclude=[KeyError, lambda exc: "maintenance" in str(exc)],
    on=(ConnectionError, TimeoutError),
    storage=MemoryBreakerStorage(),
    listeners=[pybreaker.CircuitBreakerListener()],
    probe_timeout=5.0,
)
by_predicate = CircuitBreaker("search", on=lambda exc: isinstance(exc, OSError))
by_type = CircuitBreaker("mail", on=ConnectionError)
with_pybreaker_storage = CircuitBreaker(
    "legacy", storage=pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED)
)


@breaker
def charge(amount: int, *, currency: str = "EUR") -> float:
    """Charge an amount."""
    return amount * 1.0


@breaker
async def refund(payment_id: str) -> bool:
    """Refund a payment."""
    return bool(payment_id)


sync_fn: Callable[[int], float] = charge
sync_kw: float = charge(3, currency="USD")
async_fn: Callable[[str], Coroutine[Any, Any, bool]] = refund
async_awaitable: Callable[[str], Awaitable[bool]] = refund

assert_type(breaker.call(charge, 2), float)
assert_type(breaker.call(len, "abc"), int)
assert_type(breaker.state, BreakerState)
assert_type(breaker.snapshot(), BreakerSnapshot)
assert_type(breaker.pybreaker, pybreaker.CircuitBreaker)
state_name: str = breaker.state  # a str enum


async def main() -> None:
    """Use the async API."""
    flag = await breaker.acall(refund, "p-1")
    assert_type(flag, bool)
    assert_type(await breaker.astate(), BreakerState)
    async with breaker:
        pass
    await breaker.areset()
    await breaker.aopen()


def handle() -> float | None:
    """Use the breaker as a block."""
    try:
        with breaker:
            return charge(1)
    except CircuitOpenError as error:
        retry_after: float | None = error.retry_after
        return retry_after


breaker.open()
breaker.half_open()
breaker.close()
breaker.reset()


def misuse() -> None:
    """Never run: each ignore below must be needed, or mypy --strict reports it as unused."""
    charge("not an int")  # type: ignore[arg-type]
    charge(1, currency=2)  # type: ignore[arg-type]
    refund(42)  # type: ignore[arg-type, unused-coroutine]
    breaker.call(charge, "x")  # type: ignore[arg-type]
    CircuitBreaker("x", on=42)  # type: ignore[arg-type]
