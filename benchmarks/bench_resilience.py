"""utils.resilience against tenacity, backoff, stamina, pybreaker, limits, pyrate-limiter and
raw redis-py, side by side.

Run with ``nox -s bench`` or ``python benchmarks/bench_resilience.py [--quick] [--json PATH]
[--verbose]`` in an environment holding the utils-core and utils-resilience[redis] wheels and
the peers of ``requirements.txt``. Every comparison checks first, untimed, that both sides do
the same work (the call returns the expected value, the wrapped function runs once, the rate
limiter admits every request of the benchmark).

1. ``@retry()`` success path, sync and async: the OVERHEAD of a decorated call over the plain
   call of the same trivial function (plain, ours and every peer measured interleaved in one
   group, overhead = decorated - plain per round). Targets: ours' overhead at least 20x
   smaller than tenacity's ``@retry(stop=stop_after_attempt(3), wait=wait_exponential())``
   and 3x smaller than backoff's ``@on_exception(expo, Exception, max_tries=3)``; stamina's
   ``@retry(on=Exception, attempts=3)`` is informational. Async: ``await f(1)`` in a loop
   inside one running event loop (timed inside the coroutine: loop start-up is not measured).
2. A call through a closed ``CircuitBreaker`` (``breaker.call(f)`` and ``@breaker``) against
   raw ``pybreaker.CircuitBreaker().call(f)``: total time per call, target ours/peer <= 0.5.
3. In-memory ``RateLimiter.try_acquire`` on the allowed path against limits' fixed window
   (``FixedWindowRateLimiter(MemoryStorage()).hit``) and pyrate-limiter's
   ``Limiter(Rate(...)).try_acquire(key, blocking=False)``: targets at least 5x and 10x
   faster. Informational: 1,000,000 distinct keys through the memory storage (keys kept,
   tracemalloc peak).
4. Redis ``try_acquire`` against a raw redis-py ``EVALSHA`` of a trivial script on the same
   single-connection client: target ours/peer <= 1.2, WALL-CLOCK time (network I/O). Also
   counts the round trips per decision (client side) and the EVALSHA calls (server side,
   ``INFO commandstats``): target exactly one. Skipped, with a note, when Redis
   (``UTILS_TEST_REDIS_URL`` or redis://127.0.0.1:6379/0) is not reachable.
5. ``pipeline(timeout(2), retry(), breaker)`` decorating a trivial function, success path:
   overhead over the plain call, target <= 3 us. Informational: tenacity + pybreaker stacked.

6. ``utils.core.is_transient`` on a non-HTTP exception (``ValueError``) with the HTTP
   classifier of utils-resilience installed (its ``utils.transient`` entry point) against the
   same call without it: what the classifier costs every program that never calls an HTTP
   service (informational: it includes what ``is_transient`` pays for any entry-point
   classifier, a guarded call). Target: with the HTTP classifier against a no-op classifier
   ``lambda exc: None`` in its place, ours/peer <= 1.10 (its own work is one dictionary
   look-up for a class it has seen). Informational: ``is_transient`` on a raw
   ``httpx.HTTPStatusError`` (503) against ``is_transient`` on ``ConnectionResetError``.

In-process loops are timed in CPU time (see ``_harness.py``); the Redis rows in wall time.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import os
import statistics
import sys
import time
import timeit
import traceback
import tracemalloc
import uuid
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from _harness import (
    Measure,
    Result,
    Settings,
    environment,
    installed_version,
    interleaved,
    loop,
    parse_args,
    print_table,
    summarize,
    write_json,
)

PEERS = (
    "utils-resilience",
    "tenacity",
    "backoff",
    "stamina",
    "pybreaker",
    "limits",
    "pyrate-limiter",
    "redis",
)
CALL = "f(1)"  # the statement of every in-process call benchmark
EXPECTED = 2  # what every benchmarked function returns for 1

# Rate limits: high enough that every request of the benchmark is admitted by every side.
RATE_PER_SECOND = 1_000_000_000
# Ours: a burst whose "remaining" values are all precomputed Decisions (the limiter caches
# the first 1,024), as for any ordinary limit; the informational row uses the default burst.
BURST = 1_000
REDIS_URL = os.environ.get("UTILS_TEST_REDIS_URL") or "redis://127.0.0.1:6379/0"
TRIVIAL_SCRIPT = "return 1"


def work(x: int) -> int:
    """The trivial function every strategy wraps."""
    return x + 1


async def awork(x: int) -> int:
    """Its async twin: returns at once."""
    return x + 1


# --------------------------------------------------------------------------------------
# Measuring more than two sides at once


def wall_loop(stmt: str, setup: str = "", **names: Any) -> Measure:
    """Like ``_harness.loop`` but in wall-clock time: for calls that wait on the network."""
    bind = [f"{name} = _names[{name!r}]" for name in names]
    timer = timeit.Timer(
        stmt,
        setup="\n".join([*bind, setup]) or "pass",
        timer=time.perf_counter,
        globals={"_names": names},
    )
    return timer.timeit


def async_loop(event_loop: asyncio.AbstractEventLoop, fn: Callable[[int], Any]) -> Measure:
    """``await fn(1)`` n times inside one coroutine on an already running loop, CPU time.

    The clock is read inside the coroutine, around the loop only: neither the event loop's
    start-up nor ``run_until_complete``'s scheduling is measured. The garbage collector is
    off while timing, as in ``timeit``.
    """

    async def batch(n: int) -> float:
        clock = time.process_time
        started = clock()
        for _ in itertools.repeat(None, n):
            await fn(1)
        return clock() - started

    def measure(n: int) -> float:
        enabled = gc.isenabled()
        gc.disable()
        try:
            return event_loop.run_until_complete(batch(n))
        finally:
            if enabled:
                gc.enable()

    return measure


def overhead_result(
    name: str,
    rounds: dict[str, list[float]],
    loops: dict[str, int],
    *,
    ours: tuple[str, str],
    peer: tuple[str, str],
    base: str = "plain",
    max_ratio: float | None = None,
    target: str = "info",
) -> Result:
    """Ours' and the peer's overhead (decorated - plain, per round) and their ratio."""
    (ours_key, ours_label), (peer_key, peer_label) = ours, peer
    pairs = [
        (o - b, max(p - b, 1e-9))
        for o, p, b in zip(rounds[ours_key], rounds[peer_key], rounds[base], strict=True)
    ]
    return summarize(
        name,
        ours=ours_label,
        peer=peer_label,
        rounds_us=pairs,
        max_ratio=max_ratio,
        target=target,
        loops=(loops[ours_key], loops[peer_key]),
    )


def pair_result(
    name: str,
    rounds: dict[str, list[float]],
    loops: dict[str, int],
    *,
    ours: tuple[str, str],
    peer: tuple[str, str],
    max_ratio: float | None = None,
    target: str = "info",
) -> Result:
    """Ours' and the peer's total time per call (from an interleaved group)."""
    (ours_key, ours_label), (peer_key, peer_label) = ours, peer
    return summarize(
        name,
        ours=ours_label,
        peer=peer_label,
        rounds_us=list(zip(rounds[ours_key], rounds[peer_key], strict=True)),
        max_ratio=max_ratio,
        target=target,
        loops=(loops[ours_key], loops[peer_key]),
    )


@dataclass
class AbsoluteResult(Result):
    """A row whose target is an absolute figure for ours (µs), the ratio being information."""

    max_ours_us: float | None = None

    @property
    def status(self) -> str:
        if self.max_ours_us is None:
            return "info"
        return "PASS" if self.ours_us <= self.max_ours_us else "MISS"

    def as_json(self) -> dict[str, Any]:
        document = super().as_json()
        document["max_ours_us"] = self.max_ours_us
        document["max_ratio_ours_over_peer"] = None
        document["status"] = self.status
        return document


def absolute(result: Result, max_ours_us: float, target: str) -> AbsoluteResult:
    values = {f.name: getattr(result, f.name) for f in fields(Result)}
    values.update(max_ratio=None, target=target)
    return AbsoluteResult(**values, max_ours_us=max_ours_us)


def medians(rounds: dict[str, list[float]]) -> dict[str, float]:
    """Median µs per call of each side (for the "totals" lines and the JSON)."""
    return {name: statistics.median(values) for name, values in rounds.items()}


def fmt(value: float) -> str:
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


# --------------------------------------------------------------------------------------
# Checks: every side must really do the job it is timed for (untimed, once).


class Problems(list[str]):
    """What the checks found wrong; ``checked`` counts the checks made."""

    checked = 0

    def expect(self, condition: bool, message: str) -> None:
        self.checked += 1
        if not condition:
            self.append(message)


def counting(fn: Callable[[int], Any]) -> tuple[Callable[[int], Any], list[int]]:
    """``fn`` plus a list that grows by one per call (for the checks, never timed)."""
    calls: list[int] = []
    if asyncio.iscoroutinefunction(fn):

        async def counted_async(x: int) -> Any:
            calls.append(x)
            return await fn(x)

        return counted_async, calls

    def counted(x: int) -> Any:
        calls.append(x)
        return fn(x)

    return counted, calls


def flaky(fn: Callable[[int], Any]) -> tuple[Callable[[int], Any], list[int]]:
    """``fn`` failing its first call with a (transient) ConnectionError."""
    calls: list[int] = []
    if asyncio.iscoroutinefunction(fn):

        async def flaky_async(x: int) -> Any:
            calls.append(x)
            if len(calls) == 1:
                raise ConnectionResetError("first call fails")
            return await fn(x)

        return flaky_async, calls

    def flaky_sync(x: int) -> Any:
        calls.append(x)
        if len(calls) == 1:
            raise ConnectionResetError("first call fails")
        return fn(x)

    return flaky_sync, calls


# --------------------------------------------------------------------------------------
# 1. retry


def retry_decorators(
    *, instant: bool = False
) -> dict[str, Callable[[Callable[..., Any]], Callable[..., Any]]]:
    """Ours and the peers' retry decorators, configured as the issue states.

    ``instant=True`` gives the same decorators with the waits made zero, for the check that
    each side really retries a failed call (never timed).
    """
    import backoff
    import stamina
    import tenacity

    from utils.resilience import retry

    def tenacity_retry(fn: Callable[..., Any]) -> Callable[..., Any]:
        decorated = tenacity.retry(
            stop=tenacity.stop_after_attempt(3), wait=tenacity.wait_exponential()
        )(fn)
        return decorated.retry_with(wait=tenacity.wait_none()) if instant else decorated

    if instant:  # expo(factor=0): every wait is 0
        backoff_retry = backoff.on_exception(backoff.expo, Exception, max_tries=3, factor=0)
    else:
        backoff_retry = backoff.on_exception(backoff.expo, Exception, max_tries=3)
    return {
        "ours": retry(),
        "tenacity": tenacity_retry,
        "backoff": backoff_retry,
        "stamina": stamina.retry(on=Exception, attempts=3),
    }


def check_retry(event_loop: asyncio.AbstractEventLoop) -> Problems:
    """Every decorator returns the value, calls the function once, and retries a failure."""
    import stamina

    from utils.resilience.testing import instant_retries

    problems = Problems()
    for kind, fn in (("sync", work), ("async", awork)):
        for side, decorate in retry_decorators().items():
            counted, calls = counting(fn)
            result = decorate(counted)(1)
            if kind == "async":
                result = event_loop.run_until_complete(result)
            problems.expect(result == EXPECTED, f"retry {kind} {side}: returned {result!r}")
            problems.expect(len(calls) == 1, f"retry {kind} {side}: {len(calls)} calls, not 1")
        # No waits (each library's own way), and stamina's retry log line silenced.
        stamina.instrumentation.set_on_retry_hooks([])
        with instant_retries(), stamina.set_testing(True, attempts=3, cap=True):
            for side, decorate in retry_decorators(instant=True).items():
                failing, calls = flaky(fn)
                try:
                    result = decorate(failing)(1)
                    if kind == "async":
                        result = event_loop.run_until_complete(result)
                except Exception as exc:
                    result = exc
                problems.expect(
                    result == EXPECTED and len(calls) == 2,
                    f"retry {kind} {side}: a call failing once gave {result!r} after "
                    f"{len(calls)} calls (expected {EXPECTED} after 2)",
                )
        stamina.instrumentation.set_on_retry_hooks(None)  # back to the default hooks
    return problems


def bench_retry(
    settings: Settings, event_loop: asyncio.AbstractEventLoop
) -> tuple[list[Result], dict[str, Any]]:
    problems = check_retry(event_loop)
    results: list[Result] = []
    totals: dict[str, Any] = {}
    labels = {
        "ours": "utils.resilience @retry() (attempts=3, backoff, jitter, is_transient)",
        "tenacity": "tenacity @retry(stop=stop_after_attempt(3), wait=wait_exponential())",
        "backoff": "backoff @on_exception(expo, Exception, max_tries=3)",
        "stamina": "stamina @retry(on=Exception, attempts=3)",
    }
    for kind, fn in (("sync", work), ("async", awork)):
        decorated = {side: decorate(fn) for side, decorate in retry_decorators().items()}
        measures: dict[str, Measure]
        if kind == "sync":
            measures = {"plain": loop(CALL, f=fn)}
            measures.update({side: loop(CALL, f=f) for side, f in decorated.items()})
        else:
            measures = {"plain": async_loop(event_loop, fn)}
            measures.update({side: async_loop(event_loop, f) for side, f in decorated.items()})
        rounds, loops = interleaved(measures, settings)
        totals[kind] = medians(rounds)
        ours = ("ours", f"{labels['ours']}, overhead over the plain {kind} call")
        for peer, max_ratio, target in (
            ("tenacity", 1 / 20, "<= 0.05 (20x smaller)"),
            ("backoff", 1 / 3, "<= 0.33 (3x smaller)"),
            ("stamina", None, "info"),
        ):
            results.append(
                overhead_result(
                    f"1. retry {kind} overhead vs {peer}",
                    rounds,
                    loops,
                    ours=ours,
                    peer=(peer, f"{labels[peer]}, overhead"),
                    max_ratio=max_ratio,
                    target=target,
                )
            )
    return results, {"totals_us": totals, "checks": problems.checked, "problems": list(problems)}


# --------------------------------------------------------------------------------------
# 2. circuit breaker


def bench_breaker(settings: Settings) -> tuple[list[Result], dict[str, Any]]:
    import pybreaker

    from utils.resilience import CircuitBreaker

    ours = CircuitBreaker("bench")
    ours_decorated = ours(work)
    peer = pybreaker.CircuitBreaker()
    peer_decorated = peer(work)

    problems = Problems()
    for side, call in (
        ("ours .call", lambda: ours.call(work, 1)),
        ("ours @breaker", lambda: ours_decorated(1)),
        ("pybreaker .call", lambda: peer.call(work, 1)),
        ("pybreaker @breaker", lambda: peer_decorated(1)),
    ):
        problems.expect(call() == EXPECTED, f"breaker {side}: wrong result")
    counted, calls = counting(work)
    ours.call(counted, 1)
    peer.call(counted, 1)
    problems.expect(len(calls) == 2, f"breaker: the function ran {len(calls)} times, not 2")
    problems.expect(ours.state == "closed", f"ours: state {ours.state}")
    problems.expect(peer.current_state == "closed", f"pybreaker: state {peer.current_state}")

    measures = {
        "ours.call": loop("call(f, 1)", call=ours.call, f=work),
        "ours@": loop(CALL, f=ours_decorated),
        "pybreaker.call": loop("call(f, 1)", call=peer.call, f=work),
        "pybreaker@": loop(CALL, f=peer_decorated),
        "plain": loop(CALL, f=work),
    }
    rounds, loops = interleaved(measures, settings)
    problems.expect(ours.state == "closed", f"ours: state {ours.state} after the benchmark")
    problems.expect(peer.current_state == "closed", "pybreaker: not closed after the benchmark")
    pybreaker_call = ("pybreaker.call", "pybreaker.CircuitBreaker().call(f, 1)")
    results = [
        pair_result(
            "2. closed breaker.call(f) vs pybreaker",
            rounds,
            loops,
            ours=("ours.call", 'CircuitBreaker("bench").call(f, 1), closed'),
            peer=pybreaker_call,
            max_ratio=0.5,
            target="<= 0.50",
        ),
        pair_result(
            "2. closed @breaker vs pybreaker.call",
            rounds,
            loops,
            ours=("ours@", '@CircuitBreaker("bench") decorated f(1), closed'),
            peer=pybreaker_call,
            max_ratio=0.5,
            target="<= 0.50",
        ),
        pair_result(
            "2. closed @breaker vs pybreaker @breaker",
            rounds,
            loops,
            ours=("ours@", '@CircuitBreaker("bench") decorated f(1)'),
            peer=("pybreaker@", "@pybreaker.CircuitBreaker() decorated f(1)"),
        ),
    ]
    return results, {
        "totals_us": medians(rounds),
        "checks": problems.checked,
        "problems": list(problems),
    }


# --------------------------------------------------------------------------------------
# 3. in-memory rate limiting


def rate_limiter_classes() -> tuple[Any, Any]:
    """``RateLimiter`` and ``RedisRateLimitStorage``, wherever this version exports them."""
    try:
        from utils.resilience import RateLimiter, RedisRateLimitStorage
    except ImportError:  # before the package exported them
        from utils.resilience.ratelimit import RateLimiter, RedisRateLimitStorage
    return RateLimiter, RedisRateLimitStorage


def bench_ratelimit(settings: Settings) -> tuple[list[Result], dict[str, Any]]:
    import limits
    import limits.storage
    import limits.strategies
    import pyrate_limiter

    rate_limiter, _ = rate_limiter_classes()
    ours = rate_limiter(RATE_PER_SECOND, per=1.0, burst=BURST)
    ours_default_burst = rate_limiter(RATE_PER_SECOND, per=1.0)
    window = limits.strategies.FixedWindowRateLimiter(limits.storage.MemoryStorage())
    item = limits.parse(f"{RATE_PER_SECOND}/second")
    pyrate = pyrate_limiter.Limiter(
        pyrate_limiter.Rate(RATE_PER_SECOND, pyrate_limiter.Duration.SECOND)
    )

    sides: dict[str, Callable[[], bool]] = {
        "ours": lambda: ours.try_acquire("key").allowed,
        "ours-default-burst": lambda: ours_default_burst.try_acquire("key").allowed,
        "limits": lambda: window.hit(item, "key"),
        "pyrate": lambda: pyrate.try_acquire("key", blocking=False) is True,
    }
    problems = Problems()
    checks = 20_000 if settings.quick else 100_000
    for side, acquire in sides.items():
        allowed = sum(1 for _ in range(checks) if acquire())
        problems.expect(allowed == checks, f"ratelimit {side}: {allowed}/{checks} allowed")

    measures = {
        "ours": loop("acquire('key')", acquire=ours.try_acquire),
        "ours-default-burst": loop("acquire('key')", acquire=ours_default_burst.try_acquire),
        "limits": loop("hit(item, 'key')", hit=window.hit, item=item),
        "pyrate": loop("acquire('key', blocking=False)", acquire=pyrate.try_acquire),
    }
    rounds, loops = interleaved(measures, settings)
    for side, acquire in sides.items():
        problems.expect(acquire(), f"ratelimit {side}: refused after the benchmark")

    ours_label = f"RateLimiter({RATE_PER_SECOND:.0e}, per=1.0, burst={BURST}).try_acquire('key')"
    limits_label = (
        f"FixedWindowRateLimiter(MemoryStorage()).hit(parse('{RATE_PER_SECOND}/second'))"
    )
    pyrate_label = (
        f"Limiter(Rate({RATE_PER_SECOND:.0e}, Duration.SECOND)).try_acquire('key', blocking=False)"
    )
    results = [
        pair_result(
            "3. memory try_acquire vs limits",
            rounds,
            loops,
            ours=("ours", ours_label),
            peer=("limits", limits_label),
            max_ratio=1 / 5,
            target="<= 0.20 (5x faster)",
        ),
        pair_result(
            "3. memory try_acquire vs pyrate-limiter",
            rounds,
            loops,
            ours=("ours", ours_label),
            peer=("pyrate", pyrate_label),
            max_ratio=1 / 10,
            target="<= 0.10 (10x faster)",
        ),
        pair_result(
            "3. try_acquire, burst > 1,024 vs limits",
            rounds,
            loops,
            ours=(
                "ours-default-burst",
                f"RateLimiter({RATE_PER_SECOND:.0e}) (default burst: Decision not cached)",
            ),
            peer=("limits", limits_label),
        ),
    ]
    close = getattr(pyrate, "close", None)  # stops its leak thread (pyrate-limiter >= 3.8)
    if close is not None:
        close()
    return results, {
        "totals_us": medians(rounds),
        "checks": problems.checked,
        "problems": list(problems),
    }


def memory_check(n_keys: int) -> dict[str, Any]:
    """``n_keys`` distinct keys through the memory storage: keys kept, tracemalloc peak.

    The limit (10 per minute, burst 10) keeps every key's TAT 6 s ahead of now, so no key
    expires during the check: what bounds the table is the storage's ``max_keys``.
    """
    rate_limiter, _ = rate_limiter_classes()
    report: dict[str, Any] = {"keys": n_keys}
    limiter = rate_limiter(10, per=60.0)
    storage = limiter.storage
    acquire = limiter.try_acquire
    gc.collect()
    tracemalloc.start()
    started = time.perf_counter()
    allowed = 0
    for i in range(n_keys):
        allowed += acquire(f"user:{i}").allowed
    elapsed = time.perf_counter() - started
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    report["ours"] = {
        "allowed": allowed,
        "kept": len(storage),
        "max_keys": getattr(storage, "max_keys", None),
        "peak_mib": peak / 2**20,
        "current_mib": current / 2**20,
        "seconds_under_tracemalloc": elapsed,
    }
    del limiter, storage, acquire
    gc.collect()
    return report


# --------------------------------------------------------------------------------------
# 4. Redis


class RoundTrips:
    """Counts what one redis-py connection sends and reads (installed on the instance)."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.sends = 0
        self.reads = 0

    def __enter__(self) -> RoundTrips:
        connection = self.connection
        send, read = connection.send_packed_command, connection.read_response

        def counted_send(*args: Any, **kwargs: Any) -> Any:
            self.sends += 1
            return send(*args, **kwargs)

        def counted_read(*args: Any, **kwargs: Any) -> Any:
            self.reads += 1
            return read(*args, **kwargs)

        connection.send_packed_command = counted_send
        connection.read_response = counted_read
        return self

    def __exit__(self, *exc: object) -> None:
        del self.connection.send_packed_command
        del self.connection.read_response


