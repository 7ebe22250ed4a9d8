"""Pytest fixtures of utils-resilience, registered through the ``pytest11`` entry point.

It lives outside ``utils.resilience`` so that pytest start-up imports nothing heavy.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture
def instant_retries() -> Iterator[list[float]]:
    """Every resilience sleep is instant during the test; yields the skipped delays."""
    from utils.resilience.testing import instant_retries as instant

    with instant() as delays:
        yield delays
