"""utils.core logging against raw structlog and stdlib logging, side by side.

Run with ``nox -s bench`` or ``python benchmarks/bench_logging.py [--quick] [--json PATH]
[--verbose]`` in an environment where utils-core (the wheel), structlog and orjson are
installed. Every line goes to ``os.devnull`` (a real file, written and flushed per line),
so what is measured is building and rendering the event, not a terminal.

a. one JSON event with 3 key-values: utils.core (redaction on) vs raw structlog with the
   equivalent processor chain. Target ours/peer <= 1.2.
b. the same event: utils.core vs stdlib ``logging`` with a JSON ``Formatter``.
   Target: ours at least 1.5x faster (ours/peer <= 0.67).
c. a filtered-out ``debug`` call on a logger obtained *before* ``configure_logging``:
   utils.core vs structlog's filtering bound logger. Target ours/peer <= 1.2.
   Informational: the same against stdlib ``Logger.debug``.
d. informational: library mode (``configure_logging`` never called, events handed to the
   stdlib logger of the same name) against stdlib logging writing the same text.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import os
import sys
from typing import IO, Any

import structlog
from _harness import (
    Result,
    Settings,
    compare,
    environment,
    loop,
    parse_args,
    print_table,
    write_json,
)

from utils.core import configure_logging, get_logger, reset_logging

try:
    import orjson
except ImportError:  # the peer then renders with json.dumps, like utils.core would
    orjson = None

NAME = "utils.bench"
EVENT = "user.login"
# The statement every "event" benchmark times; ``log`` is the pre-bound method.
EVENT_STMT = "log('user.login', user='ann', ip='10.0.0.1', attempt=3)"
STDLIB_STMT = "log('user.login', extra={'user': 'ann', 'ip': '10.0.0.1', 'attempt': 3})"
DEBUG_STMT = "log('cache.miss', key='user:42')"
STDLIB_DEBUG_STMT = "log('cache.miss key=%r', 'user:42')"
LIBRARY_STDLIB_STMT = "log('user.login user=%r ip=%r attempt=%r', 'ann', '10.0.0.1', 3)"


# --------------------------------------------------------------------------------------
# Peers


def _peer_serializer() -> Any:
    if orjson is None:
        return json.dumps
    dumps = orjson.dumps

    def serializer(obj: Any, **_: Any) -> str:
        return dumps(obj).decode()

    return serializer


def raw_structlog_logger(stream: IO[str], level: int = logging.INFO) -> Any:
    """Raw structlog doing what ``configure_logging(format="json")`` does, minus redaction."""
    proxy = structlog.wrap_logger(
        structlog.WriteLogger(stream),
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(serializer=_peer_serializer()),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        context_class=dict,
        cache_logger_on_first_use=True,
    )
    # bind() turns the lazy proxy into a concrete bound logger; WriteLogger has no name.
    return proxy.bind(logger=NAME)


# Attributes every LogRecord has; anything else on a record came from ``extra``.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
}


class StdlibJSONFormatter(logging.Formatter):
    """The JSON formatter a team would write for stdlib logging."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "timestamp": dt.datetime.fromtimestamp(record.created, tz=dt.timezone.utc).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        payload.update(
            {key: value for key, value in vars(record).items() if key not in _RECORD_ATTRIBUTES}
        )
        return json.dumps(payload)


def stdlib_logger(
    name: str, stream: IO[str], formatter: logging.Formatter | None = None
) -> logging.Logger:
    """A stdlib logger at INFO with one StreamHandler of its own (no propagation)."""
    logger = logging.getLogger(name)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    handler = logging.StreamHandler(stream)
    if formatter is not None:
        handler.setFormatter(formatter)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger


# --------------------------------------------------------------------------------------
# Sanity: every side must really produce the line it claims to (checked once, untimed).


