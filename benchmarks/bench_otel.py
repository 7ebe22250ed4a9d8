"""What OpenTelemetry (utils.core.otel) costs the family's hot paths, side by side.

Run with ``nox -s bench`` or ``python benchmarks/bench_otel.py [--quick] [--json PATH]
[--verbose]`` in an environment holding the utils-core, utils-cache and utils-resilience
wheels and ``opentelemetry-sdk``. Three states of the same process, measured interleaved
(each measurement's untimed set-up switches the state, so a slow phase of the machine hits
all three):

(a) OpenTelemetry not in use: no span events, the default no-op metrics sink, no span;
(b) the SDK configured (a ``TracerProvider``, an :class:`OpenTelemetrySink` on a
    ``MeterProvider`` with a reader) and :func:`enable_span_events` on, NO active span;
(c) the same as (b), inside an active, recording span.

Rows (CPU time per call, median of interleaved rounds):

1. ``@cached(MemoryCache())`` hit ``f(1)``: (b)/(a) target <= 1.05; (c)/(a) informational.
2. ``@retry()`` call that succeeds at once: (b)/(a) target <= 1.05; (c)/(a) informational.
3. Informational, the price of a span event itself: ``Event.emit`` of ``breaker.rejected``
   (metric only, as a rejection reports it) in (b) and (c) against (a).
4. Informational: a bound ``cache.hit`` event (RedisCache reports one per hit; not a span
   event by default) with span events on against off, both without a metrics sink.
5. ``OpenTelemetrySink.increment`` against the raw SDK ``Counter.add`` it wraps (same
   counter, same attributes): target <= 1.10. The SDK's own cost dominates both.

Why (a) is not "opentelemetry never imported": it cannot be interleaved with (b) in one
process, and nothing on these paths looks at ``sys.modules``. What (a) leaves out is
exactly what utils wires: the metrics sink, the span-event hook and the active span.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable
from typing import Any

from _harness import (
    Result,
    environment,
    installed_version,
    interleaved,
    loop,
    pair_result,
    parse_args,
    print_table,
    write_json,
)

PEERS = ("utils-core", "utils-cache", "utils-resilience", "opentelemetry-api", "opentelemetry-sdk")


def work(x: int) -> int:
    """The trivial function every decorator wraps."""
    return x + 1


class States:
    """Switches the process between the (a), (b) and (c) states; used in loop set-ups."""

    def __init__(self) -> None:
        from opentelemetry import context, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider

        from utils.core.otel import OpenTelemetrySink

        self._context = context
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self.sink = OpenTelemetrySink(meter_provider=self.meter_provider)
        self.tracer_provider = TracerProvider()  # recording, no exporter: spans are kept cheap
        trace.set_tracer_provider(self.tracer_provider)
        self.span = self.tracer_provider.get_tracer("bench").start_span("request")
        self._span_context = trace.set_span_in_context(self.span)
        self._token: Any = None

    def use(self, state: str) -> None:
        from utils.core.metrics import set_metrics_sink
        from utils.core.otel import disable_span_events, enable_span_events

        if self._token is not None:
            self._context.detach(self._token)
            self._token = None
        if state == "a":
            disable_span_events()
            set_metrics_sink(None)
            return
        enable_span_events()
        set_metrics_sink(self.sink if state != "hook-only" else None)
        if state == "c":
            self._token = self._context.attach(self._span_context)

    def close(self) -> None:
        self.use("a")
        self.span.end()
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


def state_loop(states: States, state: str, stmt: str, **names: Any) -> Callable[[int], float]:
    return loop(stmt, f"_states.use({state!r})", _states=states, **names)


def check(states: States) -> list[str]:
    """Untimed: every side does the work, and (c) really records span events."""
    from opentelemetry import trace

    from utils.core.report import Event

    problems: list[str] = []
    states.use("c")
    if not trace.get_current_span().is_recording():
        problems.append("state (c) has no recording span")
    Event("breaker.rejected", logger="bench", level=None, tags=("breaker",)).emit(breaker="b")
    if not states.span.events:  # type: ignore[attr-defined]
        problems.append("state (c) did not record a span event")
    states.use("b")
    if trace.get_current_span().is_recording():
        problems.append("state (b) has an active span")
    states.use("a")
    return problems


def bench_paths(states: States, settings: Any) -> list[Result]:
    from utils.cache import MemoryCache, cached
    from utils.core.report import Event
    from utils.resilience import retry

    hit = cached(MemoryCache(maxsize=1024, ttl=60))(work)
    retried = retry()(work)
    if hit(1) != 2 or hit(1) != 2 or retried(1) != 2:
        raise RuntimeError("a benchmarked function returned the wrong value")
    rejected = Event("breaker.rejected", logger="bench", level=None, tags=("breaker",))
    cache_hit = Event("cache.hit", logger="bench", level=None, tags=("cache",)).bind(cache="c")

    measures = {}
    for state in ("a", "b", "c"):
        measures[f"hit-{state}"] = state_loop(states, state, "f(1)", f=hit)
        measures[f"retry-{state}"] = state_loop(states, state, "f(1)", f=retried)
        measures[f"emit-{state}"] = state_loop(states, state, "e(breaker='b')", e=rejected.emit)
    counter = states.meter_provider.get_meter("bench").create_counter("utils.raw.counter")
    tags = {"breaker": "b"}
    states.sink.increment("raw.counter", 1.0, tags)  # the sink's instrument, created once
    measures["sink"] = loop("i('raw.counter', 1.0, t)", i=states.sink.increment, t=tags)
    measures["raw"] = loop("a(1.0, t)", a=counter.add, t=tags)
    measures["bound-a"] = state_loop(states, "a", "h()", h=cache_hit)
    measures["bound-hook"] = state_loop(states, "hook-only", "h()", h=cache_hit)
    rounds, loops = interleaved(measures, settings)
    states.use("a")
    a_hit = ("hit-a", "(a) no OpenTelemetry")
    a_retry = ("retry-a", "(a) no OpenTelemetry")
    a_emit = ("emit-a", "(a) no OpenTelemetry")
    return [
        pair_result(
            "1. @cached hit (b)/(a)",
            rounds,
            loops,
            ("hit-b", "(b) SDK + span events, no span"),
            a_hit,
            max_ratio=1.05,
        ),
        pair_result(
            "1. @cached hit (c)/(a)",
            rounds,
            loops,
            ("hit-c", "(c) SDK + span events, in a span"),
            a_hit,
        ),
        pair_result(
            "2. retry success (b)/(a)",
            rounds,
            loops,
            ("retry-b", "(b) SDK + span events, no span"),
            a_retry,
            max_ratio=1.05,
        ),
        pair_result(
            "2. retry success (c)/(a)",
            rounds,
            loops,
            ("retry-c", "(c) SDK + span events, in a span"),
            a_retry,
        ),
        pair_result(
            "3. emit rejection (b)/(a)",
            rounds,
            loops,
            ("emit-b", "(b) OTel sink + hook, no span"),
            a_emit,
        ),
        pair_result(
            "3. emit rejection (c)/(a)",
            rounds,
            loops,
            ("emit-c", "(c) OTel sink + span event"),
            a_emit,
        ),
        pair_result(
            "4. bound cache.hit, hook on/off",
            rounds,
            loops,
            ("bound-hook", "span events on (cache.hit not traced)"),
            ("bound-a", "span events off"),
        ),
        pair_result(
            "5. OpenTelemetrySink vs raw Counter",
            rounds,
            loops,
            ("sink", "sink.increment(name, 1.0, tags)"),
            ("raw", "SDK Counter.add(1.0, tags)"),
            max_ratio=1.10,
        ),
    ]


def main() -> int:
    settings = parse_args(__doc__.splitlines()[0] if __doc__ else "bench_otel", rounds=(25, 3))
    try:
        states = States()
    except ImportError as exc:
        print(f"bench_otel: skipped, {exc} (pip install opentelemetry-sdk)")
        return 0
    errors: list[str] = []
    results: list[Result] = []
    try:
        errors += check(states)
        results = bench_paths(states, settings)
    except Exception:
        errors.append(traceback.format_exc())
    finally:
        states.close()
    versions = {dist: installed_version(dist) for dist in PEERS}
    env = environment({"peer_versions": versions})
    title = f"bench_otel  Python {env['python']}, {env['cpus']} CPUs, " + ", ".join(
        f"{dist} {version}" for dist, version in versions.items()
    )
    print_table(title, results, settings)
    for error in errors:
        print(f"\nPROBLEM: {error}", file=sys.stderr)
    if settings.json_path:
        write_json(settings.json_path, "bench_otel", results, env, problems=errors)
    return 0


if __name__ == "__main__":
    sys.exit(main())
