"""Tests of utils.resilience.errors: codes, meaning-classes, retry hints, pickling."""

from __future__ import annotations

import pickle

import pybreaker
import pytest

from utils.core import (
    OperationTimeoutError,
    ThrottledError,
    TransientError,
    UnavailableError,
    UtilsError,
    is_transient,
)
from utils.resilience import (
    BulkheadFullError,
    CircuitOpenError,
    RateLimitExceeded,
    ResilienceError,
    ResilienceTimeoutError,
)

#: Each error with its code, whether it is retryable, and the meaning-classes it belongs to.
ERRORS: list[tuple[type[ResilienceError], str, bool, tuple[type[BaseException], ...]]] = [
    (ResilienceError, "resilience_error", False, (UtilsError,)),
    (
        CircuitOpenError,
        "circuit_open",
        True,
        (UnavailableError, TransientError, pybreaker.CircuitBreakerError),
    ),
    (RateLimitExceeded, "rate_limited", True, (ThrottledError, TransientError)),
    (BulkheadFullError, "bulkhead_full", True, (UnavailableError, TransientError)),
    (ResilienceTimeoutError, "timeout", False, (OperationTimeoutError,)),
]
IDS = [cls.__name__ for cls, *_ in ERRORS]
PROTOCOLS = list(range(pickle.HIGHEST_PROTOCOL + 1))


@pytest.mark.parametrize(("cls", "code", "retryable", "meanings"), ERRORS, ids=IDS)
def test_code_retryable_and_meaning(
    cls: type[ResilienceError],
    code: str,
    retryable: bool,
    meanings: tuple[type[BaseException], ...],
) -> None:
    error = cls("it went wrong")
    assert error.code == code
    assert error.retryable is retryable
    assert error.retry_after is None
    assert isinstance(error, ResilienceError)
    assert isinstance(error, UtilsError)
    for meaning in meanings:
        assert isinstance(error, meaning)
    assert is_transient(error) is retryable
    assert str(error) == "it went wrong"


def test_specific_meanings() -> None:
    assert not issubclass(RateLimitExceeded, UnavailableError)
    assert not issubclass(BulkheadFullError, ThrottledError)
    assert not issubclass(ResilienceTimeoutError, TransientError)
    assert not issubclass(BulkheadFullError, pybreaker.CircuitBreakerError)


def test_catching_by_meaning_and_by_origin() -> None:
    with pytest.raises(UnavailableError):
        raise CircuitOpenError("circuit 'payments' is open", retry_after=3)
    with pytest.raises(pybreaker.CircuitBreakerError):
        raise CircuitOpenError("circuit 'payments' is open")
    with pytest.raises(ThrottledError):
        raise RateLimitExceeded("limit reached", retry_after=1)
    with pytest.raises(ResilienceError):
        raise BulkheadFullError("full")
    with pytest.raises(OperationTimeoutError):
        raise ResilienceTimeoutError("too slow")


@pytest.mark.parametrize("cls", [CircuitOpenError, RateLimitExceeded, BulkheadFullError])
def test_retry_after_is_carried(cls: type[ResilienceError]) -> None:
    error = cls("wait", retry_after=12.5)
    assert error.retry_after == 12.5
    assert str(error) == "wait (retry after 12.5s)"
    assert is_transient(error)
    assert cls("wait", retry_after=-3).retry_after == 0.0  # never negative


def test_retryable_can_be_overridden() -> None:
    assert not is_transient(CircuitOpenError("open", retryable=False))
    assert is_transient(ResilienceTimeoutError("slow", retryable=True))


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("cls", [cls for cls, *_ in ERRORS], ids=IDS)
def test_pickle_round_trip(cls: type[ResilienceError], protocol: int) -> None:
    error = cls("it went wrong", code="custom", details={"name": "db"}, retry_after=2)
    # (Not an OSError subclass: CPython itself unpickles those as OSError below protocol 3.)
    error.__cause__ = KeyError("reset")
    copy = pickle.loads(pickle.dumps(error, protocol))
    assert type(copy) is cls
    assert str(copy) == str(error)
    assert copy.code == "custom"
    assert copy.details == {"name": "db"}
    assert copy.retry_after == 2.0
    assert copy.retryable is error.retryable
    assert isinstance(copy.__cause__, KeyError)
    assert copy.__cause__.args == ("reset",)


def test_circuit_open_pickles_as_a_pybreaker_error() -> None:
    copy = pickle.loads(pickle.dumps(CircuitOpenError("open", retry_after=4)))
    assert isinstance(copy, pybreaker.CircuitBreakerError)
    assert isinstance(copy, CircuitOpenError)
    assert copy.retry_after == 4.0


def test_repr() -> None:
    assert repr(RateLimitExceeded("limit", retry_after=0.5)) == (
        "RateLimitExceeded('limit', code='rate_limited', retry_after=0.5)"
    )
    assert repr(BulkheadFullError("full")) == "BulkheadFullError('full', code='bulkhead_full')"
