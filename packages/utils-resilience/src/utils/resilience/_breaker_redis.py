"""Circuit breaker state shared by every process through Redis (the ``[redis]`` extra).

Imported only when :class:`RedisBreakerStorage` is used, so ``import utils.resilience``
never imports redis.

Every operation — admitting a call, recording its outcome, forcing a state, reading it — is
*one* Lua script run with ``EVALSHA`` (:class:`utils.core.redis.RedisScript`, which reloads
the script after a ``NOSCRIPT`` reply, e.g. after a failover), so it is atomic however many
processes share the breaker. Timing uses the Redis server's ``TIME`` inside the script:
process clocks, wall or monotonic, do not matter.

Keys, for breaker ``payments`` in namespace ``shop`` (one hash tag, so cluster-safe):

- ``{utils:cb:shop:payments}:state`` — a hash: ``state``, ``failures``, ``successes``,
  ``generation``, ``opened_at`` (server milliseconds); its TTL (``ttl``, refreshed on every
  write) lets an idle breaker's state disappear;
- ``{utils:cb:shop:payments}:probe`` — the half-open probe lease, ``SET NX PX
  probe_timeout``.

What pybreaker's ``CircuitRedisStorage`` gets wrong and this does not: read-modify-write
across several commands (pybreaker#101), counters reset whenever a new breaker object
starts (pybreaker#26, #24 — here a new instance reads and never writes at start), no TTL,
and keys not derived from the breaker's name, so two breakers share one state (pybreaker#88).

Cost: a call through a closed breaker is one round trip (admission); its outcome needs a
second one only when there is something to record (a failure, a success after failures, a
probe). Admitting a call, forcing and reading the state honour the
:func:`utils.core.deadline` (:func:`utils.core.redis.execute`); recording an outcome does not:
it is bookkeeping after the call, bounded by the client's socket timeout, and a breaker must
count the failures of calls that ran out of time.

When Redis is *unavailable* (:func:`utils.core.redis.classify`: connection lost, timeout,
loading, read-only replica, OOM...) the storage does what ``fail_open`` says (default True, as everywhere in the family):
``True`` runs calls unguarded, ``False`` refuses them with ``CircuitOpenError``; either way
``breaker.storage_unavailable`` is logged once per outage (``breaker.storage_recovered``
when it answers again). Any other Redis error (``NOPERM``, ``WRONGTYPE``, a script error)
raises :class:`~utils.resilience.StorageError`: failing open on a misconfiguration would
switch the breaker off without anyone noticing.

Example:
    >>> import redis
    >>> from utils.resilience.breaker import CircuitBreaker
    >>> storage = RedisBreakerStorage(redis.Redis(), "shop", fail_open=True)  # doctest: +SKIP
    >>> breaker = CircuitBreaker("payments", storage=storage)  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import os
from collections.abc import Awaitable, Callable
from contextvars import copy_context
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TypeVar

import redis.exceptions

from utils.core import UnavailableError, ValidationError
from utils.core.deadline import DEADLINE
from utils.core.redis import RedisScript, classify, fail_fast_client, is_async_client
from utils.core.report import Outage
from utils.core.validate import duration, flag
from utils.resilience._breaker_state import (
    Admission,
    BreakerPolicy,
    BreakerSnapshot,
    BreakerState,
    BreakerStorage,
    Clock,
    Outcome,
    Transition,
)
from utils.resilience.errors import StorageError

if TYPE_CHECKING:
    from redis import Redis
    from redis.asyncio import Redis as AsyncRedis

__all__ = ["RedisBreakerStorage"]

T = TypeVar("T")

_LOGGER = "utils.resilience.breaker"


def _without_deadline(fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn`` outside the caller's deadline, in a copy of the current context.

    Recording how a call ended is bookkeeping after the call: a breaker must count the
    failure of a call that ran out of time, so the (spent) deadline must not stop it. The
    client's socket timeout still bounds it.
    """
    context = copy_context()
    context.run(DEADLINE.set, None)
    return context.run(fn, *args)


