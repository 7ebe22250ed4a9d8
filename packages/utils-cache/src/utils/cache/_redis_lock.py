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
import secrets
import time
from collections.abc import Callable, Generator
from typing import Any

import redis.exceptions

from utils.core import ValidationError, remaining
from utils.core.redis import RedisScript

__all__ = ["AsyncRedisLock", "RedisLock"]

# KEYS[1]: the lock; ARGV[1]: the holder's token. Delete only when the token is still ours.
RELEASE = RedisScript(
    """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
)
# Kept for code that imported them.
RELEASE_SCRIPT = RELEASE.source
RELEASE_SHA = RELEASE.sha

#: First pause between two attempts while another process holds the lock; it doubles up to
#: :data:`MAX_POLL` so a short compute is noticed quickly and a long one costs few commands.
FIRST_POLL = 0.002
MAX_POLL = 0.05

_NOSCRIPT = (redis.exceptions.NoScriptError,)


def _ttl_ms(ttl: float) -> int:
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not ttl > 0:
        raise ValidationError(f"a lock ttl must be a number of seconds > 0, got {ttl!r}")
    return max(1, int(ttl * 1000.0 + 0.999))


def _wait_budget(wait: float) -> float:
    if isinstance(wait, bool) or not isinstance(wait, int | float) or not wait >= 0:
        raise ValidationError(f"wait must be a number of seconds >= 0, got {wait!r}")
    left = remaining()
    return wait if left is None or wait < left else left


#: A step of a lock operation: a pause (seconds, a float) or a round trip for the runner,
#: ``(op, commands, eval_fallback)`` (on NOSCRIPT, run ``eval_fallback`` instead).
LockStep = float | tuple[str, list[tuple[Any, ...]], list[tuple[Any, ...]] | None]
LockSteps = Generator[LockStep, "list[Any] | None", bool]


class _LockBase:
    """What a lock decides, without I/O: the twins below only run its steps."""

    __slots__ = ("_clock", "_runner", "_sleep", "_token", "name", "ttl_ms")

    def __init__(
        self,
        runner: Any,
        name: str,
        ttl: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Any] | None = None,
    ) -> None:
        self.name = name
        self.ttl_ms = _ttl_ms(ttl)
        #: The cache whose command runner (deadline, failure policy) the lock uses.
        self._runner = runner
        self._clock = clock
        self._sleep: Callable[[float], Any] = sleep or self._default_sleep
        self._token: str | None = None

    #: How the lock pauses between attempts (time.sleep / asyncio.sleep), by default.
    _default_sleep: Callable[[float], Any]

    @property
    def held(self) -> bool:
        """True between a successful :meth:`acquire` in Redis and the release."""
        return self._token is not None

    def __repr__(self) -> str:
        state = "held" if self._token is not None else "not held"
        return f"{type(self).__name__}({self.name!r}, ttl_ms={self.ttl_ms}, {state})"

    def _acquire_steps(self, wait: float) -> LockSteps:
        """Take the lock, polling up to ``wait`` seconds (never past the current deadline)."""
        budget = _wait_budget(wait)
        if self._token is not None:
            raise RuntimeError(f"{self!r} is already held: release it before acquiring again")
        token = secrets.token_hex(16)
        give_up_at = self._clock() + budget
        pause = FIRST_POLL
        while True:
            command = ("SET", self.name, token, "NX", "PX", self.ttl_ms)
            replies = yield ("lock", [command], None)
            if replies is None:  # unreachable, failing open: go ahead without a lock
                return True
            if replies[0]:
                self._token = token
                return True
            left = give_up_at - self._clock()
            if left <= 0.0:
                return False
            yield pause if pause < left else left
            pause = min(pause * 2.0, MAX_POLL)

    def _release_steps(self) -> LockSteps:
        """Delete the lock if this holder still has it (compare-and-delete script)."""
        token, self._token = self._token, None
        if token is None:
            return False
        # EVALSHA; after a script-cache flush or a failover (NOSCRIPT), EVAL loads it again.
        fallback = [("EVAL", RELEASE.source, 1, self.name, token)]
        replies = yield ("unlock", [RELEASE.command([self.name], [token])], fallback)
        return bool(replies and replies[0])


class RedisLock(_LockBase):
    """A lock in Redis held for at most ``ttl`` seconds (made by ``RedisCache._lock``).

    Example:
        >>> from utils.cache.redis_cache import RedisCache
        >>> cache = RedisCache("redis://localhost:6379/0", namespace="doc-demo")
        >>> lock = cache._lock("report:42", ttl=30)
        >>> if lock.acquire(wait=5):
        ...     try:
        ...         pass  # compute and store the value
        ...     finally:
        ...         _ = lock.release()
        >>> cache.close()
    """

    __slots__ = ()

    _default_sleep = staticmethod(time.sleep)

    def acquire(self, wait: float = 0.0) -> bool:
        """Take the lock, polling up to ``wait`` seconds (never past the current deadline).

        Returns True when the caller may go ahead: the lock is held, or Redis is unreachable
        and the cache fails open (then :attr:`held` is False). Returns False when another
        holder kept it for the whole wait.
        """
        return self._drive(self._acquire_steps(wait))

    def release(self) -> bool:
        """Release the lock if this holder still has it; True when it was deleted.

        False when the lock was not held, had expired, or belongs to someone else now (it is
        left alone).
        """
        return self._drive(self._release_steps())

    def _drive(self, steps: LockSteps) -> bool:
        replies: list[Any] | None = None
        try:
            while True:
                replies = self._perform(steps.send(replies))
        except StopIteration as done:
            return bool(done.value)

    def _perform(self, step: LockStep) -> list[Any] | None:
        if isinstance(step, float):
            self._sleep(step)
            return None
        op, commands, fallback = step
        try:
            return self._runner._run(op, commands, write=True, passthrough=_NOSCRIPT)  # type: ignore[no-any-return]
        except _NOSCRIPT:
            return self._runner._run(op, fallback, write=True)  # type: ignore[no-any-return]


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

    __slots__ = ()

    _default_sleep = staticmethod(asyncio.sleep)

    async def aacquire(self, wait: float = 0.0) -> bool:
        """Take the lock, polling up to ``wait`` seconds; see :meth:`RedisLock.acquire`."""
        return await self._adrive(self._acquire_steps(wait))

    async def arelease(self) -> bool:
        """Release the lock if this holder still has it; see :meth:`RedisLock.release`."""
        return await self._adrive(self._release_steps())

    async def _adrive(self, steps: LockSteps) -> bool:
        replies: list[Any] | None = None
        try:
            while True:
                replies = await self._aperform(steps.send(replies))
        except StopIteration as done:
            return bool(done.value)

    async def _aperform(self, step: LockStep) -> list[Any] | None:
        if isinstance(step, float):
            await self._sleep(step)
            return None
        op, commands, fallback = step
        try:
            return await self._runner._arun(op, commands, write=True, passthrough=_NOSCRIPT)  # type: ignore[no-any-return]
        except _NOSCRIPT:
            return await self._runner._arun(op, fallback, write=True)  # type: ignore[no-any-return]
