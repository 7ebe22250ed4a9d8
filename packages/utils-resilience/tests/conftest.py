"""Shared fixtures of utils-resilience's own tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from utils.resilience import _timing

pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True)
def _restore_timing() -> Iterator[None]:
    """Put back the real clock and sleeps after each test, whatever the test patched."""
    saved = (_timing.clock, _timing.sleep, _timing.asleep)
    yield
    _timing.clock, _timing.sleep, _timing.asleep = saved