async def _awithout_deadline(coroutine: Awaitable[T]) -> T:
    """:func:`_without_deadline` for a coroutine (a task created in the copied context)."""
    context = copy_context()
    context.run(DEADLINE.set, None)
    return await context.run(asyncio.ensure_future, coroutine)


_SCRIPT = """
local op = ARGV[1]

-- The hot path first: admitting a call into a closed circuit reads three fields.
if op == 'admit' then
  local c = redis.call('HMGET', KEYS[1], 'state', 'failures', 'generation')
  if not c[1] or c[1] == 'closed' then
    return {1, 'closed', tonumber(c[3]) or 0, 0, 0, tonumber(c[2]) or 0, 0, '', 0}
  end
end

local fail_max = tonumber(ARGV[2])
local reset_ms = tonumber(ARGV[3])
local threshold = tonumber(ARGV[4])
local probe_ms = tonumber(ARGV[5])
local ttl_ms = tonumber(ARGV[6])
local caller_generation = tonumber(ARGV[7])
local token = ARGV[8]
local extra = ARGV[9]

local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)

local f = redis.call('HMGET', KEYS[1], 'state', 'failures', 'successes', 'generation',
  'opened_at')
local state = f[1] or 'closed'
local failures = tonumber(f[2]) or 0
local successes = tonumber(f[3]) or 0
local generation = tonumber(f[4]) or 0
local opened_at = tonumber(f[5]) or 0
local previous = ''
local allowed = 0
local probe = 0

local function save()
  redis.call('HSET', KEYS[1], 'state', state, 'failures', failures, 'successes', successes,
    'generation', generation, 'opened_at', opened_at)
  redis.call('PEXPIRE', KEYS[1], ttl_ms)
end

local function enter(new_state)
  if previous == '' then previous = state end
  state = new_state
  generation = generation + 1
  successes = 0
  if new_state == 'open' then opened_at = now else failures = 0 end
  redis.call('DEL', KEYS[2])
end

local function reply()
  local wait = 0
  if state == 'open' then
    wait = math.max(0, opened_at + reset_ms - now)
  elseif state == 'half_open' then
    wait = math.max(0, redis.call('PTTL', KEYS[2]))
  end
  return {allowed, state, generation, probe, wait, failures, successes, previous, opened_at}
end

if op == 'admit' then
  if state == 'open' then
    if now >= opened_at + reset_ms then
      enter('half_open')
      redis.call('SET', KEYS[2], token, 'PX', probe_ms)
      save()
      allowed = 1
      probe = 1
    end
  elseif redis.call('SET', KEYS[2], token, 'NX', 'PX', probe_ms) then
    allowed = 1
    probe = 1
  end
  return reply()
end

if op == 'record' then
  if caller_generation ~= generation then
    return reply()
  end
  if state == 'closed' then
    if extra == 'failure' then
      failures = failures + 1
      if failures >= fail_max then enter('open') end
      save()
    elseif extra == 'success' and failures > 0 then
      failures = 0
      save()
    end
  elseif state == 'half_open' and token ~= '' then
    local holder = redis.call('GET', KEYS[2])
    if holder and holder ~= token then
      return reply()
    end
    if holder then redis.call('DEL', KEYS[2]) end
    if extra == 'failure' then
      enter('open')
      save()
    elseif extra == 'success' then
      successes = successes + 1
      if successes >= threshold then enter('closed') end
      save()
    end
  end
  return reply()
end

if op == 'force' then
  enter(extra)
  save()
  return reply()
end

if op == 'get' then
  return reply()
end

if op == 'incr_failures' then
  failures = failures + 1
elseif op == 'reset_failures' then
  failures = 0
elseif op == 'incr_successes' then
  successes = successes + 1
elseif op == 'reset_successes' then
  successes = 0
elseif op == 'set_opened_at' then
  opened_at = tonumber(extra)
else
  return redis.error_reply('unknown circuit breaker operation ' .. op)
end
save()
return reply()
"""