def command_calls(client: Any) -> dict[str, int]:
    """Server-wide calls per command (``INFO commandstats``)."""
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): value["calls"] for name, value in stats.items()}


def server_usec_per_script(probe: Any, run: Callable[[], Any], n: int) -> float | None:
    """Server time per EVALSHA (``INFO commandstats`` usec / calls) over ``n`` runs.

    Server-wide: other clients' EVALSHAs at the same moment mix in (rarely, for 1 ms).
    """
    before = probe.info("commandstats").get("cmdstat_evalsha", {})
    for _ in range(n):
        run()
    after = probe.info("commandstats").get("cmdstat_evalsha", {})
    calls = after.get("calls", 0) - before.get("calls", 0)
    if calls <= 0:
        return None
    return float((after.get("usec", 0) - before.get("usec", 0)) / calls)


def bench_redis(settings: Settings) -> tuple[list[Result], dict[str, Any]]:
    import redis

    try:
        probe = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
        server = probe.info("server")
    except redis.RedisError as exc:
        return [], {"skipped": f"Redis at {REDIS_URL} is not reachable: {exc}"}

    from utils.resilience._ratelimit_redis import GCRA_SHA

    rate_limiter, redis_storage = rate_limiter_classes()
    client = redis.Redis.from_url(REDIS_URL, single_connection_client=True)
    name = f"bench-{uuid.uuid4().hex[:8]}"
    storage = redis_storage(client, fail_open=False, prefix="utils:bench:rl")
    limiter = rate_limiter(RATE_PER_SECOND, per=1.0, burst=BURST, storage=storage, name=name)
    trivial_sha = client.script_load(TRIVIAL_SCRIPT)
    redis_key = storage.redis_key(f"{name}:key")
    interval = 1.0 / RATE_PER_SECOND
    tolerance = interval * (BURST - 1)
    # The peer sends the same key and arguments as the limiter does, to a script that only
    # returns: what is left is the cost of one EVALSHA round trip on this client.
    args = (1, redis_key, interval, tolerance, 1)

    problems = Problems()
    checks = 200 if settings.quick else 1_000
    allowed = sum(1 for _ in range(checks) if limiter.try_acquire("key").allowed)
    problems.expect(allowed == checks, f"redis: {allowed}/{checks} allowed")
    problems.expect(client.evalsha(trivial_sha, *args) == 1, "redis: trivial script != 1")
    # The script's reply: an allowed decision is [1, backlog] (first version) or an integer
    # backlog >= 0 in nanoseconds (current version).
    reply = client.evalsha(GCRA_SHA, *args)
    allowed = reply[0] == 1 if isinstance(reply, list) else reply >= 0
    problems.expect(allowed, f"redis: the raw GCRA script refused: {reply!r}")

    # One round trip per decision: counted on the client (every packet sent and every reply
    # read on the limiter's connection) and on the server (INFO commandstats, server-wide:
    # other clients of the same server inflate it).
    decisions = 200 if settings.quick else 1_000
    before = command_calls(probe)
    with RoundTrips(client.connection) as trips:
        for _ in range(decisions):
            limiter.try_acquire("key")
    after = command_calls(probe)
    delta = {cmd: after.get(cmd, 0) - before.get(cmd, 0) for cmd in after}
    scripts = delta.get("evalsha", 0) + delta.get("eval", 0)
    round_trips = {
        "decisions": decisions,
        "client_sends_per_decision": trips.sends / decisions,
        "client_replies_per_decision": trips.reads / decisions,
        "server_scripts_per_decision": scripts / decisions,
        "server_commands_delta": {k: v for k, v in sorted(delta.items()) if v},
        "status": "PASS" if trips.sends == trips.reads == decisions else "MISS",
    }
    problems.expect(
        round_trips["status"] == "PASS",
        f"redis: {trips.sends} sends / {trips.reads} replies for {decisions} decisions",
    )

    measures = {
        "ours": wall_loop("acquire('key')", acquire=limiter.try_acquire),
        "trivial": wall_loop(
            "evalsha(sha, *args)", evalsha=client.evalsha, sha=trivial_sha, args=args
        ),
        "gcra": wall_loop("evalsha(sha, *args)", evalsha=client.evalsha, sha=GCRA_SHA, args=args),
        # The same two in CPU time: the client-side cost of a decision, without the network
        # wait and the server's work (loopback syscalls included).
        "ours-cpu": loop("acquire('key')", acquire=limiter.try_acquire),
        "gcra-cpu": loop("evalsha(sha, *args)", evalsha=client.evalsha, sha=GCRA_SHA, args=args),
    }
    rounds, loops = interleaved(measures, settings)
    # Where a script's time goes on the server (informational).
    samples = 200 if settings.quick else 2_000
    server_usec = {
        "ours": server_usec_per_script(probe, lambda: limiter.try_acquire("key"), samples),
        "trivial": server_usec_per_script(
            probe, lambda: client.evalsha(trivial_sha, *args), samples
        ),
    }
    client.delete(redis_key)
    client.close()
    probe.close()
    trivial_label = f"client.evalsha(sha of {TRIVIAL_SCRIPT!r}, 1, key, T, tau, 1), same client"
    results = [
        pair_result(
            "4. redis try_acquire vs raw EVALSHA",
            rounds,
            loops,
            ours=("ours", "RateLimiter(storage=RedisRateLimitStorage(client)).try_acquire"),
            peer=("trivial", trivial_label),
            max_ratio=1.2,
            target="<= 1.20",
        ),
        pair_result(
            "4. raw EVALSHA of GCRA vs trivial",
            rounds,
            loops,
            ours=("gcra", "client.evalsha(GCRA_SHA, ...): the limiter's script, no limiter"),
            peer=("trivial", trivial_label),
        ),
        pair_result(
            "4. redis try_acquire vs raw EVALSHA of GCRA",
            rounds,
            loops,
            ours=("ours", "RateLimiter(...).try_acquire"),
            peer=("gcra", "client.evalsha(GCRA_SHA, ...)"),
        ),
        pair_result(
            "4. same, CPU time (client side only)",
            rounds,
            loops,
            ours=("ours-cpu", "RateLimiter(...).try_acquire, CPU time of this process"),
            peer=("gcra-cpu", "client.evalsha(GCRA_SHA, ...), CPU time of this process"),
        ),
    ]
    extra = {
        "url": REDIS_URL,
        "server_version": server.get("redis_version"),
        "totals_us": medians(rounds),
        "round_trips": round_trips,
        "server_usec_per_evalsha": server_usec,
        "checks": problems.checked,
        "problems": list(problems),
    }
    return results, extra


