"""Tests of utils.core.errors: the exception taxonomy, its text forms and pickling."""

from __future__ import annotations

import pickle
import threading
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from utils.core import (
    ConfigError,
    ConflictError,
    NotFoundError,
    OperationTimeoutError,
    PermissionDeniedError,
    ThrottledError,
    TransientError,
    UnavailableError,
    UtilsError,
    ValidationError,
)

#: Every class with the code and ``retryable`` it has when nothing overrides them.
TAXONOMY: list[tuple[type[UtilsError], str, bool]] = [
    (UtilsError, "utils_error", False),
    (ConfigError, "config_error", False),
    (ValidationError, "validation_error", False),
    (NotFoundError, "not_found", False),
    (ConflictError, "conflict", False),
    (PermissionDeniedError, "permission_denied", False),
    (OperationTimeoutError, "timeout", False),
    (TransientError, "transient", True),
    (UnavailableError, "unavailable", True),
    (ThrottledError, "throttled", True),
]
ALL_CLASSES = [cls for cls, _, _ in TAXONOMY]
PROTOCOLS = list(range(pickle.HIGHEST_PROTOCOL + 1))


class CircuitOpen(UnavailableError):
    """A package-style error whose constructor does not take the message."""

    def __init__(self, name: str, retry_after: float) -> None:
        super().__init__(f"circuit {name} open", retry_after=retry_after)
        self.name = name


class AWSError(UtilsError):
    """An origin-class, as a package would define one."""


class AWSNotFoundError(AWSError, NotFoundError):
    """A concrete error inheriting origin and meaning."""


class DriverError(Exception):
    """A picklable third-party exception used as a cause."""


class LockedError(Exception):
    """An exception that cannot be pickled: it holds a lock."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.lock = threading.Lock()


class TwoArgDriverError(Exception):
    """Like botocore's ClientError: pickles fine, but cannot be rebuilt from its args."""

    def __init__(self, response: dict[str, Any], operation: str) -> None:
        super().__init__(f"{operation} failed: {response}")
        self.response = response
        self.operation = operation


def roundtrip(error: UtilsError, protocol: int = pickle.HIGHEST_PROTOCOL) -> UtilsError:
    restored = pickle.loads(pickle.dumps(error, protocol=protocol))
    assert isinstance(restored, UtilsError)
    return restored


# --- taxonomy ------------------------------------------------------------------------------


@pytest.mark.parametrize(("cls", "code", "retryable"), TAXONOMY)
def test_defaults_of_each_meaning_class(cls: type[UtilsError], code: str, retryable: bool) -> None:
    error = cls("boom")
    assert isinstance(error, UtilsError)
    assert isinstance(error, Exception)
    assert error.code == code == cls.default_code
    assert error.retryable is retryable is cls.default_retryable
    assert error.retry_after is None
    assert error.details == {}
    assert error.message == "boom"


@pytest.mark.parametrize("cls", [ConfigError, ValidationError, NotFoundError, ConflictError])
def test_meaning_classes_are_siblings(cls: type[UtilsError]) -> None:
    assert issubclass(cls, UtilsError)
    assert not issubclass(cls, TransientError)
    others = {ConfigError, ValidationError, NotFoundError, ConflictError} - {cls}
    assert not any(issubclass(cls, other) for other in others)


@pytest.mark.parametrize("cls", [ThrottledError, UnavailableError])
def test_throttled_and_unavailable_are_transient(cls: type[UtilsError]) -> None:
    assert issubclass(cls, TransientError)
    with pytest.raises(TransientError):
        raise cls("try again")


def test_catching_by_meaning_and_by_origin() -> None:
    with pytest.raises(NotFoundError) as by_meaning:
        raise AWSNotFoundError("no object 'a.txt' in bucket 'b'")
    with pytest.raises(AWSError) as by_origin:
        raise AWSNotFoundError("no object 'a.txt' in bucket 'b'")
    assert by_meaning.value.code == "not_found"  # inherited from the meaning class
    assert isinstance(by_origin.value, NotFoundError)
    with pytest.raises(UtilsError):
        raise ThrottledError("slow down")


def test_transient_error_is_not_caught_as_unrelated_meaning() -> None:
    with pytest.raises(ThrottledError):  # noqa: PT012 - the inner except is the point
        try:
            raise ThrottledError("slow down")
        except NotFoundError:  # pragma: no cover - must not match
            pytest.fail("ThrottledError was caught as NotFoundError")


