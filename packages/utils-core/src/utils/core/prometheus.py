"""A :class:`~utils.core.MetricsSink` for Prometheus (``pip install "utils-core[prometheus]"``).

Example:
    >>> from prometheus_client import CollectorRegistry, generate_latest
    >>> from utils.core.prometheus import PrometheusSink
    >>> registry = CollectorRegistry()
    >>> sink = PrometheusSink(registry=registry)
    >>> sink.increment("cache.hit", tags={"cache": "users"})
    >>> b'utils_cache_hit_total{cache="users"} 1.0' in generate_latest(registry)
    True
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from typing import Any

try:
    import prometheus_client
except ImportError as _missing:  # pragma: no cover - exercised only without the extra
    from utils.core.errors import ConfigError

    raise ConfigError(
        "PrometheusSink needs prometheus-client: pip install 'utils-core[prometheus]'"
    ) from _missing

from utils.core.errors import ValidationError

__all__ = ["PrometheusSink"]

_INVALID = re.compile(r"[^a-zA-Z0-9_]")


class PrometheusSink:
    """Exports ``increment`` as Counters, ``observe`` as Histograms, ``gauge`` as Gauges.

    Metric names are prefixed with ``namespace`` and sanitised (``cache.hit`` becomes
    ``utils_cache_hit_total``); durations are histograms in seconds. A metric's label
    names are fixed by its first use; using other tag keys later is a
    :class:`~utils.core.ValidationError`, because Prometheus would reject it anyway.

    Args:
        registry: Where to register metrics (default: prometheus_client's global registry).
        namespace: Prefix of every metric name.
        buckets: Histogram buckets, in seconds.

    Example:
        >>> from prometheus_client import CollectorRegistry
        >>> sink = PrometheusSink(registry=CollectorRegistry(), namespace="shop")
        >>> sink.observe("db.query", 0.012, tags={"op": "select"})
    """

    def __init__(
        self,
        *,
        registry: Any = None,
        namespace: str = "utils",
        buckets: tuple[float, ...] = prometheus_client.Histogram.DEFAULT_BUCKETS,
    ) -> None:
        self._registry = registry if registry is not None else prometheus_client.REGISTRY
        self._namespace = namespace
        self._buckets = buckets
        self._metrics: dict[tuple[str, str], tuple[Any, tuple[str, ...]]] = {}
        self._lock = threading.Lock()

    def _metric(self, kind: str, name: str, tags: Mapping[str, str] | None) -> Any:
        labels = tuple(sorted(tags)) if tags else ()
        entry = self._metrics.get((kind, name))
        if entry is None:
            with self._lock:
                entry = self._metrics.get((kind, name))
                if entry is None:
                    try:
                        metric = self._create(kind, name, labels)
                    except ValueError as exc:  # prometheus_client: duplicated timeseries
                        raise ValidationError(
                            f"metric {name!r} clashes with a metric already registered "
                            f"({exc}); use one name per kind, and names that stay distinct "
                            "once dots become underscores",
                            details={"metric": name},
                        ) from exc
                    entry = (metric, labels)
                    self._metrics[(kind, name)] = entry
        metric, expected = entry
        if labels != expected:
            raise ValidationError(
                f"metric {name!r} was first used with tags {list(expected)} and now with "
                f"{list(labels)}; Prometheus needs the same tag keys on every call",
                details={"metric": name},
            )
        return metric.labels(**tags) if tags else metric

    def _create(self, kind: str, name: str, labels: tuple[str, ...]) -> Any:
        base = _INVALID.sub("_", name)
        common: dict[str, Any] = {
            "namespace": self._namespace,
            "labelnames": labels,
            "registry": self._registry,
        }
        if kind == "increment":
            return prometheus_client.Counter(base, f"{name} (counter)", **common)
        if kind == "observe":
            return prometheus_client.Histogram(
                base, f"{name} (histogram)", buckets=self._buckets, **common
            )
        return prometheus_client.Gauge(base, f"{name} (gauge)", **common)

    def increment(
        self, name: str, value: float = 1.0, tags: Mapping[str, str] | None = None
    ) -> None:
        """Increase the counter ``<namespace>_<name>_total``."""
        self._metric("increment", name, tags).inc(value)

    def observe(self, name: str, value: float, tags: Mapping[str, str] | None = None) -> None:
        """Add an observation to the histogram ``<namespace>_<name>``."""
        self._metric("observe", name, tags).observe(value)

    def gauge(self, name: str, value: float, tags: Mapping[str, str] | None = None) -> None:
        """Set the gauge ``<namespace>_<name>``."""
        self._metric("gauge", name, tags).set(value)