_SHARED_SCRIPT = RedisScript(_SCRIPT)
_REDIS_ERROR = redis.exceptions.RedisError
_STATES = {state.value: state for state in BreakerState}
_UNBOUND = "attach this storage to a breaker first: CircuitBreaker(name, storage=storage)"


def _wrote(op: str, reply: _Reply) -> bool:
    """Whether the script wrote: every op but a read, or an admission that took a lease."""
    return op not in ("admit", "get") or reply.probe or reply.previous is not None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class _Reply:
    """One script reply, decoded."""

    __slots__ = (
        "allowed",
        "failures",
        "generation",
        "opened_at_ms",
        "previous",
        "probe",
        "state",
        "successes",
        "wait",
    )

    def __init__(self, raw: list[Any]) -> None:
        self.allowed = bool(raw[0])
        self.state = _STATES[_text(raw[1])]
        self.generation = int(raw[2])
        self.probe = bool(raw[3])
        self.wait = int(raw[4]) / 1000.0
        self.failures = int(raw[5])
        self.successes = int(raw[6])
        previous = _text(raw[7])
        self.previous = _STATES[previous] if previous else None
        self.opened_at_ms = int(raw[8])

    def snapshot(self) -> BreakerSnapshot:
        return BreakerSnapshot(
            self.state, self.failures, self.successes, self.generation, self.wait
        )

    def transitions(self) -> tuple[Transition, ...]:
        if self.previous is None:
            return ()
        return (Transition(self.previous, self.state, self.generation),)