# --------------------------------------------------------------------------------------
# 5. pipeline


def bench_pipeline(settings: Settings) -> tuple[list[Result], dict[str, Any]]:
    import pybreaker
    import tenacity

    from utils.resilience import CircuitBreaker, pipeline, retry, timeout

    breaker = CircuitBreaker("bench.pipeline")
    guarded = pipeline(timeout(2), retry(), breaker)
    ours = guarded(work)
    peer = tenacity.retry(stop=tenacity.stop_after_attempt(3), wait=tenacity.wait_exponential())(
        pybreaker.CircuitBreaker()(work)
    )

    problems = Problems()
    problems.expect(ours(1) == EXPECTED, "pipeline: ours returned a wrong value")
    problems.expect(guarded.call(work, 1) == EXPECTED, "pipeline.call: wrong value")
    problems.expect(peer(1) == EXPECTED, "pipeline: tenacity + pybreaker returned a wrong value")
    counted, calls = counting(work)
    guarded(counted)(1)
    problems.expect(len(calls) == 1, f"pipeline: the function ran {len(calls)} times, not 1")

    measures = {
        "plain": loop(CALL, f=work),
        "ours": loop(CALL, f=ours),
        "ours.call": loop("call(f, 1)", call=guarded.call, f=work),
        "peer": loop(CALL, f=peer),
        # Each stage alone (informational: where the pipeline's overhead goes).
        "timeout": loop(CALL, f=timeout(2)(work)),
        "retry": loop(CALL, f=retry()(work)),
        "breaker": loop(CALL, f=CircuitBreaker("bench.pipeline.alone")(work)),
    }
    rounds, loops = interleaved(measures, settings)
    peer_label = "tenacity @retry(stop_after_attempt(3), wait_exponential()) over @pybreaker"
    decorated = overhead_result(
        "5. pipeline(timeout, retry, breaker) overhead",
        rounds,
        loops,
        ours=("ours", "@pipeline(timeout(2), retry(), CircuitBreaker(...)) f(1), overhead"),
        peer=("peer", f"{peer_label}, overhead (no timeout)"),
    )
    via_call = overhead_result(
        "5. pipeline(...).call(f) overhead",
        rounds,
        loops,
        ours=("ours.call", "pipeline(timeout(2), retry(), breaker).call(f, 1), overhead"),
        peer=("peer", f"{peer_label}, overhead"),
    )
    results: list[Result] = [absolute(decorated, 3.0, "<= 3 µs (ours)"), via_call]
    return results, {
        "totals_us": medians(rounds),
        "checks": problems.checked,
        "problems": list(problems),
    }


