"""Pytest fixtures of utils-resilience, registered through the ``pytest11`` entry point.

It lives outside ``utils.resilience`` so that pytest start-up imports nothing heavy. Every
fixture carries the family's ``utils_`` prefix.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest


@pytest.fixture
def utils_instant_retries() -> Iterator[list[float]]:
    """Every resilience sleep is instant during the test; yields the skipped delays."""
    from utils.resilience.testing import instant_retries as instant

    with instant() as delays:
        yield delays


@pytest.fixture
def instant_retries(utils_instant_retries: list[float]) -> list[float]:
    """Deprecated name of :func:`utils_instant_retries`."""
    warnings.warn(
        "the pytest fixture 'instant_retries' is deprecated: use 'utils_instant_retries'",
        DeprecationWarning,
        stacklevel=2,
    )
    return utils_instant_retries
