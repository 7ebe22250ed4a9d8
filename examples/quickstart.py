"""The utils quickstart: what a new user should see first.

Run it with `nox -s demo` (or `python examples/quickstart.py` where utils-core[cli] is
installed). It needs no server: every setting has an embedded default, and you can override
any of them from the environment, e.g. `DEMO_WORKERS=8 nox -s demo`.
"""

from __future__ import annotations

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


class DemoSettings(Settings, env_prefix="DEMO_"):
    """Typed settings: every field reads DEMO_<NAME> from the environment."""

    service: str = "quickstart"
    workers: int = 4
    request_budget: timedelta = timedelta(milliseconds=250)
    database_url: Secret = Secret("postgresql://app:hunter2@localhost:5432/app")


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

    section("utils doctor: every installed health check")
    sys.stdout.flush()
    try:
        utils_cli(["doctor"])
    except SystemExit as exit_status:
        if exit_status.code:
            raise


if __name__ == "__main__":
    main()