# --------------------------------------------------------------------------------------
# 6. the HTTP transient classifier


def bench_transient(settings: Settings) -> tuple[list[Result], dict[str, Any]]:
    import httpx

    from utils.core import is_transient
    from utils.core import transient as core_transient
    from utils.resilience.http import classify_http_error

    # The classifiers is_transient loaded from the installed entry points (utils-aws and
    # utils-db add theirs when installed): swapped per measurement, with and without ours.
    loaded = list(core_transient._entry_point_classifiers())
    with_http = loaded if classify_http_error in loaded else [*loaded, classify_http_error]
    without_http = [c for c in loaded if c is not classify_http_error]

    def no_opinion(exc: BaseException) -> bool | None:
        return None

    with_noop = [no_opinion if c is classify_http_error else c for c in with_http]
    error = ValueError("not an HTTP error")
    request = httpx.Request("GET", "https://api.example/prices")
    http_error = httpx.HTTPStatusError(
        "503", request=request, response=httpx.Response(503, request=request)
    )

    def using(classifiers: list[Any], measure: Measure) -> Measure:
        def run(n: int) -> float:
            core_transient._from_entry_points = classifiers
            return measure(n)

        return run

    problems = Problems()
    try:
        problems.expect(classify_http_error in loaded, "the http entry point is not installed")
        for label, classifiers in (
            ("with", with_http),
            ("without", without_http),
            ("no-op", with_noop),
        ):
            core_transient._from_entry_points = classifiers
            problems.expect(not is_transient(error), f"{label}: ValueError called transient")
        core_transient._from_entry_points = with_http
        problems.expect(is_transient(http_error), "with: an httpx 503 is not transient")
        problems.expect(is_transient(ConnectionResetError()), "ConnectionResetError not transient")

        call = "t(e)"
        measures = {
            "with": using(with_http, loop(call, t=is_transient, e=error)),
            "without": using(without_http, loop(call, t=is_transient, e=error)),
            "no-op": using(with_noop, loop(call, t=is_transient, e=error)),
            "httpx 503": using(with_http, loop(call, t=is_transient, e=http_error)),
            "reset": using(with_http, loop(call, t=is_transient, e=ConnectionResetError())),
        }
        rounds, loops = interleaved(measures, settings)
    finally:
        core_transient._from_entry_points = loaded
    others = len(without_http)
    ours_label = f"is_transient(ValueError()) with the http classifier + {others} other(s)"
    results = [
        pair_result(
            "6. is_transient(ValueError), HTTP classifier vs no-op",
            rounds,
            loops,
            ours=("with", ours_label),
            peer=("no-op", "the same with `lambda exc: None` in the http classifier's place"),
            max_ratio=1.10,
            target="<= 1.10",
        ),
        pair_result(
            "6. is_transient(ValueError), HTTP classifier on vs off",
            rounds,
            loops,
            ours=("with", ours_label),
            peer=("without", f"the same with the {others} other entry-point classifier(s) only"),
        ),
        pair_result(
            "6. is_transient(raw httpx 503) vs (ConnectionResetError)",
            rounds,
            loops,
            ours=("httpx 503", "is_transient(httpx.HTTPStatusError, status 503)"),
            peer=("reset", "is_transient(ConnectionResetError()): the stdlib rule, last"),
        ),
    ]
    return results, {
        "totals_us": medians(rounds),
        "checks": problems.checked,
        "problems": list(problems),
    }


