"""Tests of utils.core.validate: one set of argument rules and one wording for the family."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from utils.core import ValidationError
from utils.core.validate import (
    FALSE_WORDS,
    MAX_SECONDS,
    TRUE_WORDS,
    duration,
    flag,
    non_negative,
    non_negative_int,
    one_of,
    parse_bool,
    positive,
    positive_int,
)

HUGE = 10**400  # too large for a float: float(HUGE) raises OverflowError
BIG = pytest.param(HUGE, id="10**400")
MINUS_BIG = pytest.param(-HUGE, id="-10**400")


def refused(call: Callable[[], object], what: str) -> ValidationError:
    """Run ``call``, expect a ValidationError whose message names ``what``; return it."""
    with pytest.raises(ValidationError) as info:
        call()
    message = str(info.value)
    assert message.startswith(f"{what} must be "), message
    assert info.value.details["name"] == what
    return info.value


def test_max_seconds_is_ten_years() -> None:
    assert MAX_SECONDS == 10 * 365 * 24 * 3600


# --- positive / non_negative -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"), [(1, 1.0), (0.5, 0.5), (1e300, 1e300), (2**80, float(2**80))]
)
def test_positive_accepts(value: float, expected: float) -> None:
    result = positive(value, "rate")
    assert result == expected
    assert type(result) is float


@pytest.mark.parametrize(
    "value",
    [
        0,
        0.0,
        -0.0,
        -1,
        -1e-9,
        math.nan,
        math.inf,
        -math.inf,
        True,
        False,
        "1",
        None,
        BIG,
        MINUS_BIG,
    ],
)
def test_positive_refuses(value: Any) -> None:
    error = refused(lambda: positive(value, "rate"), "rate")
    assert "a finite number > 0" in str(error)


@pytest.mark.parametrize(("value", "expected"), [(0, 0.0), (-0.0, 0.0), (3, 3.0), (0.25, 0.25)])
def test_non_negative_accepts(value: float, expected: float) -> None:
    result = non_negative(value, "jitter")
    assert result == expected
    assert type(result) is float


@pytest.mark.parametrize(
    "value", [-1, -1e-300, math.nan, math.inf, -math.inf, True, False, "0", None, BIG, MINUS_BIG]
)
def test_non_negative_refuses(value: Any) -> None:
    error = refused(lambda: non_negative(value, "jitter"), "jitter")
    assert "a finite number >= 0" in str(error)


def test_huge_int_message_stays_short() -> None:
    # 10**400 is refused as a ValidationError (never an OverflowError), without a
    # 401-digit number in the message.
    for check in (positive, non_negative):
        error = refused(lambda check=check: check(HUGE, "rate"), "rate")  # type: ignore[misc]
        assert str(error).endswith("got 1000... (401 digits)")


# --- positive_int / non_negative_int ---------------------------------------------------------


@pytest.mark.parametrize("value", [1, 7, BIG])
def test_positive_int_accepts(value: int) -> None:
    assert positive_int(value, "attempts") == value


@pytest.mark.parametrize("value", [0, -1, True, False, 1.0, 2.5, "3", None, math.inf])
def test_positive_int_refuses(value: Any) -> None:
    error = refused(lambda: positive_int(value, "attempts"), "attempts")
    assert "an int > 0" in str(error)
    assert str(error).endswith(f"got {value!r}")


@pytest.mark.parametrize("value", [0, 1, BIG])
def test_non_negative_int_accepts(value: int) -> None:
    assert non_negative_int(value, "version") == value


@pytest.mark.parametrize("value", [-1, True, False, 0.0, "0", None])
def test_non_negative_int_refuses(value: Any) -> None:
    error = refused(lambda: non_negative_int(value, "version"), "version")
    assert "an int >= 0" in str(error)


# --- duration --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, 0.0),
        (1, 1.0),
        (1.5, 1.5),
        (timedelta(minutes=1), 60.0),
        (timedelta(milliseconds=250), 0.25),
        (timedelta(0), 0.0),
        (MAX_SECONDS, MAX_SECONDS),
        (int(MAX_SECONDS), MAX_SECONDS),
        (timedelta(seconds=MAX_SECONDS), MAX_SECONDS),
    ],
)
def test_duration_accepts(value: float | timedelta, expected: float) -> None:
    result = duration(value, "ttl")
    assert result == expected
    assert type(result) is float


def test_duration_none_and_infinity_mean_no_limit() -> None:
    assert duration(None, "ttl") is None
    assert duration(math.inf, "ttl") is None
    assert duration(float("inf"), "ttl", allow_zero=False, allow_none=False) is None


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        (True, "seconds (a number) or a timedelta"),
        (False, "seconds (a number) or a timedelta"),
        ("1", "seconds (a number) or a timedelta"),
        (b"1", "seconds (a number) or a timedelta"),
        ([1], "seconds (a number) or a timedelta"),
        (math.nan, "seconds >= 0 or a timedelta"),
        (-1, "seconds >= 0 or a timedelta"),
        (-0.001, "seconds >= 0 or a timedelta"),
        (-math.inf, "seconds >= 0 or a timedelta"),
        pytest.param(-HUGE, "seconds >= 0 or a timedelta", id="-10**400"),
        (timedelta(seconds=-1), "seconds >= 0 or a timedelta"),
        (MAX_SECONDS + 1, "at most 315360000 s (10 years; math.inf means no limit)"),
        (1e12, "at most 315360000 s"),
        pytest.param(HUGE, "at most 315360000 s", id="10**400"),
        (timedelta.max, "at most 315360000 s"),
        (timedelta(days=3651), "at most 315360000 s"),
    ],
)
def test_duration_refuses(value: Any, rule: str) -> None:
    error = refused(lambda: duration(value, "ttl"), "ttl")
    assert rule in str(error)


def test_duration_huge_int_is_a_validation_error_with_a_short_message() -> None:
    error = refused(lambda: duration(HUGE, "ttl"), "ttl")
    assert "got 1000... (401 digits)" in str(error)
    assert len(str(error)) < 150
    error = refused(lambda: duration(-HUGE, "ttl"), "ttl")
    assert "got -100... (401 digits)" in str(error)


def test_duration_options() -> None:
    with pytest.raises(ValidationError, match=r"^ttl must be seconds > 0 or a timedelta, got 0$"):
        duration(0, "ttl", allow_zero=False)
    with pytest.raises(ValidationError, match=r"seconds > 0 .*got datetime.timedelta\(0\)"):
        duration(timedelta(0), "ttl", allow_zero=False)
    assert duration(1e-9, "ttl", allow_zero=False) == 1e-9
    with pytest.raises(ValidationError, match=r"^ttl must be seconds or a timedelta, got None$"):
        duration(None, "ttl", allow_none=False)
    with pytest.raises(ValidationError, match=r"it cannot be unlimited\), got inf$"):
        duration(math.inf, "ttl", allow_infinite=False)
    # allow_none=False does not forbid math.inf, which is "no limit" spelled explicitly.
    assert duration(math.inf, "ttl", allow_none=False) is None


def test_duration_message_names_the_argument_and_keeps_details() -> None:
    error = refused(lambda: duration(-5, "lock_timeout"), "lock_timeout")
    assert str(error) == "lock_timeout must be seconds >= 0 or a timedelta, got -5"
    assert error.details == {"name": "lock_timeout", "value": "-5"}
    assert error.code == "validation_error"


@given(st.floats(allow_nan=True, allow_infinity=True) | st.integers() | st.timedeltas())
def test_duration_never_raises_anything_else_property(value: float | timedelta) -> None:
    for options in (
        {},
        {"allow_zero": False},
        {"allow_infinite": False},
        {"allow_zero": False, "allow_none": False, "allow_infinite": False},
    ):
        try:
            result = duration(value, "ttl", **options)
        except ValidationError as exc:
            message = str(exc)
            assert message.startswith("ttl must be ")
            continue
        if result is None:
            assert value == math.inf
            assert options.get("allow_infinite", True)
        else:
            assert type(result) is float
            assert 0.0 <= result <= MAX_SECONDS
            if not options.get("allow_zero", True):
                assert result > 0.0


@given(st.integers() | st.floats(allow_nan=True))
def test_numbers_never_raise_anything_else_property(value: float) -> None:
    for check in (positive, non_negative):
        try:
            result = check(value, "x")
        except ValidationError:
            continue
        assert math.isfinite(result)
        assert result >= 0.0


# --- flag / parse_bool / one_of --------------------------------------------------------------


def test_flag() -> None:
    assert flag(True, "fail_open") is True
    assert flag(False, "fail_open") is False
    for value in (1, 0, "yes", None, 1.0):
        error = refused(lambda value=value: flag(value, "fail_open"), "fail_open")  # type: ignore[misc]
        assert str(error) == f"fail_open must be True or False, got {value!r}"


def test_boolean_word_tables() -> None:
    assert frozenset({"1", "true", "yes", "on", "y", "t"}) == TRUE_WORDS
    assert frozenset({"0", "false", "no", "off", "n", "f"}) == FALSE_WORDS
    assert not TRUE_WORDS & FALSE_WORDS


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        *[(word, True) for word in ("1", "true", "TRUE", "True", "yes", "On", "y", "T", " yes ")],
        *[(word, False) for word in ("0", "false", "FALSE", "No", "off", "n", "F", "\tno\n")],
    ],
)
def test_parse_bool_accepts(text: str, expected: bool) -> None:
    assert parse_bool(text, "UTILS_DEBUG") is expected


@pytest.mark.parametrize("text", ["", " ", "2", "-1", "maybe", "tru", "yess", "nope", "enabled"])
def test_parse_bool_refuses_other_words(text: str) -> None:
    error = refused(lambda: parse_bool(text, "UTILS_DEBUG"), "UTILS_DEBUG")
    assert "a boolean word (true/false, yes/no, on/off, 1/0)" in str(error)
    assert str(error).endswith(f"got {text!r}")


@pytest.mark.parametrize("value", [True, False, 1, 0, None, b"yes"])
def test_parse_bool_refuses_non_strings(value: Any) -> None:
    refused(lambda: parse_bool(value, "?ssl"), "?ssl")


def test_one_of() -> None:
    assert one_of("full", "jitter", ("full", "equal", "none")) == "full"
    error = refused(lambda: one_of("half", "jitter", ("full", "equal")), "jitter")
    assert str(error) == "jitter must be one of 'full', 'equal', got 'half'"
    assert one_of(2, "db", range(16)) == 2


def test_one_of_refuses_an_unhashable_value() -> None:
    error = refused(lambda: one_of(["full"], "jitter", frozenset({"full"})), "jitter")
    assert str(error) == "jitter must be one of 'full', got ['full']"