def test_overrides_code_retryable_and_details() -> None:
    error = NotFoundError("gone", code="user_missing", retryable=True, details={"id": 42})
    assert error.code == "user_missing"
    assert error.retryable is True
    assert error.details == {"id": 42}
    assert TransientError("x", retryable=False).retryable is False


# --- message, str(), repr() ------------------------------------------------------------------


def test_message_and_args() -> None:
    error = ConflictError("user 'ann' already exists")
    assert error.message == "user 'ann' already exists"
    assert error.args == ("user 'ann' already exists",)
    assert UtilsError().message == ""


def test_str_is_the_message_without_details() -> None:
    error = ValidationError("ttl must be positive", details={"ttl": -1})
    assert str(error) == "ttl must be positive"


def test_str_falls_back_to_the_code() -> None:
    assert str(UnavailableError()) == "unavailable"
    assert str(UtilsError(code="queue_full")) == "queue_full"


@pytest.mark.parametrize(
    ("retry_after", "suffix"), [(2, "2s"), (2.5, "2.5s"), (0, "0s"), (0.125, "0.125s")]
)
def test_str_shows_retry_after(retry_after: float, suffix: str) -> None:
    assert str(ThrottledError("slow down", retry_after=retry_after)) == (
        f"slow down (retry after {suffix})"
    )
    assert str(ThrottledError(retry_after=retry_after)) == f"throttled (retry after {suffix})"


def test_repr_shows_code_and_only_non_default_retryable() -> None:
    assert repr(NotFoundError("gone")) == "NotFoundError('gone', code='not_found')"
    assert repr(NotFoundError("gone", retryable=True)) == (
        "NotFoundError('gone', code='not_found', retryable=True)"
    )
    assert repr(TransientError("reset")) == "TransientError('reset', code='transient')"
    assert repr(TransientError("reset", retryable=False)) == (
        "TransientError('reset', code='transient', retryable=False)"
    )
    assert repr(ThrottledError("slow", retry_after=1.5)) == (
        "ThrottledError('slow', code='throttled', retry_after=1.5)"
    )


def test_repr_of_subclass_uses_its_name() -> None:
    assert repr(CircuitOpen("db", 3)) == (
        "CircuitOpen('circuit db open', code='unavailable', retry_after=3.0)"
    )


# --- details and retry_after ------------------------------------------------------------------


def test_details_are_copied() -> None:
    given_details: dict[str, Any] = {"size": 10}
    error = UtilsError("queue is full", details=given_details)
    given_details["size"] = 11
    given_details["extra"] = True
    assert error.details == {"size": 10}
    assert error.details is not given_details


def test_details_default_to_a_fresh_dict() -> None:
    first, second = UtilsError("a"), UtilsError("b", details={})
    first.details["x"] = 1
    assert second.details == {}
    assert UtilsError("c").details == {}


@pytest.mark.parametrize(
    ("given_value", "expected"),
    [(-5, 0.0), (-0.001, 0.0), (0, 0.0), (3, 3.0), (2.5, 2.5), (float("nan"), 0.0)],
)
def test_retry_after_is_clamped_and_a_float(given_value: float, expected: float) -> None:
    error = ThrottledError("slow down", retry_after=given_value)
    assert error.retry_after == expected
    assert isinstance(error.retry_after, float)


# --- pickling ---------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("cls", ALL_CLASSES)
def test_pickle_roundtrip_of_every_class(cls: type[UtilsError], protocol: int) -> None:
    error = cls("it broke", code="custom", details={"n": 1, "s": "x"}, retry_after=1.5)
    restored = roundtrip(error, protocol)
    assert type(restored) is cls
    assert restored.message == "it broke"
    assert restored.args == error.args
    assert restored.code == "custom"
    assert restored.details == {"n": 1, "s": "x"}
    assert restored.retryable is error.retryable
    assert restored.retry_after == 1.5
    assert str(restored) == str(error)
    assert repr(restored) == repr(error)