# --------------------------------------------------------------------------------------


def section(
    name: str, run: Callable[[], tuple[list[Result], dict[str, Any]]], errors: dict[str, str]
) -> tuple[list[Result], dict[str, Any]]:
    """Run one section; a failure is reported and the other sections still run."""
    try:
        return run()
    except Exception:
        errors[name] = traceback.format_exc()
        print(f"ERROR in {name} (reported, not gating):\n{errors[name]}", file=sys.stderr)
        return [], {}


def main() -> int:
    settings = parse_args(__doc__.splitlines()[0], rounds=(25, 3))
    errors: dict[str, str] = {}
    extra: dict[str, Any] = {}
    cpu_results: list[Result] = []
    wall_results: list[Result] = []

    event_loop = asyncio.new_event_loop()
    try:
        for name, run in (
            ("retry", lambda: bench_retry(settings, event_loop)),
            ("breaker", lambda: bench_breaker(settings)),
            ("ratelimit", lambda: bench_ratelimit(settings)),
            ("pipeline", lambda: bench_pipeline(settings)),
            ("transient", lambda: bench_transient(settings)),
        ):
            results, extra[name] = section(name, run, errors)
            cpu_results.extend(results)
    finally:
        event_loop.close()
    wall_results, extra["redis"] = section("redis", lambda: bench_redis(settings), errors)
    keys = 200_000 if settings.quick else 1_000_000
    _, extra["memory"] = section(
        "memory",
        lambda: ([], memory_check(keys)),
        errors,
    )

    versions = {dist: installed_version(dist) for dist in PEERS}
    env = environment({"peer_versions": versions, "redis_url": REDIS_URL})
    title = f"bench_resilience  Python {env['python']}, {env['cpus']} CPUs, " + ", ".join(
        f"{dist} {version}" for dist, version in versions.items()
    )
    print_table(title, cpu_results, settings)
    for name in ("retry", "breaker", "ratelimit", "pipeline", "transient"):
        report_totals(name, extra.get(name, {}))
    report_redis(extra.get("redis", {}), wall_results, settings)
    report_memory(extra.get("memory", {}))
    problems = [p for part in extra.values() for p in part.get("problems", [])]
    for problem in problems:
        print(f"WARNING: {problem}", file=sys.stderr)
    checked = sum(part.get("checks", 0) for part in extra.values())
    print(f"\nchecks before timing: {checked} made, {len(problems)} problem(s)")
    if settings.verbose:
        print(f"environment: {env}")
    if errors:
        print(f"\nsections that failed (see stderr): {', '.join(errors)}")
    if settings.json_path:
        write_json(
            settings.json_path,
            "resilience",
            cpu_results + wall_results,
            env,
            details=extra,
            errors=errors,
        )
    return 0  # reports, never gates


