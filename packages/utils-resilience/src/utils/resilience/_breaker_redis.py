"""Circuit breaker state shared by every process through Redis (the ``[redis]`` extra).

Imported only when :class:`RedisBreakerStorage` is used, so ``import utils.resilience``
never imports redis.

Every operation — admitting a call, recording its outcome, forcing a state, reading it — is
*one* Lua script run with ``EVALSHA`` (redis-py's ``register_script``, which reloads the
script after a ``NOSCRIPT`` reply, e.g. after a failover), so it is atomic however many
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
probe). When Redis cannot be reached the storage *fails open* by default: calls run unguarded
and ``breaker.storage_unavailable`` is logged once per outage (``breaker.storage_recovered``
when it answers again). With ``fail_open=False`` calls are refused with
``CircuitOpenError`` instead.

Example:
    >>> import redis
    >>> from utils.resilience.breaker import CircuitBreaker
    >>> storage = RedisBreakerStorage(redis.Redis(), "shop")  # doctest: +SKIP
    >>> breaker = CircuitBreaker("payments", storage=storage)  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import inspect
import itertools
import math
import os
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, cast

import redis.exceptions

from utils.core import UnavailableError, ValidationError, get_logger
from utils.core.metrics import get_metrics_sink
from utils.resilience.breaker import (
    Admission,
    BreakerPolicy,
    BreakerSnapshot,
    BreakerState,
    BreakerStorage,
    Clock,
    Outcome,
    Transition,
)

if TYPE_CHECKING:
    from redis import Redis
    from redis.asyncio import Redis as AsyncRedis

__all__ = ["RedisBreakerStorage"]

_log = get_logger("utils.resilience.breaker")

#: Errors that mean "Redis cannot answer right now", as opposed to a bug.
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,  # includes BusyLoadingError
    redis.exceptions.TimeoutError,
    redis.exceptions.ReadOnlyError,  # talking to a replica after a failover
    redis.exceptions.ClusterDownError,
    redis.exceptions.TryAgainError,
    redis.exceptions.MasterDownError,
    OSError,
)

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

_STATES = {state.value: state for state in BreakerState}
_UNBOUND = "attach this storage to a breaker first: CircuitBreaker(name, storage=storage)"


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
    is down. For a limiter or breaker client, prefer
    ``redis.Redis(..., retry=Retry(NoBackoff(), 0), socket_timeout=0.1,
    socket_connect_timeout=0.1)``.

    Args:
        client: A ``redis.Redis`` (sync calls; ``acall`` then runs each round trip in a
            worker thread) or a ``redis.asyncio.Redis`` (``acall`` / ``async with`` /
            ``await breaker.aopen()``...; sync calls are refused, and ``breaker.state``
            returns the state last seen by this process). Cluster clients work too.
        namespace: Your service's name: breakers with the same namespace and name share state.
        ttl: Seconds an idle breaker's state is kept (refreshed on every write; never less
            than twice ``reset_timeout + probe_timeout``).
        fail_open: When Redis cannot be reached, run calls unguarded (True, the default) or
            refuse them with ``CircuitOpenError`` (False). Either way the outage is logged
            once (``breaker.storage_unavailable``) and counted in metrics.

    One storage object may serve many breakers: each breaker attaches to its own keys.

    Example:
        >>> import redis
        >>> storage = RedisBreakerStorage(redis.Redis(), "shop")
        >>> storage.keys_for("payments")
        ('{utils:cb:shop:payments}:state', '{utils:cb:shop:payments}:probe')
    """

    def __init__(
        self,
        client: Redis | AsyncRedis | Any,
        namespace: str,
        *,
        ttl: float = 86400.0,
        fail_open: bool = True,
    ) -> None:
        if not isinstance(namespace, str) or not namespace:
            raise ValidationError(f"namespace must be a non-empty string, got {namespace!r}")
        if (
            isinstance(ttl, bool)
            or not isinstance(ttl, int | float)
            or not math.isfinite(ttl)
            or ttl <= 0
        ):
            raise ValidationError(f"ttl must be a finite number of seconds > 0, got {ttl!r}")
        super().__init__("redis")
        self.client = client
        self.namespace = namespace
        self.ttl = float(ttl)
        self.fail_open = fail_open
        self.is_async = inspect.iscoroutinefunction(getattr(client, "execute_command", None))
        self._script = client.register_script(_SCRIPT)
        self._breaker: str | None = None
        self._keys: tuple[str, str] | None = None
        self._policy: BreakerPolicy | None = None
        self._static: tuple[str, ...] = ()
        self._last = BreakerSnapshot(BreakerState.CLOSED, 0, 0, 0, 0.0)
        self._outage = False
        self._token_prefix = os.urandom(6).hex()
        self._tokens = itertools.count(1)

    def keys_for(self, name: str) -> tuple[str, str]:
        """The state and probe-lease keys of breaker ``name`` (same hash tag).

        Example:
            >>> import redis
            >>> RedisBreakerStorage(redis.Redis(), "ns").keys_for("a")[1]
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
            >>> storage = RedisBreakerStorage(redis.Redis(), "ns")
            >>> storage.attach("a", policy=BreakerPolicy(5, 30.0, 1, 30.0)).breaker_name
            'a'
        """
        bound = copy.copy(self)
        bound._breaker = name
        bound._keys = self.keys_for(name)
        bound._policy = policy
        bound._static = bound._policy_args(policy)
        bound._last = BreakerSnapshot(BreakerState.CLOSED, 0, 0, 0, 0.0)
        bound._outage = False
        bound._tokens = itertools.count(1)
        return bound

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

    def _args(
        self, op: str, policy: BreakerPolicy | None, generation: int, token: str, extra: str
    ) -> tuple[list[str], list[str]]:
        if self._keys is None:
            raise ValidationError(_UNBOUND)
        static = (
            self._static if policy is None or policy == self._policy else self._policy_args(policy)
        )
        return list(self._keys), [op, *static, str(generation), token, extra]

    def _run(
        self,
        op: str,
        policy: BreakerPolicy | None,
        generation: int = 0,
        token: str = "",
        extra: str = "",
    ) -> _Reply:
        if self.is_async:
            raise TypeError(
                f"breaker {self._breaker!r} uses an async Redis client: use acall(), "
                "`async with`, or the a-prefixed methods (aopen, areset, astate...)"
            )
        keys, args = self._args(op, policy, generation, token, extra)
        reply = _Reply(cast("list[Any]", self._script(keys=keys, args=args)))
        self._answered(reply)
        return reply

    async def _arun(
        self,
        op: str,
        policy: BreakerPolicy | None,
        generation: int = 0,
        token: str = "",
        extra: str = "",
    ) -> _Reply:
        keys, args = self._args(op, policy, generation, token, extra)
        reply = _Reply(await self._script(keys=keys, args=args))
        self._answered(reply)
        return reply

    def _answered(self, reply: _Reply) -> None:
        self._last = reply.snapshot()
        if self._outage:
            self._outage = False
            _log.info("breaker.storage_recovered", breaker=self._breaker)

    def _unreachable(self, error: BaseException) -> None:
        if not self._outage:
            self._outage = True
            _log.warning(
                "breaker.storage_unavailable",
                breaker=self._breaker,
                namespace=self.namespace,
                fail_open=self.fail_open,
                error=f"{type(error).__name__}: {error}",
            )
            get_metrics_sink().increment(
                "breaker.storage_unavailable", tags={"breaker": self._breaker or ""}
            )

    def _unreachable_admission(self, error: BaseException) -> Admission:
        self._unreachable(error)
        if self.fail_open:
            return Admission(allowed=True, state=self._last.state, generation=-1, clean=True)
        return Admission(allowed=False, state=BreakerState.OPEN, generation=-1, error=error)

    def _unavailable_error(self, error: BaseException) -> UnavailableError:
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
        except _UNAVAILABLE as error:
            return self._unreachable_admission(error)
        return self._admission(reply, token)

    def record(
        self, admission: Admission, outcome: Outcome, policy: BreakerPolicy
    ) -> tuple[Transition, ...]:
        """Record an outcome (no round trip for a success with nothing to reset)."""
        if not self._needs_recording(admission, outcome):
            return ()
        try:
            reply = self._run(
                "record", policy, admission.generation, str(admission.token or ""), outcome
            )
        except _UNAVAILABLE as error:
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
        except _UNAVAILABLE as error:
            raise self._unavailable_error(error) from error
        return Transition(reply.previous or state, reply.state, reply.generation)

    def snapshot(self, policy: BreakerPolicy) -> BreakerSnapshot:
        """Read the shared state (the last one seen when Redis is unreachable or async)."""
        if self.is_async:
            return self._last
        try:
            return self._run("get", policy).snapshot()
        except _UNAVAILABLE as error:
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
        except _UNAVAILABLE as error:
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
            reply = await self._arun(
                "record", policy, admission.generation, str(admission.token or ""), outcome
            )
        except _UNAVAILABLE as error:
            self._unreachable(error)
            return ()
        return reply.transitions()

    async def aforce(self, state: BreakerState, policy: BreakerPolicy) -> Transition:
        """:meth:`force` with the async client (or in a worker thread with a sync one)."""
        if not self.is_async:
            return await super().aforce(state, policy)
        try:
            reply = await self._arun("force", policy, extra=state.value)
        except _UNAVAILABLE as error:
            raise self._unavailable_error(error) from error
        return Transition(reply.previous or state, reply.state, reply.generation)

    async def asnapshot(self, policy: BreakerPolicy) -> BreakerSnapshot:
        """:meth:`snapshot` with the async client (or in a worker thread with a sync one)."""
        if not self.is_async:
            return await super().asnapshot(policy)
        try:
            return (await self._arun("get", policy)).snapshot()
        except _UNAVAILABLE as error:
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
        except _UNAVAILABLE as error:
            self._unreachable(error)
            return None

    def _write(self, op: str, extra: str = "") -> None:
        try:
            self._run(op, None, extra=extra)
        except _UNAVAILABLE as error:
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
