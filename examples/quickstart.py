"""The utils quickstart: what a new user should see first.

Run it with `nox -s demo` (or `python examples/quickstart.py` where utils-core[cli] and
utils-resilience are installed). It needs no server: every setting has an embedded default,
and you can override any of them from the environment, e.g. `DEMO_WORKERS=8 nox -s demo`.
"""

from __future__ import annotations

import contextlib
import sys
from datetime import timedelta

from utils.core import (
    InMemorySink,
    OperationTimeoutError,
    Secret,
    Settings,
    bind_context,
    check_deadline,
    configure_logging,
    deadline,
    get_logger,
    remaining,
    set_metrics_sink,
    timed,
)
from utils.core.cli import main as utils_cli
from utils.resilience import CircuitBreaker, CircuitOpenError, RateLimiter, retry


class DemoSettings(Settings, env_prefix="DEMO_"):
    """Typed settings: every field reads DEMO_<NAME> from the environment."""

    service: str = "quickstart"
    workers: int = 4
    request_budget: timedelta = timedelta(milliseconds=250)
    database_url: Secret = Secret("postgresql://app:hunter2@localhost:5432/app")


RESILIENCE_METRICS = ("retry.attempt_failed", "breaker.opened", "ratelimit.rejected")


def section(title: str) -> None:
    print(f"\n== {title} ==", flush=True)


def main() -> None:
    # 1. Logging: JSON lines on stdout, secrets redacted (on by default).
    configure_logging(level="INFO", format="json", stream=sys.stdout)
    log = get_logger("demo")

    section("settings from the environment (DEMO_*), secrets masked")
    settings = DemoSettings.from_env()
    print(settings)

    section("structured JSON logging with redaction")
    with bind_context(request_id="req-42"):
        log.info(
            "demo.started",
            service=settings.service,
            workers=settings.workers,
            database_url=settings.database_url,  # a Secret: always ***
            dsn="postgresql://app:hunter2@db:5432/app",  # credentials in a plain string too
            api_key="sk-live-123",  # sensitive key name
        )

    section("a deadline shared by everything inside the block")
    sink = InMemorySink()
    set_metrics_sink(sink)
    with deadline(settings.request_budget):
        log.info("demo.budget", remaining_seconds=round(remaining() or 0.0, 3))
        with timed("demo.work", tags={"step": "compute"}):
            total = sum(i * i for i in range(200_000))
        log.info("demo.computed", total=total)
    try:
        with deadline(0):
            check_deadline("the next step")
    except OperationTimeoutError as exc:
        log.warning("demo.deadline_exceeded", error=str(exc), code=exc.code)

    section("a timed block, reported to the metrics sink")
    [measurement] = sink.select("demo.work")
    print(
        f"demo.work took {measurement.value * 1000:.1f} ms "
        f"(tags: {measurement.tags}) — install PrometheusSink to export it"
    )

    # 2. utils-resilience: retries, breakers and rate limits, in the same logs and metrics.
    resilience_demo(sink)

    # 3. utils-cache: the same code runs on memory, Redis or both (here: memory, no server).
    cache_demo()

    section("utils doctor: every installed health check")
    sys.stdout.flush()
    try:
        utils_cli(["doctor"])
    except SystemExit as exit_status:
        if exit_status.code:
            raise


def resilience_demo(sink: InMemorySink) -> None:
    """utils-resilience: failures are logged as JSON and counted in the same metrics sink."""
    log = get_logger("demo")
    section("utils-resilience: a flaky call, retried with backoff (failures logged)")
    outcomes = iter([ConnectionResetError("reset by peer"), TimeoutError("read timed out")])

    @retry(attempts=4, initial=0.01, maximum=0.05, name="fetch_prices")  # tiny waits: fast
    def fetch_prices() -> dict[str, float]:
        if error := next(outcomes, None):
            raise error  # transient: retried without any configuration
        return {"EUR": 1.0, "USD": 1.08}

    log.info("demo.fetched", prices=fetch_prices())  # third attempt; success logs nothing

    section("utils-resilience: a circuit breaker opens, then fails fast")
    breaker = CircuitBreaker("inventory", fail_max=3, reset_timeout=30)

    def inventory() -> int:
        raise ConnectionRefusedError("inventory service is down")

    for _ in range(3):  # the real error each time; the third failure opens the circuit
        with contextlib.suppress(ConnectionRefusedError):
            breaker.call(inventory)
    try:
        breaker.call(inventory)  # refused without calling the service
    except CircuitOpenError as exc:
        log.warning("demo.failed_fast", code=exc.code, retry_after=round(exc.retry_after or 0, 1))

    section("utils-resilience: an in-memory rate limit, 3 per second per key")
    limiter = RateLimiter(3, per=1.0, name="api")
    for key in ["user:42"] * 5 + ["user:7"]:
        decision = limiter.try_acquire(key)
        verdict = "allowed" if decision else "refused"
        print(
            f"{key:8} {verdict:7}  remaining={decision.remaining}  "
            f"retry_after={decision.retry_after:.2f}s"
        )
    counts = (f"{name}={sink.count(name)}" for name in RESILIENCE_METRICS)
    print("metrics:", ", ".join(counts))


def cache_demo() -> None:
    """utils-cache: @cached on a cache built from a URL (memory here; redis:// in production)."""
    from utils.cache import cache_from_url, cached

    section("utils-cache: @cached on cache_from_url('memory://?maxsize=1000&ttl=5m')")
    cache = cache_from_url("memory://?maxsize=1000&ttl=5m")
    computed: list[str] = []

    @cached(cache, ttl=60)
    def exchange_rate(base: str, quote: str = "EUR") -> float:
        computed.append(f"{base}/{quote}")
        return 1.08 if base == "USD" else 0.86

    # f("USD"), f("USD", "EUR") and f(base="USD") are one entry: keys bind the defaults.
    rates = [exchange_rate("USD"), exchange_rate("USD", "EUR"), exchange_rate(base="USD")]
    rates.append(exchange_rate("GBP"))
    stats = cache.stats()
    print(f"rates={rates} computed={computed} hits={stats.hits} misses={stats.misses}")
    print(f"key for exchange_rate('USD'): {exchange_rate.key_for('USD')}")


if __name__ == "__main__":
    main()
