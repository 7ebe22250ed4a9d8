"""The family's one Redis layer: what every ``utils`` package knows about redis-py, once.

utils-cache (caches, stampede locks, tiered invalidation) and utils-resilience (distributed
rate limits, shared breaker state) plan their commands and read the replies; everything
else about talking to Redis lives here:

- **Clients.** :func:`is_async_client` and :func:`check_client` tell ``redis.Redis`` from
  ``redis.asyncio.Redis`` and refuse what would break later (a cluster client, text replies
  where bytes are needed). :func:`fail_fast_client` builds a client from a URL with the
  settings the family recommends: short socket and connect timeouts (1 s) and **no retries**
  — redis-py 6+ otherwise retries three times with backoff, turning every call made during
  an outage into seconds. Options in the URL's query win, and a mistyped or malformed option
  is a :class:`~utils.core.ConfigError` naming it, not a ``TypeError`` at the first command.
- **Errors.** :func:`classify` sorts a redis-py error into ``"unavailable"`` (the server
  cannot serve us now: connection loss, timeouts, loading, cluster down, ``TRYAGAIN``),
  ``"refused"`` (it serves reads but refuses writes: ``READONLY`` after a failover, ``OOM``
  under ``maxmemory``), and ``"error"`` (we asked something wrong: ``WRONGTYPE``,
  ``NOPERM``, a script error). Fail-open policies apply to the first two only: an error is
  always raised, or a misconfiguration would silently switch a cache or a limit off.
- **Deadlines.** :func:`execute` / :func:`aexecute` run commands in one round trip and never
  wait past :func:`utils.core.deadline`. redis-py has no per-command timeout, so the sync
  version takes a connection from the client's pool and lowers its socket timeout to the
  time left for that call; the async version cancels the call. A spent deadline raises
  :class:`~utils.core.OperationTimeoutError` without a round trip.
  Limit: a connection the pool has to open first (none idle, or the last one was dropped
  by a timeout) connects and greets the server inside redis-py with the client's own
  ``socket_connect_timeout`` / ``socket_timeout``; only then is the deadline applied. The
  error is still :class:`~utils.core.OperationTimeoutError`, possibly late: keep the client's
  timeouts short (:func:`fail_fast_client` uses 1 s).
- **Scripts.** :class:`RedisScript` runs Lua with ``EVALSHA`` and falls back to ``EVAL``
  (which also loads it) after ``NOSCRIPT`` — a restart or failover empties the script cache.
- **Transient errors.** :func:`is_transient_error` is built into
  :func:`utils.core.is_transient`, so ``@retry()`` retries a raw ``redis.ConnectionError``
  whichever package raised it.

This module imports redis-py; ``import utils.core`` never imports it.

Example:
    >>> from utils.core.redis import classify, fail_fast_client
    >>> import redis
    >>> classify(redis.ConnectionError("Connection refused"))
    'unavailable'
    >>> classify(redis.ResponseError("WRONGTYPE Operation against a key"))
    'error'
    >>> client = fail_fast_client("redis://localhost:6379/0?socket_timeout=0.5")
    >>> client.connection_pool.connection_kwargs["socket_timeout"]
    0.5
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal, TypeAlias, TypeVar

import redis
import redis.asyncio
import redis.asyncio.retry
import redis.connection
import redis.exceptions as rex
from redis.backoff import NoBackoff
from redis.retry import Retry

from utils.core.deadline import remaining
from utils.core.errors import ConfigError, OperationTimeoutError, ValidationError
from utils.core.validate import positive

__all__ = [
    "DEFAULT_TIMEOUT",
    "REFUSED_ERRORS",
    "UNAVAILABLE_ERRORS",
    "Command",
    "ErrorKind",
    "RedisScript",
    "aexecute",
    "check_client",
    "classify",
    "execute",
    "fail_fast_client",
    "is_async_client",
    "is_transient_error",
]

T = TypeVar("T")

#: One command for :func:`execute`: the arguments of ``execute_command``.
Command: TypeAlias = tuple[Any, ...]
#: What :func:`classify` answers.
ErrorKind: TypeAlias = Literal["unavailable", "refused", "error"]

#: Socket and connect timeout (seconds) of the clients :func:`fail_fast_client` builds.
DEFAULT_TIMEOUT = 1.0


def _classes(*names: str) -> tuple[type[Exception], ...]:
    # Some names are newer than redis-py 5.0, the lowest the family supports: skip those.
    found = (getattr(rex, name, None) for name in names)
    return tuple(cls for cls in found if isinstance(cls, type))


#: Writes refused while reads still work: a replica after a failover (``READONLY``), a
#: server at ``maxmemory`` with ``noeviction`` (``OOM``).
REFUSED_ERRORS: tuple[type[Exception], ...] = _classes("ReadOnlyError", "OutOfMemoryError")

# Bad credentials or ACL rules are ConnectionError / ResponseError subclasses, yet waiting
# does not help: they are errors, never an outage (checked before UNAVAILABLE_ERRORS).
_DENIED: tuple[type[Exception], ...] = _classes(
    "AuthenticationError",
    "AuthorizationError",
    "AuthenticationWrongNumberOfArgsError",
    "NoPermissionError",
)

_DOWN: tuple[type[Exception], ...] = _classes(
    "ConnectionError",  # includes BusyLoadingError, MaxConnectionsError
    "TimeoutError",
    "ClusterDownError",  # includes MasterDownError
    "TryAgainError",
)

#: "Redis cannot serve us right now": where a fail-open policy may apply.
UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (*_DOWN, *REFUSED_ERRORS)

_UNAVAILABLE_OR_CANCELLED = (*UNAVAILABLE_ERRORS, asyncio.TimeoutError)

# is_transient_error's table; the first row that matches decides (subclasses first).
_TRANSIENT_RULES: tuple[tuple[tuple[type[Exception], ...], bool], ...] = (
    (_DENIED, False),
    (
        (
            *_DOWN,
            *_classes("ReadOnlyError"),  # a failover completes, writes resume; OOM does not
            *_classes("AskError", "SlotNotCoveredError", "WatchError"),  # AskError: MOVED too
        ),
        True,
    ),
    (_classes("RedisError", "RedisClusterException", "ChildDeadlockedError"), False),
)


def classify(error: BaseException) -> ErrorKind:
    """Sort a redis-py error: ``"unavailable"``, ``"refused"`` (writes), or ``"error"``.

    ``asyncio.TimeoutError`` (a cancelled async call) counts as unavailable.

    Example:
        >>> import redis.exceptions as rex
        >>> classify(rex.OutOfMemoryError("OOM command not allowed"))
        'refused'
        >>> classify(rex.NoPermissionError("NOPERM this user has no permissions"))
        'error'
    """
    if isinstance(error, _DENIED):
        return "error"
    if isinstance(error, REFUSED_ERRORS):
        return "refused"
    if isinstance(error, _UNAVAILABLE_OR_CANCELLED):
        return "unavailable"
    return "error"


def is_transient_error(exc: BaseException) -> bool | None:
    """Whether retrying after this redis-py error may help; None when it is not one.

    True for connection loss, timeouts, loading, ``READONLY`` during a failover, cluster
    resharding (``TRYAGAIN``, ``CLUSTERDOWN``, ``MOVED``/``ASK``) and ``WatchError`` (re-run
    the ``WATCH`` block); False for credentials and ACLs, ``NOSCRIPT``, ``OOM``, error replies
    and client-side data errors. :func:`utils.core.is_transient` consults it for every
    exception raised from a ``redis`` module.

    Example:
        >>> import redis.exceptions as rex
        >>> is_transient_error(rex.ConnectionError()), is_transient_error(ValueError())
        (True, None)
    """
    try:
        for classes, verdict in _TRANSIENT_RULES:
            if isinstance(exc, classes):
                return verdict
    except Exception:
        return None
    return None


# --------------------------------------------------------------------------- clients


def is_async_client(client: Any) -> bool:
    """True for a ``redis.asyncio`` client, False for a sync one.

    Example:
        >>> import redis, redis.asyncio
        >>> is_async_client(redis.Redis()), is_async_client(redis.asyncio.Redis())
        (False, True)
    """
    return inspect.iscoroutinefunction(getattr(client, "execute_command", None))


def check_client(
    client: Any, *, asynchronous: bool, owner: str, bytes_replies: bool = False
) -> None:
    """Refuse a client ``owner`` cannot use, with a message saying what to pass instead.

    Raises:
        TypeError: Not a redis-py client (or a cluster client), or the wrong kind.
        ValidationError: ``bytes_replies`` and the client decodes replies to ``str``.

    Example:
        >>> import redis
        >>> check_client(redis.Redis(), asynchronous=True, owner="AsyncRedisCache")
        Traceback (most recent call last):
        ...
        TypeError: AsyncRedisCache needs a redis.asyncio.Redis client, got a redis.Redis one
    """
    execute = getattr(client, "execute_command", None)
    if execute is None or not hasattr(client, "connection_pool"):
        raise TypeError(
            f"{owner} needs a redis client or a redis:// URL, got {type(client).__name__} "
            "(cluster clients are not supported)"
        )
    if is_async_client(client) != asynchronous:
        wanted, got = ("redis.asyncio.Redis", "redis.Redis")[:: 1 if asynchronous else -1]
        raise TypeError(f"{owner} needs a {wanted} client, got a {got} one")
    if bytes_replies and client.connection_pool.connection_kwargs.get("decode_responses"):
        raise ValidationError(
            f"{owner} needs a client with decode_responses=False: it stores bytes"
        )


_parse_url: Callable[[str], dict[str, Any]] = redis.connection.parse_url

# Options a URL may carry beyond the connection class's own parameters.
_POOL_OPTIONS = frozenset({"max_connections", "timeout", "connection_class"})


def _accepted_options(connection_class: type) -> frozenset[str]:
    names: set[str] = set()
    for cls in connection_class.__mro__:
        init = cls.__dict__.get("__init__")
        if init is None:
            continue
        try:
            names.update(inspect.signature(init).parameters)
        except (TypeError, ValueError):  # pragma: no cover - a C-level __init__
            continue
    names.discard("self")
    return frozenset(names)


def _url_options(url: str) -> dict[str, Any]:
    """What redis-py will read from ``url``; a bad or unknown option is a ConfigError."""
    if not isinstance(url, str):
        raise ConfigError(f"a Redis URL must be a string, got {type(url).__name__}")
    try:
        options = _parse_url(url)
    except ValueError as exc:  # redis-py names the option; the URL (with a password) is not
        raise ConfigError(
            f"invalid Redis URL: {exc}",
            details={"error": str(exc)},
        ) from None
    connection_class = options.get("connection_class", redis.connection.Connection)
    if url.startswith("rediss://"):
        connection_class = redis.connection.SSLConnection
    accepted = _accepted_options(connection_class) | _POOL_OPTIONS
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ConfigError(
            f"unknown Redis URL option {unknown[0]!r}"
            + (f" (and {', '.join(map(repr, unknown[1:]))})" if unknown[1:] else "")
            + "; check the spelling (e.g. socket_timeout, socket_connect_timeout, db)",
            details={"options": unknown},
        )
    return options


def fail_fast_client(
    url: str, *, asynchronous: bool = False, timeout: float = DEFAULT_TIMEOUT, **options: Any
) -> Any:
    """A redis-py client for ``url`` that fails fast when Redis is away.

    ``timeout`` becomes the socket and connect timeout, retries are off (the caller's own
    policy — a fail-open cache, ``@retry()`` — decides what a failure means), and options in
    the URL's query (``?socket_timeout=0.2``) win over both. Keyword ``options`` go to
    ``from_url`` too (``max_connections=...``).

    Args:
        url: ``redis://``, ``rediss://`` or ``unix://``.
        asynchronous: Build a ``redis.asyncio.Redis`` instead of a ``redis.Redis``.
        timeout: Socket and connect timeout in seconds.
        **options: More ``from_url`` keywords.

    Raises:
        ConfigError: A malformed URL, or an unknown or malformed query option (named).

    Example:
        >>> fail_fast_client("redis://localhost:6379/0?tll=30")
        Traceback (most recent call last):
        ...
        utils.core.errors.ConfigError: unknown Redis URL option 'tll'; check the spelling (e.g. socket_timeout, socket_connect_timeout, db)
    """
    timeout = positive(timeout, "timeout")
    from_url = _url_options(url)
    settings: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        **options,
    }
    for name in ("socket_timeout", "socket_connect_timeout"):
        if name in from_url:  # what the URL says wins
            settings.pop(name, None)
    if asynchronous:
        settings.setdefault("retry", redis.asyncio.retry.Retry(NoBackoff(), 0))
        return redis.asyncio.Redis.from_url(url, **settings)
    settings.setdefault("retry", Retry(NoBackoff(), 0))
    return redis.Redis.from_url(url, **settings)


# --------------------------------------------------------------------------- running commands


def _deadline_spent(what: str, cause: BaseException | None = None) -> OperationTimeoutError:
    error = OperationTimeoutError(
        f"deadline exceeded {what} the Redis call", details={"dependency": "redis"}
    )
    error.__cause__ = cause
    return error


def execute(client: Any, commands: Sequence[Command], *, transaction: bool = False) -> list[Any]:
    """Run ``commands`` on a sync client in one round trip, within the current deadline.

    One command is one ``execute_command``; several are one pipeline (``MULTI``/``EXEC``
    when ``transaction``). Replies go through redis-py's response callbacks either way.

    Raises:
        OperationTimeoutError: The deadline was spent before the call, or ran out during it.
        redis.exceptions.RedisError: Anything else (use :func:`classify`).

    Example:
        >>> import redis
        >>> execute(redis.Redis(), [("SET", "doc:k", "v", "PX", 1000), ("GET", "doc:k")])
        [True, b'v']
    """
    left = remaining()
    if left is None:
        return _plain(client, commands, transaction)
    if left <= 0.0:
        raise _deadline_spent("before")
    try:
        return _capped(client, commands, transaction, left)
    except rex.TimeoutError as exc:
        if remaining() == 0.0:
            raise _deadline_spent("during", exc) from exc
        raise


def _plain(client: Any, commands: Sequence[Command], transaction: bool) -> list[Any]:
    if len(commands) == 1 and not transaction:
        return [client.execute_command(*commands[0])]
    pipe = client.pipeline(transaction=transaction)
    for command in commands:
        pipe.execute_command(*command)
    return list(pipe.execute())


_connection_args_by_pool: dict[type, tuple[str, ...]] = {}


def _connection_args(pool: Any) -> tuple[str, ...]:
    # redis-py < 5.3 requires a command name (ignored since); newer ones warn when given one.
    kind = type(pool)
    args = _connection_args_by_pool.get(kind)
    if args is None:
        args = ()
        try:
            parameter = inspect.signature(pool.get_connection).parameters.get("command_name")
        except (TypeError, ValueError):  # pragma: no cover - an exotic pool
            parameter = None
        if parameter is not None and parameter.default is inspect.Parameter.empty:
            args = ("GET",)  # pragma: no cover - redis-py < 5.3
        _connection_args_by_pool[kind] = args
    return args


def _can_cap(client: Any) -> bool:
    # A single-connection client or client-side caching keeps its own connection handling:
    # the deadline is still checked before the call, but the socket timeout is not lowered.
    pool = getattr(client, "connection_pool", None)  # a cluster client has none
    return (
        pool is not None
        and getattr(client, "connection", None) is None
        and getattr(pool, "cache", None) is None
        and hasattr(pool, "get_connection")
    )


def _command_name(command: Command) -> str:
    name = command[0]
    return (name.decode() if isinstance(name, bytes) else str(name)).upper()


def _capped(client: Any, commands: Sequence[Command], transaction: bool, left: float) -> list[Any]:
    """Run ``commands`` on one pooled connection whose socket timeout is capped at ``left``."""
    if not _can_cap(client):
        return _plain(client, commands, transaction)
    sent = [("MULTI",), *commands, ("EXEC",)] if transaction else list(commands)
    pool = client.connection_pool
    conn = pool.get_connection(*_connection_args(pool))
    try:
        replies = _send_and_read(conn, sent, left)
    except rex.ResponseError:
        raise  # an error reply: every reply was read, the connection is clean: keep it
    except BaseException:
        conn.disconnect()  # a reply may be half read: never reuse this connection
        raise
    finally:
        pool.release(conn)
    if transaction:
        raw = replies[-1]  # EXEC: the results of the queued commands
        if raw is None:
            raise rex.WatchError("the transaction was aborted")
        replies = list(raw)
    callbacks = client.response_callbacks
    out = []
    for command, reply in zip(commands, replies, strict=True):
        if isinstance(reply, rex.ResponseError):
            raise reply
        callback = callbacks.get(_command_name(command))
        out.append(callback(reply) if callback is not None else reply)
    return out


def _send_and_read(conn: Any, sent: Sequence[Command], left: float) -> list[Any]:
    """Send ``sent`` and read every reply with the socket timeout capped at ``left``."""
    if conn._sock is None:  # pragma: no cover - the pool hands out connected ones
        conn.connect()
    sock = conn._sock
    limit = conn.socket_timeout
    sock.settimeout(left if limit is None or left < limit else limit)
    replies: list[Any] = []
    error: rex.ResponseError | None = None
    try:
        conn.send_packed_command(conn.pack_commands(sent))
        for _ in sent:
            try:  # read every reply, so the connection goes back to the pool clean
                replies.append(conn.read_response())
            except rex.ResponseError as exc:
                replies.append(exc)
                error = error or exc
    finally:
        if conn._sock is sock:  # errors disconnect: nothing to restore then
            sock.settimeout(limit)
    if error is not None:
        raise error
    return replies


if sys.version_info >= (3, 11):

    async def _within(seconds: float, awaitable: Awaitable[T]) -> T:
        async with asyncio.timeout(seconds):
            return await awaitable

else:  # pragma: no cover - Python 3.10

    async def _within(seconds: float, awaitable: Awaitable[T]) -> T:
        return await asyncio.wait_for(awaitable, seconds)


async def aexecute(
    client: Any, commands: Sequence[Command], *, transaction: bool = False
) -> list[Any]:
    """The async twin of :func:`execute`: the call is cancelled when the deadline expires.

    Example:
        >>> import asyncio, redis.asyncio
        >>> async def main() -> list:
        ...     async with redis.asyncio.Redis() as client:
        ...         return await aexecute(client, [("ECHO", "hi")])
        >>> asyncio.run(main())
        [b'hi']
    """
    left = remaining()
    if left is None:
        return await _aplain(client, commands, transaction)
    if left <= 0.0:
        raise _deadline_spent("before")
    try:
        return await _within(left, _aplain(client, commands, transaction))
    except (asyncio.TimeoutError, rex.TimeoutError) as exc:
        if remaining() == 0.0:
            raise _deadline_spent("during", exc) from exc
        raise


async def _aplain(client: Any, commands: Sequence[Command], transaction: bool) -> list[Any]:
    if len(commands) == 1 and not transaction:
        return [await client.execute_command(*commands[0])]
    pipe = client.pipeline(transaction=transaction)
    for command in commands:
        pipe.execute_command(*command)
    return list(await pipe.execute())


class RedisScript:
    """A Lua script run by SHA, loaded again when Redis has forgotten it.

    ``EVALSHA`` sends 40 bytes instead of the script; after a restart or failover empties
    the script cache the reply is ``NOSCRIPT``, and the call is repeated once with ``EVAL``
    (which caches the script again). Both go through :func:`execute` / :func:`aexecute`, so
    they honour the deadline.

    Example:
        >>> import redis
        >>> incr_to = RedisScript("return redis.call('INCRBY', KEYS[1], ARGV[1])")
        >>> len(incr_to.sha)
        40
        >>> incr_to.run(redis.Redis(), ["doc:counter"], [0]) >= 0
        True
    """

    __slots__ = ("sha", "source")

    def __init__(self, source: str) -> None:
        self.source: str = source
        self.sha: str = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    def command(self, keys: Sequence[Any], args: Sequence[Any]) -> Command:
        """The ``EVALSHA`` command, to send inside a pipeline of your own.

        Example:
            >>> RedisScript("return 1").command(["k"], [2])[2:]
            (1, 'k', 2)
        """
        return ("EVALSHA", self.sha, len(keys), *keys, *args)

    def run(self, client: Any, keys: Sequence[Any] = (), args: Sequence[Any] = ()) -> Any:
        """Run the script on a sync client; returns its reply."""
        try:
            return execute(client, [self.command(keys, args)])[0]
        except rex.NoScriptError:
            return execute(client, [("EVAL", self.source, len(keys), *keys, *args)])[0]

    async def arun(self, client: Any, keys: Sequence[Any] = (), args: Sequence[Any] = ()) -> Any:
        """Run the script on an async client; returns its reply."""
        try:
            return (await aexecute(client, [self.command(keys, args)]))[0]
        except rex.NoScriptError:
            return (await aexecute(client, [("EVAL", self.source, len(keys), *keys, *args)]))[0]

    def __repr__(self) -> str:
        return f"<RedisScript {self.sha[:12]}>"