def report_totals(name: str, part: dict[str, Any]) -> None:
    """The absolute per-call figures behind the overhead rows (medians, µs)."""
    totals = part.get("totals_us")
    if not totals:
        return
    groups = totals if isinstance(next(iter(totals.values())), dict) else {"": totals}
    for kind, figures in groups.items():
        label = f"{name} {kind}".strip()
        text = ", ".join(f"{side} {fmt(us)}" for side, us in figures.items())
        print(f"  per call ({label}), median µs: {text}")


def report_redis(part: dict[str, Any], results: list[Result], settings: Settings) -> None:
    if "skipped" in part:
        print(f"\nRedis: skipped ({part['skipped']})")
        return
    if not results:
        return
    print_table(
        f"bench_resilience  Redis {part.get('server_version')} at {part.get('url')}, "
        "one connection (single_connection_client=True)",
        results,
        settings,
        method=(
            f"median of {settings.rounds} interleaved rounds, min of {settings.repeat} per side "
            "per round, WALL-CLOCK time per call (network I/O) except the CPU time row"
        ),
    )
    trips = part["round_trips"]
    print(
        f"  round trips per decision ({trips['decisions']} decisions): client sent "
        f"{trips['client_sends_per_decision']:.2f} packets and read "
        f"{trips['client_replies_per_decision']:.2f} replies per decision; server ran "
        f"{trips['server_scripts_per_decision']:.2f} EVALSHA/EVAL per decision "
        f"(server-wide INFO commandstats: {trips['server_commands_delta']}); "
        f"target exactly 1: {trips['status']}"
    )
    usec = part.get("server_usec_per_evalsha") or {}
    if all(usec.values()):
        print(
            "  server time per EVALSHA (INFO commandstats usec/calls): GCRA script "
            f"{usec['ours']:.1f} µs, trivial script {usec['trivial']:.1f} µs"
        )
    report_totals("redis", part)


def report_memory(part: dict[str, Any]) -> None:
    if not part:
        return
    print(f"\nMemory (informational): {part['keys']:,} distinct keys, limit 10/minute")
    for side, figures in part.items():
        if not isinstance(figures, dict):
            continue
        bound = f" (max_keys {figures['max_keys']:,})" if figures.get("max_keys") else ""
        print(
            f"  {side}: {figures['allowed']:,} allowed, {figures['kept']:,} keys kept{bound}, "
            f"tracemalloc peak {figures['peak_mib']:.1f} MiB, still held "
            f"{figures['current_mib']:.1f} MiB, {figures['seconds_under_tracemalloc']:.1f} s"
        )


if __name__ == "__main__":
    sys.exit(main())
