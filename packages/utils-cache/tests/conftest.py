"""Shared fixtures of utils-cache's own tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from utils.cache import _compute
from utils.core.metrics import get_metrics_sink, set_metrics_sink


@pytest.fixture(autouse=True)
def _restore_globals() -> Iterator[None]:
    """Put back the envelope clock and the metrics sink, whatever the test changed."""
    wall_clock = _compute.wall_clock
    sink = get_metrics_sink()
    yield
    _compute.wall_clock = wall_clock
    set_metrics_sink(sink)


def pooled_connection(pool: Any) -> Any:
    """A connection from a redis-py pool, on every supported redis-py.

    redis-py before 5.3 needs a command name (ignored); later versions warn when given one.
    """
    try:
        return pool.get_connection()
    except TypeError:  # pragma: no cover - redis-py < 5.3
        return pool.get_connection("PING")
