"""Checked by ``mypy --strict``: ``@cached`` keeps the signatures of what it decorates."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

from typing_extensions import assert_type

from utils.cache import AsyncCachedFunction, CachedFunction, MemoryCache, cached

cache = MemoryCache(maxsize=100, ttl=60)


@cached(cache)
def price(sku: str, currency: str = "EUR") -> int:
    """A sync function: its parameters and return type are kept."""
    return len(sku)


@cached(cache, ttl=30, ignore=("db",))
async def find(email: str, db: object = None) -> dict[str, str] | None:
    """An async function: the call is awaited and gives the declared type."""
    return None


class Users:
    """Methods and classmethods bind as usual."""

    @cached(cache)
    def get(self, user_id: int) -> dict[str, int]:
        """A method: ``self`` is left out of the key."""
        return {"id": user_id}

    @classmethod
    @cached(cache)
    def count(cls) -> int:
        """A classmethod."""
        return 2


assert_type(price("abc"), int)
assert_type(price("abc", currency="USD"), int)
assert_type(price.key_for("abc"), str)
assert_type(price.invalidate("abc"), bool)
assert_type(price.cache, Any)
sync_fn: CachedFunction[[str, str], int] = price

pending: Coroutine[Any, Any, dict[str, str] | None] = find("a@example.com")
pending.close()
async_fn: AsyncCachedFunction[[str, object], dict[str, str] | None] = find


async def uses_async() -> None:
    """Awaiting gives the declared type."""
    found = await find("a@example.com")
    assert_type(found, dict[str, str] | None)
    assert_type(await find.invalidate("a@example.com"), bool)


assert_type(Users().get(7), dict[str, int])
assert_type(Users.count(), int)

price(42)  # type: ignore[arg-type]
price("abc", "EUR", "extra")  # type: ignore[call-arg]
