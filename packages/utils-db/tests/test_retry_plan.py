from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from utils.core import ValidationError, deadline
from utils.db import DeadlockError, SerializationError
from utils.db._core import RetryPlan


@given(
    attempts=st.integers(1, 12),
    base=st.floats(0.0001, 1.0),
    cap=st.floats(0.0001, 5.0),
    jitter=st.floats(0.0, 1.0),
)
def test_backoff_is_capped_jittered_and_bounded(
    attempts: int, base: float, cap: float, jitter: float
) -> None:
    plan = RetryPlan("db", attempts=attempts, base=base, cap=cap, rng=lambda: jitter)
    delays = []
    for attempt in range(1, attempts):
        delay = plan.backoff(SerializationError("conflict"))
        ceiling = min(cap, base * 2 ** (attempt - 1))
        assert 0.0 <= delay <= ceiling + 1e-12
        assert delay == pytest.approx(ceiling * jitter)
        delays.append(delay)
    error = DeadlockError("deadlock")
    with pytest.raises(DeadlockError):
        plan.backoff(error)
    assert f"gave up after {attempts} attempts" in getattr(error, "__notes__", [""])[0]
    assert len(delays) == attempts - 1


@given(left=st.floats(0.0, 0.5))
def test_backoff_never_sleeps_past_the_deadline(left: float) -> None:
    plan = RetryPlan("db", attempts=100, base=1.0, cap=1.0, rng=lambda: 1.0)
    with deadline(left), pytest.raises(SerializationError):
        plan.backoff(SerializationError("conflict"))


def test_attempts_must_be_positive() -> None:
    with pytest.raises(ValidationError):
        RetryPlan("db", attempts=0, base=0.1, cap=1.0, rng=lambda: 0.5)
