"""The Redis storage of :mod:`utils.resilience.ratelimit`: one atomic Lua script per decision.

This module does not import redis: redis-py is imported when a storage is constructed, so
``import utils.resilience`` stays free of it (install ``utils-resilience[redis]``).
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any, NoReturn

from utils.core import ValidationError
from utils.core.report import Event, Outage
from utils.core.validate import flag
from utils.resilience.errors import RateLimitStorageError, StorageError

if TYPE_CHECKING:
    from typing import TypeAlias

    import redis
    import redis.asyncio

    from utils.resilience._timing import Clock

    RedisClient: TypeAlias = (
        redis.Redis | redis.asyncio.Redis | redis.RedisCluster | redis.asyncio.RedisCluster
    )

__all__ = ["RedisRateLimitStorage"]

_LOGGER = "utils.resilience.ratelimit"

#: Every failed call (outage or error), metered only: logging each would flood the logs.
STORAGE_ERROR = Event(
    "ratelimit.storage_error", logger=_LOGGER, level=None, tags=("storage", "fail_open")
)

#: Seconds a fail-closed storage tells callers to wait while Redis is unreachable.
UNAVAILABLE_RETRY_AFTER = 1.0

# KEYS[1]: the key; ARGV: emission interval T, tolerance tau (both in microseconds), cost.
# Time is the server's (TIME), so client clocks never matter; everything is in microseconds,
# the resolution of TIME, which keeps the script to integer-valued arithmetic (cheaper than
# converting TIME to float seconds; measured 17.5 vs 20.9 us of server time). Scripts are
# replicated by effects (the only mode since Redis 7, the default since 5), so writing after
# TIME is fine. The 1 us of slack is the resolution of TIME. The key expires when it becomes
# equivalent to a fresh one. The reply is ONE integer, in microseconds: ``backlog`` (>= 0)
# when allowed, or ``-1 - ahead`` (< 0) when refused (``ahead`` = how far the TAT is ahead).
GCRA_SCRIPT = """
local interval = tonumber(ARGV[1])
local limit = tonumber(ARGV[2]) + interval + 1
local cost = tonumber(ARGV[3])
local time = redis.call('TIME')
local now = time[1] * 1000000 + time[2]
local ahead = 0
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat and tat > now then
  ahead = tat - now
end
local backlog = ahead + cost * interval
if backlog > limit then
  return -1 - math.floor(ahead + 0.5)
