"""Tests of utils.resilience.backoff: bounds of every jitter, the cap, overflow, validation."""

from __future__ import annotations

import dataclasses
import math
import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from utils.core import ValidationError
from utils.resilience import Backoff

JITTERS = ("full", "equal", "decorrelated", "none")

#: Realistic delays: zero, or at least a microsecond (see the overflow test for the rest).
initials = st.one_of(st.just(0.0), st.floats(min_value=1e-6, max_value=100.0))
extras = st.floats(min_value=0.0, max_value=10_000.0)
multipliers = st.floats(min_value=1.0, max_value=10.0)
retry_numbers = st.integers(min_value=1, max_value=100_000)
seeds = st.integers(min_value=0, max_value=2**32)


@st.composite
def backoffs(draw: st.DrawFn, jitter: str | None = None) -> Backoff:
    initial = draw(initials)
    return Backoff(
        initial=initial,
        maximum=initial + draw(extras),
        multiplier=draw(multipliers),
        jitter=draw(st.sampled_from(JITTERS)) if jitter is None else jitter,  # type: ignore[arg-type]
    )


def previous_delays(backoff: Backoff) -> st.SearchStrategy[float]:
    return st.floats(min_value=0.0, max_value=backoff.maximum * 2)


@given(backoff=backoffs(), retry_number=retry_numbers, data=st.data(), seed=seeds)
def test_every_delay_is_between_zero_and_the_maximum(
    backoff: Backoff, retry_number: int, data: st.DataObject, seed: int
) -> None:
    previous = data.draw(previous_delays(backoff))
    delay = backoff.delay(retry_number, previous, random.Random(seed))
    assert 0.0 <= delay <= backoff.maximum
    assert math.isfinite(delay)


@given(backoff=backoffs("full"), retry_number=retry_numbers, seed=seeds)
def test_full_jitter_is_within_zero_and_the_capped_delay(
    backoff: Backoff, retry_number: int, seed: int
) -> None:
    capped = backoff.capped(retry_number)
    assert 0.0 <= backoff.delay(retry_number, 0.0, random.Random(seed)) <= capped


@given(backoff=backoffs("equal"), retry_number=retry_numbers, seed=seeds)
def test_equal_jitter_is_within_half_and_all_of_the_capped_delay(
    backoff: Backoff, retry_number: int, seed: int
) -> None:
    capped = backoff.capped(retry_number)
    assert capped / 2 <= backoff.delay(retry_number, 0.0, random.Random(seed)) <= capped


@given(backoff=backoffs("decorrelated"), retry_number=retry_numbers, data=st.data(), seed=seeds)
def test_decorrelated_jitter_is_within_initial_and_maximum(
    backoff: Backoff, retry_number: int, data: st.DataObject, seed: int
) -> None:
    previous = data.draw(previous_delays(backoff))
    delay = backoff.delay(retry_number, previous, random.Random(seed))
    assert backoff.initial <= delay <= backoff.maximum
    assert delay <= max(backoff.initial, previous * 3)


@given(backoff=backoffs("none"), retry_number=retry_numbers)
def test_no_jitter_is_the_capped_delay(backoff: Backoff, retry_number: int) -> None:
    assert backoff.delay(retry_number, 123.0, random.Random(0)) == backoff.capped(retry_number)


@given(backoff=backoffs(), retry_number=st.integers(min_value=1, max_value=20_000))
def test_capped_is_non_decreasing_and_bounded(backoff: Backoff, retry_number: int) -> None:
    here = backoff.capped(retry_number)
    after = backoff.capped(retry_number + 1)
    assert backoff.initial <= here <= after <= backoff.maximum


@pytest.mark.parametrize("retry_number", [1_000, 10_000, 10**9])
@pytest.mark.parametrize("multiplier", [1.5, 2, 2.0, 10.0])
def test_huge_retry_numbers_do_not_overflow(retry_number: int, multiplier: float) -> None:
    backoff = Backoff(initial=0.1, maximum=30.0, multiplier=multiplier, jitter="none")
    assert backoff.capped(retry_number) == 30.0
    assert backoff.delay(retry_number, 30.0, random.Random(0)) == 30.0


def test_tiny_initial_does_not_overflow() -> None:
    backoff = Backoff(initial=1e-300, maximum=1e8, multiplier=2.0, jitter="none")
    assert backoff.capped(10_000) == 1e8


def test_capped_sequence() -> None:
    backoff = Backoff(initial=0.5, maximum=3.0, multiplier=2.0, jitter="none")
    assert [backoff.capped(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    # Retry numbers below 1 are treated as the first retry.
    assert backoff.capped(0) == backoff.capped(-5) == 0.5


def test_multiplier_one_is_a_constant_delay() -> None:
    backoff = Backoff(initial=0.7, maximum=5.0, multiplier=1.0, jitter="none")
    assert {backoff.capped(n) for n in (1, 2, 50, 10_000)} == {0.7}


def test_zero_initial_is_always_zero() -> None:
    backoff = Backoff(initial=0.0, maximum=0.0, jitter="full")
    assert backoff.capped(100) == 0.0
    assert backoff.delay(100, 0.0, random.Random(0)) == 0.0


def test_decorrelated_grows_from_the_previous_delay() -> None:
    backoff = Backoff(initial=1.0, maximum=100.0, jitter="decorrelated")
    rng = random.Random(42)
    assert backoff.delay(1, 0.0, rng) == 1.0  # nothing before: uniform(initial, initial)
    delays = [backoff.delay(n, 10.0, rng) for n in range(1, 200)]
    assert all(1.0 <= d <= 30.0 for d in delays)
    assert max(delays) > 20.0  # it does reach well beyond the exponential's 1, 2, 4, ...


def test_defaults() -> None:
    assert Backoff() == Backoff(initial=0.1, maximum=10.0, multiplier=2.0, jitter="full")


def test_backoff_is_immutable() -> None:
    backoff = Backoff()
    with pytest.raises(dataclasses.FrozenInstanceError):
        backoff.initial = 1.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"initial": -0.1}, "initial must be a finite number >= 0"),
        ({"initial": math.nan}, "initial must be a finite number >= 0"),
        ({"initial": math.inf, "maximum": math.inf}, "initial must be a finite number >= 0"),
        (
            {"initial": 2.0, "maximum": 1.0},
            "maximum must be finite, at most 315360000 s and >= initial",
        ),
        ({"maximum": math.inf}, "maximum must be finite"),
        ({"maximum": math.nan}, "maximum must be finite"),
        ({"maximum": 1e9}, "maximum must be finite, at most 315360000 s"),
        ({"initial": True}, "initial must be a finite number >= 0"),
        ({"multiplier": 0.5}, "multiplier must be a finite number >= 1"),
        ({"multiplier": math.inf}, "multiplier must be a finite number >= 1"),
        ({"multiplier": math.nan}, "multiplier must be a finite number >= 1"),
        ({"jitter": "random"}, "jitter must be one of full, equal, decorrelated, none"),
    ],
    ids=repr,
)
def test_invalid_configurations(kwargs: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        Backoff(**kwargs)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ValidationError) as info:
        Backoff(initial=-1, maximum=math.inf, multiplier=0, jitter="nope")  # type: ignore[arg-type]
    message = str(info.value)
    assert message.startswith("invalid backoff: ")
    assert message.count(";") == 3