@pytest.mark.parametrize("cls", ALL_CLASSES)
def test_pickle_roundtrip_keeps_defaults(cls: type[UtilsError]) -> None:
    restored = roundtrip(cls())
    assert restored.code == cls.default_code
    assert restored.retryable is cls.default_retryable
    assert restored.retry_after is None
    assert restored.details == {}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_pickle_subclass_with_other_init_signature(protocol: int) -> None:
    error = CircuitOpen("payments", retry_after=30)
    restored = roundtrip(error, protocol)
    assert type(restored) is CircuitOpen
    assert isinstance(restored, CircuitOpen)
    assert restored.name == "payments"
    assert restored.message == "circuit payments open"
    assert restored.code == "unavailable"
    assert restored.retryable is True
    assert restored.retry_after == 30.0
    assert str(restored) == "circuit payments open (retry after 30s)"


def test_pickle_origin_and_meaning_subclass() -> None:
    restored = roundtrip(AWSNotFoundError("no key", details={"bucket": "b"}))
    assert isinstance(restored, AWSError)
    assert isinstance(restored, NotFoundError)
    assert restored.details == {"bucket": "b"}


def test_cause_is_kept() -> None:
    try:
        try:
            raise DriverError("connection reset by peer")
        except DriverError as exc:
            raise UnavailableError("db is unreachable") from exc
    except UnavailableError as error:
        caught = error
    assert isinstance(caught.__cause__, DriverError)
    restored = roundtrip(caught)
    assert isinstance(restored.__cause__, DriverError)
    assert restored.__cause__.args == ("connection reset by peer",)
    assert restored.message == "db is unreachable"


def test_utils_error_cause_chain_is_kept() -> None:
    inner = CircuitOpen("redis", 5)
    outer = UnavailableError("cache is down")
    outer.__cause__ = inner
    restored = roundtrip(outer)
    assert isinstance(restored.__cause__, CircuitOpen)
    assert restored.__cause__.retry_after == 5.0


def test_no_cause_stays_none() -> None:
    assert roundtrip(NotFoundError("x")).__cause__ is None


def test_unpicklable_cause_is_dropped_without_breaking_pickling() -> None:
    cause = LockedError("holds a lock")
    with pytest.raises(TypeError):
        pickle.dumps(cause)
    error = ConflictError("version mismatch", details={"version": 3})
    error.__cause__ = cause
    restored = roundtrip(error)
    assert restored.__cause__ is None
    assert restored.message == "version mismatch"
    assert restored.details == {"version": 3}
    assert error.__cause__ is cause  # the original is untouched


def test_cause_of_local_class_is_dropped() -> None:
    class LocalError(Exception):
        pass

    error = NotFoundError("gone")
    error.__cause__ = LocalError("cannot be found by pickle")
    assert roundtrip(error).__cause__ is None


def test_cause_that_cannot_be_unpickled_is_dropped() -> None:
    cause = TwoArgDriverError({"Error": {"Code": "NoSuchKey"}}, "GetObject")
    pickle.dumps(cause)  # pickles fine ...
    error = NotFoundError("no object 'a.txt'")
    error.__cause__ = cause
    restored = roundtrip(error)  # ... but loading must not fail
    assert restored.message == "no object 'a.txt'"


# --- property ----------------------------------------------------------------------------------

json_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
)


@given(
    cls=st.sampled_from(ALL_CLASSES),
    message=st.text(),
    code=st.none() | st.text(max_size=30),
    details=st.none() | st.dictionaries(st.text(max_size=10), json_scalars, max_size=5),
    retryable=st.none() | st.booleans(),
    retry_after=st.none() | st.floats(),
    protocol=st.sampled_from(PROTOCOLS),
)
def test_pickle_roundtrip_property(
    cls: type[UtilsError],
    message: str,
    code: str | None,
    details: dict[str, Any] | None,
    retryable: bool | None,
    retry_after: float | None,
    protocol: int,
) -> None:
    error = cls(message, code=code, details=details, retryable=retryable, retry_after=retry_after)
    restored = roundtrip(error, protocol)
    assert type(restored) is cls
    assert restored.message == message
    assert restored.code == (cls.default_code if code is None else code)
    assert restored.details == (details or {})
    assert restored.retryable is error.retryable
    assert restored.retry_after == error.retry_after
    if retry_after is None:
        assert restored.retry_after is None
    else:
        assert restored.retry_after is not None
        assert restored.retry_after >= 0.0
    assert str(restored) == str(error)
    assert repr(restored) == repr(error)