class RedisBreakerStorage(BreakerStorage):
    """Breaker state in Redis, shared by every process whose breakers have the same name.

    How fast an outage is noticed is the client's business: redis-py 6 retries a failed
    command three times with backoff by default, which costs seconds per call while Redis
    is down. Build the client with :func:`utils.core.redis.fail_fast_client`.

    Args:
        client: A ``redis.Redis`` (sync calls; ``acall`` then runs each round trip in a
            worker thread) or a ``redis.asyncio.Redis`` (``acall`` / ``async with`` /
            ``await breaker.aopen()``...; sync calls are refused, and ``breaker.state``
            returns the state last seen by this process), or a ``redis://`` URL (a sync
            client built by :func:`utils.core.redis.fail_fast_client`).
        namespace: Your service's name: breakers with the same namespace and name share state.
        ttl: Seconds an idle breaker's state is kept (refreshed on every write; never less
            than twice ``reset_timeout + probe_timeout``).
        fail_open: When Redis is unavailable, run calls unguarded (True, the family's
            default for every Redis-backed component) or refuse them with
            ``CircuitOpenError`` (False). Either way the outage is logged once
            (``breaker.storage_unavailable``) and counted in metrics. Other Redis errors
            raise :class:`~utils.resilience.StorageError` whatever it says.

    One storage object may serve many breakers: each breaker attaches to its own keys.

    Example:
        >>> import redis
        >>> storage = RedisBreakerStorage(redis.Redis(), "shop", fail_open=True)
        >>> storage.keys_for("payments")
        ('{utils:cb:shop:payments}:state', '{utils:cb:shop:payments}:probe')
    """

    def __init__(
        self,
        client: Redis | AsyncRedis | str | Any,
        namespace: str,
        *,
        ttl: float = 86400.0,
        fail_open: bool = True,
    ) -> None:
        if not isinstance(namespace, str) or not namespace:
            raise ValidationError(f"namespace must be a non-empty string, got {namespace!r}")
        seconds = duration(ttl, "ttl", allow_zero=False, allow_none=False, allow_infinite=False)
        super().__init__("redis")
        if isinstance(client, str):
            client = fail_fast_client(client)  # a URL: the family's fail-fast settings
        self.client = client
        self.namespace = namespace
        self.ttl: float = float(seconds or 0.0)
        self.fail_open: bool = flag(fail_open, "fail_open")
        self.is_async: bool = is_async_client(client)
        self._script = _SHARED_SCRIPT
        self._breaker: str | None = None
        self._keys: tuple[str, str] | None = None
        self._policy: BreakerPolicy | None = None
        self._static: tuple[str, ...] = ()
        self._last = BreakerSnapshot(BreakerState.CLOSED, 0, 0, 0, 0.0)
        self._outage = self._new_outage("")
        self._writes_refused = False
        self._token_prefix = os.urandom(6).hex()
        self._tokens = itertools.count(1)

    def keys_for(self, name: str) -> tuple[str, str]:
        """The state and probe-lease keys of breaker ``name`` (same hash tag).

        Example:
            >>> import redis
            >>> RedisBreakerStorage(redis.Redis(), "ns", fail_open=True).keys_for("a")[1]
            '{utils:cb:ns:a}:probe'
        """
        tag = f"{{utils:cb:{self.namespace}:{name}}}"
        return f"{tag}:state", f"{tag}:probe"

    def attach(
        self, name: str, *, policy: BreakerPolicy, clock: Clock | None = None
    ) -> RedisBreakerStorage:
        """Return a storage bound to breaker ``name``'s keys (the clock is Redis's own).

        Example:
            >>> import redis
            >>> from utils.resilience.breaker import BreakerPolicy
            >>> storage = RedisBreakerStorage(redis.Redis(), "ns", fail_open=True)
            >>> storage.attach("a", policy=BreakerPolicy(5, 30.0, 1, 30.0)).breaker_name
            'a'
        """
        bound = copy.copy(self)
        bound._breaker = name
        bound._keys = self.keys_for(name)
        bound._policy = policy
        bound._static = bound._policy_args(policy)
        bound._last = BreakerSnapshot(BreakerState.CLOSED, 0, 0, 0, 0.0)
        bound._outage = self._new_outage(name)
        bound._writes_refused = False
        bound._tokens = itertools.count(1)
        return bound

    @staticmethod
    def _new_outage(name: str) -> Outage:
        return Outage(
            "redis",
            events=("breaker.storage_unavailable", "breaker.storage_recovered"),
            logger=_LOGGER,
            tags={"breaker": name},
        )

    @property
    def breaker_name(self) -> str | None:
        """The breaker this storage is attached to (None for the shared template)."""
        return self._breaker

    def __repr__(self) -> str:
        return f"RedisBreakerStorage(namespace={self.namespace!r}, breaker={self._breaker!r})"

    def _policy_args(self, policy: BreakerPolicy) -> tuple[str, ...]:
        reset_ms = round(policy.reset_timeout * 1000)
        probe_ms = max(1, round(policy.probe_timeout * 1000))
        ttl_ms = max(round(self.ttl * 1000), 2 * (reset_ms + probe_ms))
        return (
            str(policy.fail_max),
            str(reset_ms),
            str(policy.success_threshold),
            str(probe_ms),
            str(ttl_ms),
        )

    # -- running the script ---------------------------------------------------------------------

    def _args(  # nosec B107 - "token" is a probe lease id, not a password
        self,
        op: str,
        policy: BreakerPolicy | None,
        generation: int = 0,
        token: str = "",
        extra: str = "",
    ) -> tuple[list[str], list[str]]:
        """The script's keys and arguments for ``op`` (no I/O)."""
        if self._keys is None:
            raise ValidationError(_UNBOUND)
        static = (
            self._static if policy is None or policy == self._policy else self._policy_args(policy)
        )
        return list(self._keys), [op, *static, str(generation), token, extra]

    # The twins take _args' arguments and differ only in how the script is run.

    def _run(self, op: str, policy: BreakerPolicy | None, *more: Any, **named: Any) -> _Reply:
        if self.is_async:
            raise TypeError(
                f"breaker {self._breaker!r} uses an async Redis client: use acall(), "
                "`async with`, or the a-prefixed methods (aopen, areset, astate...)"
            )
        keys, args = self._args(op, policy, *more, **named)
        return self._answered(op, self._script.run(self.client, keys, args))

    async def _arun(
        self, op: str, policy: BreakerPolicy | None, *more: Any, **named: Any
    ) -> _Reply:
        planned = self._args(op, policy, *more, **named)
        return self._answered(op, await self._script.arun(self.client, *planned))

    def _answered(self, op: str, raw: Any) -> _Reply:
        reply = _Reply(raw)
        self._last = reply.snapshot()
        if self._outage.down and (not self._writes_refused or _wrote(op, reply)):
            # A server that refuses writes (OOM, READONLY) still answers reads: only a
            # write that went through ends such an outage, or the log would flap.
            self._writes_refused = False
            self._outage.succeeded()
        return reply

    def _unreachable(self, error: redis.exceptions.RedisError) -> None:
        """Record an outage, or raise :class:`StorageError` for an error that is none."""
        kind = classify(error)
        if kind == "error":
            raise StorageError(
                f"the shared state of circuit breaker {self._breaker!r} answered with an "
                f"error: {type(error).__name__}",
                details={"breaker": self._breaker, "error": type(error).__name__},
            ) from error
        self._writes_refused = kind == "refused"
        self._outage.failed(error, namespace=self.namespace, fail_open=self.fail_open)

    def _unreachable_admission(self, error: redis.exceptions.RedisError) -> Admission:
        self._unreachable(error)
        if self.fail_open:
            return Admission(allowed=True, state=self._last.state, generation=-1, clean=True)
        return Admission(allowed=False, state=BreakerState.OPEN, generation=-1, error=error)

    def _unavailable_error(self, error: redis.exceptions.RedisError) -> UnavailableError:
        self._unreachable(error)
        failure = UnavailableError(
            f"the shared state of circuit breaker {self._breaker!r} is unreachable in Redis",
            details={"breaker": self._breaker, "namespace": self.namespace},
        )
        failure.__cause__ = error
        return failure

    def _new_token(self) -> str:
        return f"{self._token_prefix}:{next(self._tokens)}"

    @staticmethod
    def _admission(reply: _Reply, token: str) -> Admission:
        return Admission(
            allowed=reply.allowed,
            state=reply.state,
            generation=reply.generation,
            probe=reply.probe,
            token=token if reply.probe else None,
            retry_after=0.0 if reply.allowed else reply.wait,
            transitions=reply.transitions(),
            clean=reply.state is BreakerState.CLOSED and reply.failures == 0,
        )

    @staticmethod
    def _needs_recording(admission: Admission, outcome: Outcome) -> bool:
        if admission.generation < 0:
            return False  # admitted while Redis was unreachable: nothing to record against
        if outcome == "success":
            return not admission.clean
        return outcome == "failure" or admission.probe

    # -- the atomic interface (sync) -------------------------------------------------------------

    def admit(self, policy: BreakerPolicy) -> Admission:
        """One round trip: admit (or refuse) a call, taking the probe lease in half-open."""
        token = self._new_token()
        try:
            reply = self._run("admit", policy, token=token)
        except _REDIS_ERROR as error:
            return self._unreachable_admission(error)
        return self._admission(reply, token)

    def record(
        self, admission: Admission, outcome: Outcome, policy: BreakerPolicy
    ) -> tuple[Transition, ...]:
        """Record an outcome (no round trip for a success with nothing to reset)."""
        if not self._needs_recording(admission, outcome):
            return ()
        try:
            reply = _without_deadline(
                self._run,
                "record",
                policy,
                admission.generation,
                str(admission.token or ""),
                outcome,
            )
        except _REDIS_ERROR as error:
            self._unreachable(error)
            return ()
        return reply.transitions()

    def force(self, state: BreakerState, policy: BreakerPolicy) -> Transition:
        """Move to ``state`` (new generation, counters reset, lease released).

        Raises:
            UnavailableError: Redis cannot be reached.
        """
        try:
            reply = self._run("force", policy, extra=state.value)
        except _REDIS_ERROR as error:
            raise self._unavailable_error(error) from error
        return Transition(reply.previous or state, reply.state, reply.generation)

    def snapshot(self, policy: BreakerPolicy) -> BreakerSnapshot:
        """Read the shared state (the last one seen when Redis is unreachable or async)."""
        if self.is_async:
            return self._last
        try:
            return self._run("get", policy).snapshot()
        except _REDIS_ERROR as error:
            self._unreachable(error)
            return self._last

    # -- the atomic interface (async) ------------------------------------------------------------

    async def aadmit(self, policy: BreakerPolicy) -> Admission:
        """:meth:`admit` with the async client (or in a worker thread with a sync one)."""
        if not self.is_async:
            return await super().aadmit(policy)
        token = self._new_token()
        try:
            reply = await self._arun("admit", policy, token=token)
        except _REDIS_ERROR as error:
            return self._unreachable_admission(error)
        return self._admission(reply, token)

    async def arecord(
        self, admission: Admission, outcome: Outcome, policy: BreakerPolicy
    ) -> tuple[Transition, ...]:
        """:meth:`record` with the async client (or in a worker thread with a sync one)."""
        if not self._needs_recording(admission, outcome):
            return ()
        if not self.is_async:
            return await super().arecord(admission, outcome, policy)
        try:
            reply = await _awithout_deadline(
                self._arun(
                    "record", policy, admission.generation, str(admission.token or ""), outcome
                )
            )
        except _REDIS_ERROR as error:
            self._unreachable(error)
            return ()
        return reply.transitions()

    async def aforce(self, state: BreakerState, policy: BreakerPolicy) -> Transition:
        """:meth:`force` with the async client (or in a worker thread with a sync one)."""
        if not self.is_async:
            return await super().aforce(state, policy)
        try:
            reply = await self._arun("force", policy, extra=state.value)
        except _REDIS_ERROR as error:
            raise self._unavailable_error(error) from error
        return Transition(reply.previous or state, reply.state, reply.generation)

    async def asnapshot(self, policy: BreakerPolicy) -> BreakerSnapshot:
        """:meth:`snapshot` with the async client (or in a worker thread with a sync one)."""
        if not self.is_async:
            return await super().asnapshot(policy)
        try:
            return (await self._arun("get", policy)).snapshot()
        except _REDIS_ERROR as error:
            self._unreachable(error)
            return self._last

    # -- pybreaker's CircuitBreakerStorage interface ---------------------------------------------
    # Each read is one round trip (the last seen values with an async client or during an
    # outage); each write is one atomic script.

    def _read(self) -> _Reply | None:
        if self.is_async:
            return None
        try:
            return self._run("get", None)
        except _REDIS_ERROR as error:
            self._unreachable(error)
            return None

    def _write(self, op: str, extra: str = "") -> None:
        try:
            self._run(op, None, extra=extra)
        except _REDIS_ERROR as error:
            self._unreachable(error)

    @property
    def state(self) -> str:
        """The shared state in pybreaker's spelling."""
        reply = self._read()
        state = reply.state if reply is not None else self._last.state
        return state.pybreaker_name

    @state.setter
    def state(self, state: str) -> None:
        self._write("force", BreakerState.from_pybreaker(state).value)

    @property
    def counter(self) -> int:
        """Consecutive counted failures."""
        reply = self._read()
        return reply.failures if reply is not None else self._last.failures

    @property
    def success_counter(self) -> int:
        """Consecutive successful probes in half-open."""
        reply = self._read()
        return reply.successes if reply is not None else self._last.successes

    @property
    def opened_at(self) -> datetime | None:
        """When the circuit last opened, by the Redis server's clock (UTC)."""
        reply = self._read()
        if reply is None or not reply.opened_at_ms:
            return None
        return datetime.fromtimestamp(reply.opened_at_ms / 1000.0, tz=timezone.utc)

    @opened_at.setter
    def opened_at(self, value: datetime) -> None:
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        self._write("set_opened_at", str(round(value.timestamp() * 1000)))

    def increment_counter(self) -> None:
        """Add one counted failure (atomically)."""
        self._write("incr_failures")

    def reset_counter(self) -> None:
        """Forget the counted failures."""
        self._write("reset_failures")

    def increment_success_counter(self) -> None:
        """Add one successful probe (atomically)."""
        self._write("incr_successes")

    def reset_success_counter(self) -> None:
        """Forget the successful probes."""
        self._write("reset_successes")