def sample_lines() -> dict[str, str]:
    """Render the benchmark event once per side into memory and return the lines."""
    samples = {}
    out = io.StringIO()
    configure_logging(level="INFO", format="json", stream=out)
    get_logger(NAME).info(EVENT, user="ann", ip="10.0.0.1", attempt=3)
    get_logger(NAME).debug("cache.miss", key="user:42")  # filtered: must print nothing
    samples["utils.core (configured, json)"] = out.getvalue()
    reset_logging()

    out = io.StringIO()
    raw = raw_structlog_logger(out)
    raw.info(EVENT, user="ann", ip="10.0.0.1", attempt=3)
    raw.debug("cache.miss", key="user:42")
    samples["raw structlog"] = out.getvalue()

    out = io.StringIO()
    std = stdlib_logger("bench.sample.stdlib_json", out, StdlibJSONFormatter())
    std.info(EVENT, extra={"user": "ann", "ip": "10.0.0.1", "attempt": 3})
    samples["stdlib logging + JSON formatter"] = out.getvalue()
    std.handlers.clear()

    out = io.StringIO()
    library = get_logger("bench.sample.library")  # library mode: reset_logging() above
    stdlib_logger("bench.sample.library", out)
    library.info(EVENT, user="ann", ip="10.0.0.1", attempt=3)
    library.debug("cache.miss", key="user:42")
    samples["utils.core (library mode)"] = out.getvalue()
    logging.getLogger("bench.sample.library").handlers.clear()
    return samples


def check_samples(samples: dict[str, str]) -> list[str]:
    """Problems with the rendered lines (empty when every side did the same job)."""
    problems = []
    for side, text in samples.items():
        lines = text.splitlines()
        if len(lines) != 1:
            problems.append(f"{side}: expected 1 line (the debug call is filtered), got {lines}")
    keys = {"user", "ip", "attempt", "level", "logger", "timestamp"}
    for side in ("utils.core (configured, json)", "raw structlog"):
        record = json.loads(samples[side].splitlines()[0])
        if not keys | {"event"} <= set(record):
            problems.append(f"{side}: missing keys {keys | {'event'} - set(record)}")
    record = json.loads(samples["stdlib logging + JSON formatter"].splitlines()[0])
    if not keys | {"message"} <= set(record):
        problems.append(f"stdlib JSON: missing keys {keys | {'message'} - set(record)}")
    return problems


# --------------------------------------------------------------------------------------


