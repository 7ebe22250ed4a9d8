"""The cross-process lock of the Redis caches: ``SET NX PX`` with a random token.

Used by ``get_or_set`` / ``@cached`` (``lock=True``) so that one process computes a missing
value while the others wait for it. The lock is released by a compare-and-delete Lua script,
so a holder whose lock already expired can never delete the lock of the next holder; a killed
holder's lock simply expires after its TTL.

The lock runs its commands through the cache that made it, so it follows the cache's rules:
socket timeouts capped by :func:`utils.core.remaining`, and when Redis cannot be reached a
``fail_open`` cache's lock is *granted without Redis* (``acquire`` returns True at once and
:attr:`RedisLock.held` stays False: computing without a cross-process lock beats waiting on
a dead server), while a strict cache raises
:class:`~utils.cache.errors.CacheUnavailableError`.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import redis.exceptions

from utils.core import ValidationError, remaining

__all__ = ["AsyncRedisLock", "RedisLock"]

# KEYS[1]: the lock; ARGV[1]: the holder's token. Delete only when the token is still ours.
RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
RELEASE_SHA = hashlib.sha1(RELEASE_SCRIPT.encode(), usedforsecurity=False).hexdigest()

#: First pause between two attempts while another process holds the lock; it doubles up to
#: :data:`MAX_POLL` so a short compute is noticed quickly and a long one costs few commands.
FIRST_POLL = 0.002
MAX_POLL = 0.05

Commands = Sequence[tuple[Any, ...]]


class _Runner(Protocol):
    def _run(
        self,
        op: str,
        commands: Commands,
        *,
        write: bool,
        transaction: bool = False,
        passthrough: tuple[type[BaseException], ...] = (),
    ) -> list[Any] | None: ...


class _AsyncRunner(Protocol):
    async def _arun(
        self,
        op: str,
        commands: Commands,
        *,
        write: bool,
        transaction: bool = False,
        passthrough: tuple[type[BaseException], ...] = (),
    ) -> list[Any] | None: ...


def _ttl_ms(ttl: float) -> int:
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not ttl > 0:
        raise ValidationError(f"a lock ttl must be a number of seconds > 0, got {ttl!r}")
    return max(1, int(ttl * 1000.0 + 0.999))


def _wait_budget(wait: float) -> float:
    if isinstance(wait, bool) or not isinstance(wait, int | float) or not wait >= 0:
        raise ValidationError(f"wait must be a number of seconds >= 0, got {wait!r}")
    left = remaining()
    return wait if left is None or wait < left else left


class _LockBase:
    __slots__ = ("_clock", "_token", "name", "ttl_ms")

    def __init__(self, name: str, ttl: float, clock: Callable[[], float]) -> None:
        self.name = name
        self.ttl_ms = _ttl_ms(ttl)
        self._clock = clock
        self._token: str | None = None

    @property
    def held(self) -> bool:
        """True between a successful :meth:`acquire` in Redis and the release."""
        return self._token is not None

    def __repr__(self) -> str:
        state = "held" if self._token is not None else "not held"
        return f"{type(self).__name__}({self.name!r}, ttl_ms={self.ttl_ms}, {state})"

    def _set_command(self, token: str) -> list[tuple[Any, ...]]:
        return [("SET", self.name, token, "NX", "PX", self.ttl_ms)]


class RedisLock(_LockBase):
    """A lock in Redis held for at most ``ttl`` seconds (made by ``RedisCache._lock``).

    Example:
        >>> from utils.cache.redis_cache import RedisCache
        >>> cache = RedisCache("redis://localhost:6379/0", namespace="demo")
        >>> lock = cache._lock("report:42", ttl=30)
        >>> if lock.acquire(wait=5):  # doctest: +SKIP
        ...     try:
        ...         ...  # compute and store the value
        ...     finally:
        ...         lock.release()
    """

    __slots__ = ("_runner", "_sleep")

    def __init__(
        self,
        runner: _Runner,
        name: str,
        ttl: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(name, ttl, clock)
        self._runner = runner
        self._sleep = sleep

    def acquire(self, wait: float = 0.0) -> bool:
        """Take the lock, polling up to ``wait`` seconds (never past the current deadline).

        Returns True when the caller may go ahead: the lock is held, or Redis is unreachable
        and the cache fails open (then :attr:`held` is False). Returns False when another
        holder kept it for the whole wait.
        """
        budget = _wait_budget(wait)
        if self._token is not None:
            raise RuntimeError(f"{self!r} is already held: release it before acquiring again")
        token = secrets.token_hex(16)
        give_up_at = self._clock() + budget
        pause = FIRST_POLL
        while True:
            replies = self._runner._run("lock", self._set_command(token), write=True)
            if replies is None:  # unreachable, failing open: go ahead without a lock
                return True
            if replies[0]:
                self._token = token
                return True
            left = give_up_at - self._clock()
            if left <= 0.0:
                return False
            self._sleep(pause if pause < left else left)
            pause = min(pause * 2.0, MAX_POLL)

    def release(self) -> bool:
        """Release the lock if this holder still has it; True when it was deleted.

        False when the lock was not held, had expired, or belongs to someone else now (it is
        left alone).
        """
        token, self._token = self._token, None
        if token is None:
            return False
        runner = self._runner
        try:
            replies = runner._run(
                "unlock",
                [("EVALSHA", RELEASE_SHA, 1, self.name, token)],
                write=True,
                passthrough=(redis.exceptions.NoScriptError,),
            )
        except redis.exceptions.NoScriptError:  # script cache flushed or a failover: load it
            replies = runner._run(
                "unlock", [("EVAL", RELEASE_SCRIPT, 1, self.name, token)], write=True
            )
        return bool(replies and replies[0])


class AsyncRedisLock(_LockBase):
    """The async twin of :class:`RedisLock` (made by ``AsyncRedisCache._alock``).

    Example:
        >>> from utils.cache.redis_cache import AsyncRedisCache
        >>> async def report(cache: AsyncRedisCache) -> None:
        ...     lock = cache._alock("report:42", ttl=30)
        ...     if await lock.aacquire(wait=5):
        ...         try:
        ...             ...  # compute and store the value
        ...         finally:
        ...             await lock.arelease()
    """

    __slots__ = ("_runner", "_sleep")

    def __init__(
        self,
        runner: _AsyncRunner,
        name: str,
        ttl: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        super().__init__(name, ttl, clock)
        self._runner = runner
        self._sleep = sleep

    async def aacquire(self, wait: float = 0.0) -> bool:
        """Take the lock, polling up to ``wait`` seconds; see :meth:`RedisLock.acquire`."""
        budget = _wait_budget(wait)
        if self._token is not None:
            raise RuntimeError(f"{self!r} is already held: release it before acquiring again")
        token = secrets.token_hex(16)
        give_up_at = self._clock() + budget
        pause = FIRST_POLL
        while True:
            replies = await self._runner._arun("lock", self._set_command(token), write=True)
            if replies is None:
                return True
            if replies[0]:
                self._token = token
                return True
            left = give_up_at - self._clock()
            if left <= 0.0:
                return False
            await self._sleep(pause if pause < left else left)
            pause = min(pause * 2.0, MAX_POLL)

    async def arelease(self) -> bool:
        """Release the lock if this holder still has it; see :meth:`RedisLock.release`."""
        token, self._token = self._token, None
        if token is None:
            return False
        runner = self._runner
        try:
            replies = await runner._arun(
                "unlock",
                [("EVALSHA", RELEASE_SHA, 1, self.name, token)],
                write=True,
                passthrough=(redis.exceptions.NoScriptError,),
            )
        except redis.exceptions.NoScriptError:
            replies = await runner._arun(
                "unlock", [("EVAL", RELEASE_SCRIPT, 1, self.name, token)], write=True
            )
        return bool(replies and replies[0])