end
redis.call('SET', KEYS[1], now + backlog, 'PX', math.ceil(backlog / 1000))
return math.floor(backlog + 0.5)
"""

GCRA_SHA = hashlib.sha1(GCRA_SCRIPT.encode(), usedforsecurity=False).hexdigest()


class RedisRateLimitStorage:
    """Shared rate-limit state in Redis, for limits that hold across processes and hosts.

    Each decision is one atomic Lua script (``EVALSHA``: one round trip; after a failover
    or ``SCRIPT FLUSH`` the ``NOSCRIPT`` reply is answered by one ``EVAL`` that reloads the
    script). The script uses the Redis server's ``TIME``, stores only the key's TAT
    (O(1) memory per key) and sets its TTL in the same script to the moment the key becomes
    equivalent to a fresh one. Keys look like ``utils:rl:{api:user:42}``: the prefix, then
    the limiter's name and the key inside a ``{...}`` hash tag, so a Redis Cluster places
    each limiter key by its own slot. Decisions have the microsecond resolution of
    ``TIME``. Needs Redis >= 5. Every call honours the :func:`utils.core.deadline`
    (:func:`utils.core.redis.execute`).

    Pass a ``redis.Redis`` (sync: :meth:`~utils.resilience.RateLimiter.try_acquire`,
    ``acquire``, sync decorators) or a ``redis.asyncio.Redis`` (async: ``atry_acquire``,
    ``aacquire``, async decorators); using the other kind raises ``TypeError``.

    When Redis is *unavailable* (connection refused or lost, timeout, loading, read-only
    replica, OOM — :func:`utils.core.redis.classify`) the storage does what ``fail_open``
    says — ``True`` by default, as for every Redis-backed component of the family (a Redis
    outage then costs the limit, not the service); pass ``False`` where refusing is the
    point, such as a login throttle:

    - ``fail_open=True``: the request is allowed as if the key were fresh (availability
      over strictness);
    - ``fail_open=False``: the request is refused: ``try_acquire`` returns a refusal with
      ``retry_after=1.0`` and ``acquire`` raises
      :class:`~utils.resilience.RateLimitExceeded` at once, caused by a
      :class:`~utils.resilience.errors.RateLimitStorageError` whose cause is the redis
      error.

    Any other Redis error — ``NOPERM`` from an ACL, ``WRONGTYPE`` at the key, a script
    error — is a misconfiguration or a bug, not an outage: it raises
    :class:`~utils.resilience.StorageError` (the redis error as ``__cause__``) whatever
    ``fail_open`` says, so a limit is never silently switched off.

    Every failed call counts ``ratelimit.storage_error`` in the metrics, and an outage is
    logged once: ``ratelimit.storage_unavailable`` (warning) when it starts and
    ``ratelimit.storage_recovered`` (info) when Redis answers again.

    How fast an outage is noticed is the client's business: redis-py 6 retries a failed
    command three times with backoff by default, which costs seconds per call while Redis
    is down. Build the client with :func:`utils.core.redis.fail_fast_client`.

    Args:
        client: A ``redis.Redis`` or ``redis.asyncio.Redis`` client, or a ``redis://`` URL
            (a sync client built by :func:`utils.core.redis.fail_fast_client`; a bad URL
            option is a :class:`~utils.core.ConfigError`).
        fail_open: What to do when Redis is unavailable (see above; default True).
        prefix: Prefix of every key.

    Example:
        >>> import redis
        >>> from utils.resilience.ratelimit import RateLimiter
        >>> storage = RedisRateLimitStorage(redis.Redis(), fail_open=True)  # no I/O yet
        >>> limiter = RateLimiter(100, per=60, storage=storage, name="api")
        >>> limiter.try_acquire("user:42").allowed  # doctest: +SKIP
        True
    """

    __slots__ = (
        "_classify",
        "_client",
        "_errors",
        "_fail_open",
        "_failed_call",
        "_is_async",
        "_outage",
        "_prefix",
        "_script",
        "_writes_refused",
    )

    def __init__(
        self,
        client: RedisClient | str,
        *,
        fail_open: bool = True,
        prefix: str = "utils:rl",
    ) -> None:
        try:
            import redis.exceptions

            from utils.core.redis import RedisScript, classify, fail_fast_client, is_async_client
        except ImportError as exc:  # pragma: no cover - the [redis] extra is missing
            raise ImportError(
                "RedisRateLimitStorage needs redis-py: pip install 'utils-resilience[redis]'"
            ) from exc
        flag(fail_open, "fail_open")
        if isinstance(client, str):
            client = fail_fast_client(client)  # a URL: the family's fail-fast settings
        if not isinstance(prefix, str) or not prefix:
            raise ValidationError(f"prefix must be a non-empty string, got {prefix!r}")
        if getattr(client, "execute_command", None) is None or not hasattr(client, "evalsha"):
            raise TypeError(
                f"client must be a redis.Redis or redis.asyncio.Redis, got {type(client).__name__}"
            )
        self._client: Any = client  # sync or async: checked by update() / aupdate()
        self._fail_open = fail_open
        self._prefix = prefix
        self._is_async = is_async_client(client)
        self._script = RedisScript(GCRA_SCRIPT)
        self._classify = classify
        self._errors = redis.exceptions.RedisError
        tags = {"storage": "redis", "fail_open": "true" if fail_open else "false"}
        self._failed_call = STORAGE_ERROR.bind(**tags)
        self._writes_refused = False
        self._outage = Outage(
            "redis",
            events=("ratelimit.storage_unavailable", "ratelimit.storage_recovered"),
            logger=_LOGGER,
            tags=tags,
        )

    @property
    def fail_open(self) -> bool:
        """Whether requests are allowed while Redis is unavailable.

        Example:
            >>> import redis
            >>> RedisRateLimitStorage(redis.Redis(), fail_open=False).fail_open
            False
        """
        return self._fail_open

    @property
    def prefix(self) -> str:
        """The prefix of every key.

        Example:
            >>> import redis
            >>> RedisRateLimitStorage(redis.Redis(), fail_open=True, prefix="svc:rl").prefix
            'svc:rl'
        """
        return self._prefix

    def redis_key(self, key: str) -> str:
        """The Redis key holding the TAT of limiter key ``key`` (``"name:key"``).

        Example:
            >>> import redis
            >>> RedisRateLimitStorage(redis.Redis(), fail_open=False).redis_key("api:u42")
            'utils:rl:{api:u42}'
        """
        return f"{self._prefix}:{{{key}}}"

    def __repr__(self) -> str:
        kind = "async" if self._is_async else "sync"
        return (
            f"RedisRateLimitStorage({kind} client, prefix={self._prefix!r}, "
            f"fail_open={self._fail_open!r})"
        )

    def _wrong_kind(self) -> NoReturn:
        if self._is_async:
            raise TypeError(
                "this RedisRateLimitStorage wraps a redis.asyncio client: use the async API "
                "(atry_acquire, aacquire, async functions), or build a storage on a "
                "redis.Redis client for sync code"
            )
        raise TypeError(
            "this RedisRateLimitStorage wraps a sync redis.Redis client: use the sync API "
            "(try_acquire, acquire, sync functions), or build a storage on a "
            "redis.asyncio.Redis client for async code"
        )

    # The twins below differ only in how the one script call is made; planning the call
    # and reading the reply (_plan, _decided) and failures (_failed) are shared.

    def _plan(
        self, key: str, emission_interval: float, tolerance: float, cost: int, asynchronous: bool
    ) -> tuple[tuple[str], tuple[float, float, int]]:
        """The script's keys and arguments (no I/O); TypeError for the wrong kind of client."""
        if asynchronous != self._is_async:
            self._wrong_kind()
        key = f"{self._prefix}:{{{key}}}"
        return (key,), (emission_interval * 1e6, tolerance * 1e6, cost)

    def _decided(self, reply: int) -> tuple[bool, float]:
        if self._outage.down and (reply >= 0 or not self._writes_refused):
            # A server that refuses writes (OOM, READONLY) still answers a refusal, which
            # writes nothing: only an admission (a write) ends such an outage.
            self._writes_refused = False
            self._outage.succeeded()
        if reply >= 0:
            return True, reply * 1e-6
        return False, (-1 - reply) * 1e-6

    def update(
        self, key: str, emission_interval: float, tolerance: float, cost: int, clock: Clock
    ) -> tuple[bool, float]:
        """Decide one request in one round trip (``clock`` is ignored: Redis ``TIME``)."""
        keys, args = self._plan(key, emission_interval, tolerance, cost, asynchronous=False)
        try:
            reply = self._script.run(self._client, keys, args)
        except self._errors as error:
            return self._failed(error, cost * emission_interval)
        return self._decided(reply)

    async def aupdate(
        self, key: str, emission_interval: float, tolerance: float, cost: int, clock: Clock
    ) -> tuple[bool, float]:
        """The async twin of :meth:`update` (needs a ``redis.asyncio`` client)."""
        planned = self._plan(key, emission_interval, tolerance, cost, asynchronous=True)
        try:
            return self._decided(await self._script.arun(self._client, *planned))
        except self._errors as error:
            return self._failed(error, cost * emission_interval)

    def _failed(self, error: Exception, fresh_backlog: float) -> tuple[bool, float]:
        self._failed_call()
        kind = self._classify(error)
        if kind == "error":
            # NOPERM, WRONGTYPE, a script error: failing open would switch the limit off.
            raise StorageError(
                f"the rate-limit storage (redis, prefix {self._prefix!r}) answered with an "
                f"error: {type(error).__name__}",
                details={"storage": "redis", "error": type(error).__name__},
            ) from error
        self._writes_refused = kind == "refused"
        self._outage.failed(error, prefix=self._prefix)
        if self._fail_open:
            return True, fresh_backlog
        raise RateLimitStorageError(
            f"the rate-limit storage (redis, prefix {self._prefix!r}) is unreachable and "
            "fails closed: request refused",
            retry_after=UNAVAILABLE_RETRY_AFTER,
            details={"storage": "redis", "error": type(error).__name__},
        ) from error
