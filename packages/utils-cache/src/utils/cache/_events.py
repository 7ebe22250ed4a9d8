"""Every event utils.cache reports, declared once: one name, one tag set, log and metric alike.

A metric name is its log event name, and carries exactly the tags declared here, so a
Prometheus sink never sees two label sets for one name (see :mod:`utils.core.report`).
Reporting never raises into a cache call nor kills the invalidation subscriber.

=============================  =======  =================  ===================================
event                          logged   tags               when
=============================  =======  =================  ===================================
``cache.hit``                  no       cache              a lookup found a value
``cache.miss``                 no       cache              a lookup found nothing
``cache.set``                  no       cache              a value was stored
``cache.eviction``             no       cache              a memory cache evicted an entry
``cache.error``                no       cache, op, reason  a Redis call failed (``reason``:
                                                           unavailable, deadline, decode, error)
``cache.unavailable``          warning  cache              Redis became unreachable (once)
``cache.recovered``            info     cache              Redis answered again (once)
``cache.invalidation_lost``    warning  cache              the tiered subscriber lost Redis
``cache.invalidation_resumed`` info     cache              it listens again (L1 flushed)
``cache.invalidation_unreadable`` warning cache            a message on the channel was not ours
``cache.lock_timeout``         warning  cache              a stampede-lock wait ran out
``cache.refresh_failed``       warning  cache              a stale-while-revalidate refresh raised
``cache.refresh_error``        no       cache              the same, under its former (deprecated) name
``cache.unlock_failed``        warning  cache              releasing a stampede lock failed
=============================  =======  =================  ===================================

Example:
    >>> from utils.core.metrics import InMemorySink, set_metrics_sink
    >>> sink = InMemorySink()
    >>> previous = set_metrics_sink(sink)
    >>> CACHE_ERROR.emit(cache="users", op="get", reason="unavailable", error="refused")
    >>> sink.select("cache.error")[0].tags
    {'cache': 'users', 'op': 'get', 'reason': 'unavailable'}
    >>> _ = set_metrics_sink(previous)
"""

from __future__ import annotations

from collections.abc import Callable

from utils.core.report import Event, Outage

__all__ = [
    "CACHE_ERROR",
    "CACHE_EVICTION",
    "CACHE_HIT",
    "CACHE_MISS",
    "CACHE_SET",
    "INVALIDATION_UNREADABLE",
    "LOCK_TIMEOUT",
    "LOCK_TIMEOUT_COUNT",
    "REFRESH_ERROR",
    "REFRESH_FAILED",
    "UNLOCK_FAILED",
    "cache_outage",
    "invalidation_outage",
]

_LOGGER = "utils.cache"
_CACHE = ("cache",)

CACHE_HIT = Event("cache.hit", logger=_LOGGER, level=None, tags=_CACHE)
CACHE_MISS = Event("cache.miss", logger=_LOGGER, level=None, tags=_CACHE)
CACHE_SET = Event("cache.set", logger=_LOGGER, level=None, tags=_CACHE)
CACHE_EVICTION = Event("cache.eviction", logger=_LOGGER, level=None, tags=_CACHE)
CACHE_ERROR = Event("cache.error", logger=_LOGGER, level=None, tags=("cache", "op", "reason"))
INVALIDATION_UNREADABLE = Event(
    "cache.invalidation_unreadable", logger=_LOGGER, level="warning", tags=_CACHE
)
# Every lock timeout is counted; the warning is rate-limited (same name, same tags).
LOCK_TIMEOUT_COUNT = Event("cache.lock_timeout", logger=_LOGGER, level=None, tags=_CACHE)
LOCK_TIMEOUT = Event(
    "cache.lock_timeout", logger=_LOGGER, level="warning", tags=_CACHE, metric=None
)
REFRESH_FAILED = Event("cache.refresh_failed", logger=_LOGGER, level="warning", tags=_CACHE)
#: Deprecated (until 0.2.0): the former metric name of a failed refresh, still counted.
REFRESH_ERROR = Event("cache.refresh_error", logger=_LOGGER, level=None, tags=_CACHE)
UNLOCK_FAILED = Event("cache.unlock_failed", logger=_LOGGER, level="warning", tags=_CACHE)


def cache_outage(
    name: str, *, probe_interval: float, clock: Callable[[], float] | None = None
) -> Outage:
    """The outage record of one Redis cache: ``cache.unavailable`` / ``cache.recovered``."""
    return Outage(
        "redis",
        events=("cache.unavailable", "cache.recovered"),
        logger=_LOGGER,
        tags={"cache": name},
        probe_interval=probe_interval,
        **({} if clock is None else {"clock": clock}),
    )


def invalidation_outage(name: str) -> Outage:
    """The outage record of a tiered cache's invalidation subscriber."""
    return Outage(
        "redis",
        events=("cache.invalidation_lost", "cache.invalidation_resumed"),
        logger=_LOGGER,
        tags={"cache": name},
    )
