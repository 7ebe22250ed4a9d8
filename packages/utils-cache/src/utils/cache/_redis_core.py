"""The I/O-free part of the Redis caches: configuration, key naming, counters, the failure policy.

:class:`RedisCache` and :class:`AsyncRedisCache` (in :mod:`utils.cache.redis_cache`) are
thin shells over :class:`RedisCore`: the core plans the commands of every method and reads
their replies; the shells run them (``execute`` / ``await aexecute``). The failure policy
lives here once: which errors are an outage (``cache.unavailable`` once, then failing fast
but for one probe per ``probe_interval``), which are refused writes, which always raise.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Generator, Mapping, Sequence
from typing import Any, Generic, TypeAlias, TypeVar

import redis.exceptions

from utils.cache._events import CACHE_ERROR, CACHE_HIT, CACHE_MISS, CACHE_SET, cache_outage
from utils.cache._ttl import resolve_ttl
from utils.cache.errors import CacheError, CacheUnavailableError, CacheValueError
from utils.cache.protocol import TTL, CacheStats
from utils.cache.serializers import JsonSerializer, Serializer
from utils.core import OperationTimeoutError, ValidationError, remaining
from utils.core.forksafe import reset_after_fork
from utils.core.redis import check_client, classify, fail_fast_client
from utils.core.validate import positive

__all__ = [
    "DEFAULT_PROBE_INTERVAL",
    "DEFAULT_SOCKET_TIMEOUT",
    "SCAN_COUNT",
    "RedisCore",
    "Step",
    "Steps",
]

#: Socket and connect timeouts (seconds) of the clients built from a URL.
DEFAULT_SOCKET_TIMEOUT = 1.0
#: Seconds between two probes of a Redis that was found unavailable (see "Failures").
DEFAULT_PROBE_INTERVAL = 1.0
#: How many keys one ``SCAN`` step of ``clear()`` asks for (and one ``UNLINK`` removes).
SCAN_COUNT = 500

_DEFAULT_SERIALIZER = JsonSerializer()


def _px(seconds: float | None) -> int | None:
    """Milliseconds for ``PX``: None = no expiry, 0 = do not store, else >= 1."""
    if seconds is None:
        return None
    if seconds == 0.0:
        return 0
    return max(1, round(seconds * 1000.0))


def _glob_escape(text: str) -> str:
    return "".join(f"\\{char}" if char in "\\*?[]" else char for char in text)


T = TypeVar("T")
#: One round trip a method plans: ``(op, commands, write, transaction)``.
Step: TypeAlias = tuple[str, Sequence[tuple[Any, ...]], bool, bool]
#: A planned method: yields its round trips, receives their replies (None: failed open).
Steps: TypeAlias = Generator[Step, "list[Any] | None", T]

#: The kind of redis-py client a cache takes (``redis.Redis`` or ``redis.asyncio.Redis``).
ClientT = TypeVar("ClientT")


class RedisCore(Generic[ClientT]):
    """Configuration, counters and the failure policy shared by the sync and async caches."""

    __slots__ = (
        "__weakref__",
        "_client",
        "_default_px",
        "_default_ttl",
        "_deletes",
        "_dumps",
        "_errors",
        "_fail_open",
        "_hits",
        "_loads",
        "_lock_prefix",
        "_loop",
        "_misses",
        "_name",
        "_namespace",
        "_on_hit",
        "_on_miss",
        "_on_set",
        "_outage",
        "_owns_client",
        "_pattern",
        "_pattern_all",
        "_prefix",
        "_probe",
        "_refusing",
        "_serializer",
        "_sets",
        "_version",
    )

    _is_async = False

    def __init__(
        self,
        client_or_url: ClientT | str,
        *,
        namespace: str,
        serializer: Serializer | None = None,
        ttl: TTL = None,
        fail_open: bool = True,
        version: int = 0,
        name: str | None = None,
        probe_interval: float = DEFAULT_PROBE_INTERVAL,
        clock: Callable[[], float] | None = None,
    ) -> None:
        kind = type(self).__name__
        if not isinstance(namespace, str) or not namespace or "#" in namespace:
            raise ValidationError(
                f"{kind} namespace must be a non-empty string without '#', got {namespace!r}"
            )
        if isinstance(version, bool) or not isinstance(version, int) or version < 0:
            raise ValidationError(f"{kind} version must be an int >= 0, got {version!r}")
        if not isinstance(fail_open, bool):
            raise ValidationError(f"{kind} fail_open must be True or False, got {fail_open!r}")
        if name is not None and (not isinstance(name, str) or not name):
            raise ValidationError(f"{kind} name must be a non-empty string, got {name!r}")
        serializer = _DEFAULT_SERIALIZER if serializer is None else serializer
        if not isinstance(serializer, Serializer):
            raise ValidationError(
                f"{kind} serializer must have dumps() and loads(), got {type(serializer).__name__}"
            )
        probe_interval = positive(probe_interval, f"{kind} probe_interval")
        self._default_ttl = resolve_ttl(ttl, None)
        self._default_px = _px(self._default_ttl)
        self._namespace = namespace
        self._version = version
        self._name = name or namespace
        self._fail_open = fail_open
        self._serializer = serializer
        self._dumps = serializer.dumps
        self._loads = serializer.loads
        self._prefix = f"{namespace}#{version}:"
        self._lock_prefix = f"{namespace}#{version}#lock:"
        self._pattern = f"{_glob_escape(self._prefix)}*"
        self._pattern_all = f"{_glob_escape(namespace)}#*"
        client: Any
        if isinstance(client_or_url, str):
            # No retries, 1 s timeouts; a mistyped or malformed URL option is a ConfigError
            # naming it, here, not a TypeError at the first command.
            client = fail_fast_client(
                client_or_url, asynchronous=self._is_async, timeout=DEFAULT_SOCKET_TIMEOUT
            )
            self._owns_client = True
        else:
            client = client_or_url
            check_client(client, asynchronous=self._is_async, owner=kind, bytes_replies=True)
            self._owns_client = False
        self._client: Any = client
        #: The event loop an async cache's pooled connections belong to (None: not yet used).
        self._loop: asyncio.AbstractEventLoop | None = None
        self._hits = self._misses = self._sets = self._deletes = self._errors = 0
        # cache.hit / miss / set, tagged once: each Redis call reports its own outcome (a
        # no-op with the default sink; the round trip dwarfs it otherwise).
        self._on_hit = CACHE_HIT.bind(cache=self._name)
        self._on_miss = CACHE_MISS.bind(cache=self._name)
        self._on_set = CACHE_SET.bind(cache=self._name)
        # Redis unreachable (reads and writes fail): calls fail fast while it lasts, but for
        # one probe per probe_interval. Writes refused (READONLY, OOM) are tracked apart:
        # the server answers at once, so there is nothing to fail fast on, and a read that
        # works must not end that outage.
        self._probe = (probe_interval, clock)
        self._new_outages()
        # An outage record holds a lock: a child forked while a thread held it gets new ones.
        reset_after_fork(self, RedisCore._new_outages)

    def _new_outages(self) -> None:
        """Fresh outage records (also in a forked child, which finds Redis's state itself)."""
        interval, clock = self._probe
        self._outage = cache_outage(self._name, probe_interval=interval, clock=clock)
        self._refusing = cache_outage(self._name, probe_interval=interval, clock=clock)

    # -- read-only configuration -------------------------------------------------------------

    @property
    def namespace(self) -> str:
        """The namespace every key of this cache lives under."""
        return self._namespace

    @property
    def version(self) -> int:
        """The namespace version (bump it to invalidate every entry at once)."""
        return self._version

    @property
    def prefix(self) -> str:
        """The prefix of every Redis key of this cache: ``{namespace}#{version}:``."""
        return self._prefix

    @property
    def name(self) -> str:
        """The name in logs and metrics (the namespace unless given)."""
        return self._name

    @property
    def default_ttl(self) -> float | None:
        """Seconds an entry lives when ``ttl`` is not given (None: no expiry)."""
        return self._default_ttl

    @property
    def fail_open(self) -> bool:
        """Whether an unreachable Redis means misses (True) or errors (False)."""
        return self._fail_open

    @property
    def serializer(self) -> Serializer:
        """How values become bytes."""
        return self._serializer

    @property
    def client(self) -> Any:
        """The redis-py client (for pub/sub, health checks, or commands of your own)."""
        return self._client

    def redis_key(self, key: str) -> str:
        """The Redis key that holds cache key ``key``.

        Example:
            >>> from utils.cache import RedisCache
            >>> RedisCache("redis://localhost", namespace="shop", version=2).redis_key("u:1")
            'shop#2:u:1'
        """
        return f"{self._prefix}{key}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(namespace={self._namespace!r}, version={self._version}, "
            f"ttl={self._default_ttl!r}, fail_open={self._fail_open!r})"
        )

    def stats(self) -> CacheStats:
        """Counters since creation (approximate under heavy threading; never I/O).

        ``size`` is None: counting a namespace would need a full ``SCAN``.

        Example:
            >>> from utils.cache import RedisCache
            >>> RedisCache("redis://localhost", namespace="shop").stats().hits
            0
        """
        return CacheStats(
            hits=self._hits,
            misses=self._misses,
            sets=self._sets,
            deletes=self._deletes,
            errors=self._errors,
        )

    def _ttl_px(self, ttl: TTL) -> int | None:
        return self._default_px if ttl is None else _px(resolve_ttl(ttl, self._default_ttl))

    # -- the failure policy --------------------------------------------------------------------

    def _count_hits(self, n: int = 1) -> None:
        self._hits += n
        if n:
            self._on_hit(float(n))

    def _count_misses(self, n: int = 1) -> None:
        self._misses += n
        if n:
            self._on_miss(float(n))

    def _count_sets(self, n: int = 1) -> None:
        self._sets += n
        if n:
            self._on_set(float(n))

    def _count_error(self, op: str, reason: str) -> None:
        self._errors += 1
        CACHE_ERROR.emit(cache=self._name, op=op, reason=reason)

    def _deadline_spent(self, op: str, error: BaseException | None = None) -> None:
        """Count a call the deadline cut short; return when failing open, raise otherwise."""
        self._count_error(op, "deadline")
        if self._fail_open:
            return
        raise OperationTimeoutError(
            f"deadline exceeded during cache {op} on {self._name!r}",
            details={"cache": self._name, "op": op},
        ) from error

    def _unavailable(self, op: str, error: BaseException | None) -> None:
        """Count a call Redis could not serve; return when failing open, raise otherwise.

        ``error`` None: the call failed fast, without a round trip (Redis is known down).
        """
        self._count_error(op, "unavailable")
        if self._fail_open:
            return
        if error is None:
            retry_after = self._outage.retry_after()
            raise CacheUnavailableError(
                f"cache {self._name!r}: Redis is unavailable (failing fast until the next "
                f"probe in {retry_after or 0.0:.2f} s) and the cache does not fail open",
                details={"cache": self._name, "op": op, "error": "unavailable"},
                retry_after=retry_after,
            )
        raise CacheUnavailableError(
            f"cache {self._name!r} cannot reach Redis ({type(error).__name__}: {error}) "
            "and does not fail open",
            details={"cache": self._name, "op": op, "error": type(error).__name__},
        ) from error

    def _blocked(self, op: str) -> bool:
        """Whether this call must not reach Redis: it is known down and this is not the probe.

        True means "answer as for a miss" (fail open); a strict cache raises instead.
        """
        if self._outage.allow():
            return False
        self._unavailable(op, None)
        return True

    def _failed(self, error: BaseException, op: str, write: bool) -> None:
        """Count a failed call; return when failing open, raise otherwise."""
        if isinstance(error, OperationTimeoutError | asyncio.TimeoutError) or (
            isinstance(error, redis.exceptions.TimeoutError) and remaining() == 0.0
        ):
            self._deadline_spent(op, error)
            return
        kind = classify(error)
        if kind != "error":
            outage = self._refusing if kind == "refused" else self._outage
            outage.failed(
                error,
                op=op,
                namespace=self._namespace,
                scope="writes" if kind == "refused" else "all",
                fail_open=self._fail_open,
            )
            self._unavailable(op, error)
            return
        self._count_error(op, "error")
        details = {"cache": self._name, "op": op, "error": type(error).__name__}
        if op == "incr" and "not an integer" in str(error):
            raise CacheValueError(
                f"cache {self._name!r} cannot incr: the value is not an integer",
                details=details,
            ) from error
        raise CacheError(
            f"Redis refused cache {op} on {self._name!r}: {type(error).__name__}: {error}",
            details=details,
        ) from error

    def _healthy(self, write: bool) -> None:
        """A call succeeded: end the outage (a read cannot end a refusal of writes)."""
        if self._outage.down:
            self._outage.succeeded(namespace=self._namespace, scope="all")
        if write and self._refusing.down:
            self._refusing.succeeded(namespace=self._namespace, scope="writes")

    # -- the methods, planned: each yields its round trips and reads their replies ----------
    #
    # A step is ``(op, commands, write, transaction)``; the shell runs it (``_run`` or
    # ``await _arun``, which apply the deadline and the failure policy) and sends back the
    # replies, or None when the call failed and the cache fails open.

    # get and get_many are the hot reads: one round trip each, so their shells call the
    # runner directly with the command planned here and read the replies here, without the
    # cost of a generator.

    def _get_command(self, key: str) -> list[tuple[Any, ...]]:
        return [("GET", f"{self._prefix}{key}")]

    def _got(self, replies: list[Any] | None, default: Any) -> Any:
        """Read the reply of :meth:`_get_command` (None: failed open)."""
        if replies is None or replies[0] is None:
            self._count_misses()
            return default
        self._count_hits()
        return self._decode(replies[0])

    def _store_steps(self, key: str, value: Any, ttl: TTL) -> Steps[bool]:
        px = self._ttl_px(ttl)
        if px == 0:
            return False
        name, data = f"{self._prefix}{key}", self._dumps(value)
        command = ("SET", name, data) if px is None else ("SET", name, data, "PX", px)
        if (yield ("set", [command], True, False)) is None:
            return False
        self._count_sets()
        return True

    def _delete_steps(self, names: list[str], op: str) -> Steps[int]:
        if not names:
            return 0
        replies = yield (op, [("UNLINK", *names)], True, False)
        removed = int(replies[0]) if replies else 0
        self._deletes += removed
        return removed

    def _exists_steps(self, key: str) -> Steps[bool]:
        replies = yield ("exists", [("EXISTS", f"{self._prefix}{key}")], False, False)
        return bool(replies and replies[0])

    def _get_many_command(self, wanted: list[str]) -> list[tuple[Any, ...]]:
        prefix = self._prefix
        return [("MGET", *[f"{prefix}{key}" for key in wanted])]

    def _found(self, wanted: list[str], replies: list[Any] | None) -> dict[str, Any]:
        """Read the reply of :meth:`_get_many_command` (None: failed open)."""
        if replies is None:
            self._count_misses(len(wanted))
            return {}
        loads = self._loads
        try:
            found = {
                key: loads(data)
                for key, data in zip(wanted, replies[0], strict=False)
                if data is not None
            }
        except CacheError:
            self._count_error("get_many", "decode")
            raise
        self._count_hits(len(found))
        self._count_misses(len(wanted) - len(found))
        return found

    def _store_many_steps(self, mapping: Mapping[str, Any], ttl: TTL) -> Steps[bool]:
        px = self._ttl_px(ttl)
        if px == 0 or not mapping:
            return False
        prefix, dumps = self._prefix, self._dumps
        items = [(f"{prefix}{key}", dumps(value)) for key, value in mapping.items()]
        if (yield ("set_many", self._set_commands(items, px), True, False)) is None:
            return False
        self._count_sets(len(items))
        return True

    def _incr_steps(self, key: str, delta: int) -> Steps[int]:
        commands, transaction = self._incr_commands(f"{self._prefix}{key}", delta)
        if self._default_px == 0:
            return delta
        replies = yield ("incr", commands, True, transaction)
        return delta if replies is None else int(replies[-1])

    def _ttl_steps(self, key: str) -> Steps[float | None]:
        replies = yield ("ttl", [("PTTL", f"{self._prefix}{key}")], False, False)
        return None if replies is None else self._pttl_seconds(int(replies[0]))

    def _clear_steps(self, all_versions: bool) -> Steps[None]:
        pattern = self._pattern_all if all_versions else self._pattern
        cursor: Any = 0
        while True:
            scan = ("SCAN", cursor, "MATCH", pattern, "COUNT", SCAN_COUNT)
            replies = yield ("clear", [scan], False, False)
            if replies is None:
                return
            cursor, names = int(replies[0][0]), replies[0][1]
            if names and (yield ("clear", [("UNLINK", *names)], True, False)) is None:
                return
            if cursor == 0:
                return

    def _get_with_ttl_steps(self, key: str, default: Any) -> Steps[tuple[Any, float | None]]:
        name = f"{self._prefix}{key}"
        replies = yield ("get", [("GET", name), ("PTTL", name)], False, False)
        if replies is None or replies[0] is None:
            self._count_misses()
            return default, None
        self._count_hits()
        pttl = int(replies[1])
        return self._decode(replies[0]), (0.0 if pttl == -2 else self._pttl_seconds(pttl))

    def _get_many_with_ttl_steps(
        self, keys: list[str]
    ) -> Steps[dict[str, tuple[Any, float | None]]]:
        if not keys:
            return {}
        names = [f"{self._prefix}{key}" for key in keys]
        commands = [("MGET", *names), *(("PTTL", name) for name in names)]
        return self._with_ttls(keys, (yield ("get_many", commands, False, False)))

    def _decode(self, data: bytes) -> Any:
        try:
            return self._loads(data)
        except CacheError:
            self._count_error("get", "decode")
            raise

    def _with_ttls(
        self, keys: list[str], replies: list[Any] | None
    ) -> dict[str, tuple[Any, float | None]]:
        """Read the replies of :meth:`RedisCache._get_many_with_ttl` (None: failed open)."""
        if replies is None:
            self._count_misses(len(keys))
            return {}
        found: dict[str, tuple[Any, float | None]] = {}
        for key, data, pttl in zip(keys, replies[0], replies[1:], strict=True):
            if data is not None:
                left = int(pttl)
                found[key] = (self._decode(data), 0.0 if left == -2 else self._pttl_seconds(left))
        self._count_hits(len(found))
        self._count_misses(len(keys) - len(found))
        return found

    @staticmethod
    def _pttl_seconds(pttl: int) -> float | None:
        return None if pttl < 0 else pttl / 1000.0

    def _incr_commands(self, name: str, delta: int) -> tuple[list[tuple[Any, ...]], bool]:
        if isinstance(delta, bool) or not isinstance(delta, int):
            raise ValidationError(f"incr delta must be an int, got {delta!r}")
        px = self._default_px
        if px is None:
            return [("INCRBY", name, delta)], False
        # Create the counter with the default TTL, atomically with the increment.
        return [("SET", name, 0, "NX", "PX", px), ("INCRBY", name, delta)], True

    @staticmethod
    def _set_commands(items: list[tuple[str, bytes]], px: int | None) -> list[tuple[Any, ...]]:
        if px is None:
            return [("MSET", *[part for item in items for part in item])]
        return [("SET", name, data, "PX", px) for name, data in items]