def run(settings: Settings) -> tuple[list[Result], dict[str, Any]]:
    """Run every comparison; return the results and the sample lines."""
    # A library creates its loggers at import time, long before the application configures
    # logging: the loggers under test are created first, in library mode, and kept.
    ours = get_logger(NAME)
    ours_library = get_logger("utils.bench.library")

    samples = sample_lines()
    problems = check_samples(samples)
    if settings.verbose or problems:
        print("sample lines (one event per side, rendered once, untimed):")
        for side, text in samples.items():
            print(f"  {side}: {text.rstrip()}")
    for problem in problems:
        print(f"WARNING: {problem}", file=sys.stderr)

    devnull = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 - lives for the run
    reset_logging()  # back to library mode (sample_lines configured and reset)
    results: list[Result] = []

    # d. Library mode: no configure_logging; the stdlib logger of the same name has a
    # handler (default formatter) writing to devnull. The peer is a stdlib logger with the
    # same handler, logging the same text.
    stdlib_logger("utils.bench.library", devnull)
    peer_library = stdlib_logger("bench.stdlib.library", devnull)
    results.append(
        compare(
            "d. library mode: info event",
            ours=(
                "utils logger before configure_logging",
                loop(EVENT_STMT, log=ours_library.info),
            ),
            peer=(
                "stdlib Logger.info('user.login user=%r ...', ...) + StreamHandler",
                loop(LIBRARY_STDLIB_STMT, log=peer_library.info),
            ),
            settings=settings,
        )
    )
    results.append(
        compare(
            "d. library mode: filtered debug",
            ours=(
                "utils logger before configure_logging",
                loop(DEBUG_STMT, log=ours_library.debug),
            ),
            peer=(
                "stdlib Logger.debug (level INFO)",
                loop(STDLIB_DEBUG_STMT, log=peer_library.debug),
            ),
            settings=settings,
        )
    )

    # Configured mode.
    configure_logging(level="INFO", format="json", stream=devnull)
    raw = raw_structlog_logger(devnull)
    peer_stdlib = stdlib_logger("bench.stdlib.json", devnull, StdlibJSONFormatter())
    peer_stdlib_filtered = logging.getLogger("bench.stdlib.filtered")  # INFO from the root

    results.append(
        compare(
            "a. json event vs raw structlog",
            ours=(
                "get_logger + configure_logging(json), redaction on",
                loop(EVENT_STMT, log=ours.info),
            ),
            peer=(
                "structlog.wrap_logger(WriteLogger, same processors).bind()",
                loop(EVENT_STMT, log=raw.info),
            ),
            settings=settings,
            max_ratio=1.2,
            target="<= 1.20",
        )
    )
    results.append(
        compare(
            "b. json event vs stdlib logging",
            ours=(
                "get_logger + configure_logging(json), redaction on",
                loop(EVENT_STMT, log=ours.info),
            ),
            peer=(
                "stdlib Logger.info(extra=...) + JSON Formatter",
                loop(STDLIB_STMT, log=peer_stdlib.info),
            ),
            settings=settings,
            max_ratio=1 / 1.5,
            target="<= 0.67 (1.5x faster)",
        )
    )
    results.append(
        compare(
            "c. filtered debug vs structlog",
            ours=("get_logger before configure_logging(INFO)", loop(DEBUG_STMT, log=ours.debug)),
            peer=(
                "make_filtering_bound_logger(INFO) no-op debug",
                loop(DEBUG_STMT, log=raw.debug),
            ),
            settings=settings,
            max_ratio=1.2,
            target="<= 1.20",
        )
    )
    results.append(
        compare(
            "c. filtered debug vs stdlib",
            ours=("get_logger before configure_logging(INFO)", loop(DEBUG_STMT, log=ours.debug)),
            peer=(
                "logging.getLogger(...).debug (level INFO)",
                loop(STDLIB_DEBUG_STMT, log=peer_stdlib_filtered.debug),
            ),
            settings=settings,
        )
    )
    # The same filtered call written the way code usually writes it: attribute lookup each
    # time (ours: a slot of the _Logger instance; structlog: a method found on the class).
    results.append(
        compare(
            "c. filtered log.debug(...) incl. lookup",
            ours=(
                "log.debug(...) on the utils logger",
                loop("log.debug('cache.miss', key='user:42')", log=ours),
            ),
            peer=(
                "log.debug(...) on the structlog bound logger",
                loop("log.debug('cache.miss', key='user:42')", log=raw),
            ),
            settings=settings,
        )
    )

    # What redaction costs: the same event with redaction on and off. configure_logging runs
    # in the untimed set-up of every measurement, so the two configurations alternate.
    reconfigure = (
        "configure(level='INFO', format='json', stream=devnull, redact={redact})\n"
        "log = logger.info"
    )
    names = {"configure": configure_logging, "devnull": devnull, "logger": ours}
    results.append(
        compare(
            "a. redaction on vs off (utils)",
            ours=(
                "configure_logging(redact=True)",
                loop(EVENT_STMT, reconfigure.format(redact=True), **names),
            ),
            peer=(
                "configure_logging(redact=False)",
                loop(EVENT_STMT, reconfigure.format(redact=False), **names),
            ),
            settings=settings,
        )
    )

    reset_logging()
    for name in ("utils.bench.library", "bench.stdlib.library", "bench.stdlib.json"):
        logging.getLogger(name).handlers.clear()
    devnull.close()
    return results, samples


def main() -> int:
    settings = parse_args(__doc__.splitlines()[0])
    results, samples = run(settings)
    env = environment(
        {"json_serializer": "orjson" if orjson is not None else "json", "sink": os.devnull}
    )
    versions = env["versions"]
    serializer = f"orjson {versions['orjson']}" if orjson is not None else "json (no orjson)"
    title = (
        f"bench_logging  Python {env['python']}, {env['cpus']} CPUs, structlog "
        f"{versions['structlog']}, JSON via {serializer}, rich {versions['rich']}"
    )
    # Lowest first in the table: a, b, c are the targets, d is information.
    results.sort(key=lambda r: r.name[0])
    print_table(title, results, settings)
    if settings.json_path:
        write_json(settings.json_path, "logging", results, env, samples=samples)
    return 0  # reports, never gates


if __name__ == "__main__":
    sys.exit(main())
