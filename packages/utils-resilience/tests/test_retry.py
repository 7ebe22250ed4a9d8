"""Tests of utils.resilience.retry: policies, backoff, retry_after, deadlines, budgets, forms."""

from __future__ import annotations

import asyncio
import functools
import inspect
import math
import re
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from typing import Any

import pytest

from utils.core import (
    InMemorySink,
    NotFoundError,
    OperationTimeoutError,
    ThrottledError,
    TransientError,
    UnavailableError,
    ValidationError,
    deadline,
    remaining,
    testing,
)
from utils.resilience import (
    Attempt,
    RateLimitExceeded,
    Retry,
    RetryBudget,
    RetryState,
    _timing,
    retry,
)
from utils.resilience.testing import instant_retries as instant_retries_cm

Logs = list[dict[str, Any]]

SYNC_STYLES = ("decorator", "call", "block")
ASYNC_STYLES = ("async decorator", "acall", "async for")
ALL_STYLES = SYNC_STYLES + ASYNC_STYLES
#: Styles that accept ``on_result`` (the block form has no result to look at).
RESULT_STYLES = ("decorator", "call", "async decorator", "acall")

NOTE = re.compile(
    r"^utils\.resilience: gave up after (?P<attempts>\d+) attempts? over "
    r"(?P<elapsed>\d+\.\d{3})s \((?P<reason>\w+)\) in (?P<name>.+)$"
)


# --------------------------------------------------------------------------- helpers


class Flaky:
    """Plays ``outcomes`` in order (the last one repeats): exception classes are raised as
    fresh instances, exception instances as themselves, anything else is returned."""

    def __init__(self, *outcomes: Any, on_call: Callable[[], None] | None = None) -> None:
        self.outcomes = list(outcomes)
        self.on_call = on_call
        self.calls = 0
        self.raised: list[BaseException] = []

    def __call__(self) -> Any:
        outcome = self.outcomes[min(self.calls, len(self.outcomes) - 1)]
        self.calls += 1
        if self.on_call is not None:
            self.on_call()
        if isinstance(outcome, type) and issubclass(outcome, BaseException):
            outcome = outcome("boom")
        if isinstance(outcome, BaseException):
            self.raised.append(outcome)
            raise outcome
        return outcome


class FakeClock(testing.FakeClock):
    """utils.core's FakeClock, also recording when each sleep ended."""

    def __init__(self, now: float = 1000.0) -> None:
        super().__init__(now)
        self.sleep_ends: list[float] = []

    @property
    def slept(self) -> list[float]:
        return self.sleeps

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds)
        self.sleep_ends.append(self.now)

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)  # no extra yield: the retry loop's own awaits are what is tested


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(_timing, "clock", fake)
    monkeypatch.setattr(_timing, "sleep", fake.sleep)
    monkeypatch.setattr(_timing, "asleep", fake.asleep)
    return fake


def _run_sync(style: str, policy: Retry, step: Callable[[], Any]) -> Any:
    def operation() -> Any:
        return step()

    if style == "decorator":
        decorated: Callable[[], Any] = policy(operation)
        return decorated()
    if style == "call":
        return policy.call(operation)
    for attempt in policy:
        with attempt:
            return operation()
    raise AssertionError("the block form ended without a result or an exception")


async def _run_async(style: str, policy: Retry, step: Callable[[], Any]) -> Any:
    async def operation() -> Any:
        await asyncio.sleep(0)
        return step()

    if style == "async decorator":
        return await policy(operation)()
    if style == "acall":
        return await policy.acall(operation)
    async for attempt in policy:
        with attempt:
            return await operation()
    raise AssertionError("the block form ended without a result or an exception")


class _Raised:
    def __init__(self, error: BaseException) -> None:
        self.error = error


async def _capture(awaitable: Awaitable[Any]) -> Any:
    # BaseExceptions are caught inside the loop and re-raised outside it, so asyncio.run
    # never has to deal with a KeyboardInterrupt or SystemExit escaping a task.
    try:
        return await awaitable
    except BaseException as error:  # re-raised by run()
        return _Raised(error)


def run(style: str, policy: Retry, step: Callable[[], Any]) -> Any:
    """Run ``step`` through ``policy`` in one of the six call styles."""
    if style in SYNC_STYLES:
        return _run_sync(style, policy, step)
    outcome = asyncio.run(_capture(_run_async(style, policy, step)))
    if isinstance(outcome, _Raised):
        raise outcome.error
    return outcome


def events(logs: Logs, name: str) -> list[dict[str, Any]]:
    return [entry for entry in logs if entry["event"] == name]


def retry_metrics(sink: InMemorySink) -> list[Any]:
    return [m for m in sink.measurements if m.name.startswith("retry.")]


def notes_of(error: BaseException) -> list[str]:
    """PEP 678 notes (``__notes__`` is unknown to mypy's Python 3.10 view)."""
    notes: list[str] = getattr(error, "__notes__", [])
    return notes


def only_note(error: BaseException) -> re.Match[str]:
    notes = notes_of(error)
    assert len(notes) == 1, notes
    match = NOTE.match(notes[0])
    assert match is not None, notes[0]
    return match


# --------------------------------------------------------------------------- success path


@pytest.mark.parametrize("style", ALL_STYLES)
def test_success_first_time_logs_and_counts_nothing(
    style: str, utils_logs: Logs, utils_metrics: InMemorySink, utils_instant_retries: list[float]
) -> None:
    step = Flaky("ok")
    assert run(style, retry(name="fetch"), step) == "ok"
    assert step.calls == 1
    assert utils_logs == []
    assert retry_metrics(utils_metrics) == []
    assert utils_instant_retries == []


@pytest.mark.parametrize("style", ALL_STYLES)
def test_retries_then_succeeds(
    style: str, utils_logs: Logs, utils_metrics: InMemorySink, utils_instant_retries: list[float]
) -> None:
    step = Flaky(ConnectionResetError, ConnectionResetError, "ok")
    assert run(style, retry(name="fetch", jitter="none"), step) == "ok"
    assert step.calls == 3
    assert utils_instant_retries == pytest.approx([0.1, 0.2])
    failed = events(utils_logs, "retry.attempt_failed")
    assert [entry["attempt"] for entry in failed] == [1, 2]
    assert {entry["log_level"] for entry in failed} == {"warning"}
    assert events(utils_logs, "retry.gave_up") == []
    assert utils_metrics.count("retry.attempt_failed", retry="fetch") == 2
    assert utils_metrics.count("retry.gave_up") == 0
    assert all(not getattr(e, "__notes__", None) for e in step.raised)


# --------------------------------------------------------------------------- giving up


@pytest.mark.parametrize("style", ALL_STYLES)
def test_gives_up_with_the_original_exception_and_a_note(
    style: str, utils_logs: Logs, utils_metrics: InMemorySink, utils_instant_retries: list[float]
) -> None:
    step = Flaky(ConnectionResetError)
    with pytest.raises(ConnectionResetError) as info:
        run(style, retry(attempts=3, name="fetch"), step)
    assert step.calls == 3
    assert len(step.raised) == 3
    assert info.value is step.raised[-1]  # the original object, not a wrapper
    assert type(info.value) is ConnectionResetError
    note = only_note(info.value)
    assert note["attempts"] == "3"
    assert note["reason"] == "attempts"
    assert note["name"] == "fetch"
    assert notes_of(info.value)[0].startswith("utils.resilience: gave up after 3 attempts over ")
    # Only the exception that propagates gets the note.
    assert all(not getattr(e, "__notes__", None) for e in step.raised[:-1])
    # Every failed attempt logs attempt_failed (the last one with no delay), then gave_up.
    failed = events(utils_logs, "retry.attempt_failed")
    assert [entry["attempt"] for entry in failed] == [1, 2, 3]
    assert [entry["delay"] is None for entry in failed] == [False, False, True]
    assert all(entry["error"] == "ConnectionResetError: boom" for entry in failed)
    assert {entry["log_level"] for entry in failed} == {"warning"}
    assert [entry["event"] for entry in utils_logs][-1] == "retry.gave_up"
    (gave_up,) = events(utils_logs, "retry.gave_up")
    assert gave_up["log_level"] == "warning"
    assert gave_up["reason"] == "attempts"
    assert gave_up["attempts"] == 3
    assert gave_up["retry"] == "fetch"
    assert gave_up["error"] == "ConnectionResetError: boom"
    assert utils_metrics.count("retry.attempt_failed", retry="fetch") == 3
    assert utils_metrics.count("retry.gave_up", retry="fetch", reason="attempts") == 1
    assert len(utils_instant_retries) == 2


def test_note_is_singular_for_one_attempt(utils_instant_retries: list[float]) -> None:
    step = Flaky(TimeoutError)
    with pytest.raises(TimeoutError) as info:
        retry(attempts=1, name="once").call(step)
    assert step.calls == 1
    (note,) = notes_of(info.value)
    assert note.startswith("utils.resilience: gave up after 1 attempt over ")
    assert only_note(info.value)["attempts"] == "1"
    assert utils_instant_retries == []


def test_default_name_is_the_qualified_name_or_the_repr(utils_logs: Logs) -> None:
    def fetch_user() -> None:
        raise ConnectionResetError("reset")

    with instant_retries_cm(), pytest.raises(ConnectionResetError) as info:
        retry(attempts=2)(fetch_user)()
    assert only_note(info.value)["name"].endswith("fetch_user")
    assert events(utils_logs, "retry.gave_up")[0]["retry"].endswith("fetch_user")

    def fail(code: int) -> None:
        raise ConnectionResetError(code)

    with instant_retries_cm(), pytest.raises(ConnectionResetError) as info:
        retry(attempts=2).call(functools.partial(fail, 7))
    assert only_note(info.value)["name"].startswith("functools.partial(")


# --------------------------------------------------------------------------- what is retried


class DriverError(Exception):
    """An exception utils.core knows nothing about."""


def _message_says_retry(error: BaseException) -> bool:
    return "please retry" in str(error)


@pytest.mark.parametrize(
    ("on", "error", "retried"),
    [
        (ConnectionError, ConnectionResetError("x"), True),
        (ConnectionError, ValueError("x"), False),
        ((ValueError, KeyError), KeyError("x"), True),
        ((ValueError, KeyError), TypeError("x"), False),
        (DriverError, DriverError("x"), True),
        (_message_says_retry, RuntimeError("please retry"), True),
        (_message_says_retry, RuntimeError("fatal"), False),
    ],
    ids=["type", "type-miss", "tuple", "tuple-miss", "custom", "predicate", "predicate-miss"],
)
@pytest.mark.parametrize("style", ["call", "acall"])
def test_on_takes_a_type_a_tuple_or_a_predicate(
    style: str, on: Any, error: Exception, retried: bool, utils_instant_retries: list[float]
) -> None:
    step = Flaky(error)
    with pytest.raises(type(error)) as info:
        run(style, retry(attempts=3, on=on), step)
    assert info.value is error
    assert step.calls == (3 if retried else 1)
    assert len(utils_instant_retries) == (2 if retried else 0)
    assert bool(getattr(error, "__notes__", None)) is retried


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (ConnectionResetError("reset"), True),
        (TimeoutError("slow"), True),
        (TransientError("flaky"), True),
        (UnavailableError("down"), True),
        (ThrottledError("slow down"), True),
        (NotFoundError("gone", retryable=True), True),
        (ValueError("bad"), False),
        (NotFoundError("gone"), False),
        (TransientError("flaky", retryable=False), False),
        (DriverError("unknown"), False),
    ],
    ids=repr,
)
def test_default_on_is_utils_core_is_transient(
    error: Exception, retried: bool, utils_instant_retries: list[float]
) -> None:
    step = Flaky(error)
    with pytest.raises(type(error)) as info:
        retry(attempts=3).call(step)
    assert info.value is error
    assert step.calls == (3 if retried else 1)


def test_predicate_receives_the_exception(utils_instant_retries: list[float]) -> None:
    seen: list[BaseException] = []

    def predicate(error: BaseException) -> bool:
        seen.append(error)
        return True

    step = Flaky(DriverError, "ok")
    assert retry(on=predicate).call(step) == "ok"
    assert seen == step.raised


@pytest.mark.parametrize("style", ALL_STYLES)
def test_non_matching_exception_propagates_after_one_call(
    style: str, utils_logs: Logs, utils_metrics: InMemorySink, utils_instant_retries: list[float]
) -> None:
    step = Flaky(ValueError)
    with pytest.raises(ValueError, match="boom") as info:
        run(style, retry(attempts=5), step)
    assert step.calls == 1
    assert info.value is step.raised[0]
    assert not getattr(info.value, "__notes__", None)
    assert utils_logs == []
    assert retry_metrics(utils_metrics) == []


@pytest.mark.parametrize("style", ALL_STYLES)
def test_non_matching_exception_after_a_retry_propagates_at_once(
    style: str, utils_logs: Logs, utils_instant_retries: list[float]
) -> None:
    step = Flaky(ConnectionResetError, ValueError, "never reached")
    with pytest.raises(ValueError, match="boom") as info:
        run(style, retry(attempts=5), step)
    assert step.calls == 2
    assert info.value is step.raised[1]
    assert not getattr(info.value, "__notes__", None)
    assert [e["event"] for e in utils_logs] == ["retry.attempt_failed"]
    assert len(utils_instant_retries) == 1


@pytest.mark.parametrize(
    "error_type", [KeyboardInterrupt, SystemExit, asyncio.CancelledError, GeneratorExit]
)
@pytest.mark.parametrize("style", ALL_STYLES)
def test_base_exceptions_are_never_retried_nor_converted(
    style: str,
    error_type: type[BaseException],
    utils_logs: Logs,
    utils_metrics: InMemorySink,
    utils_instant_retries: list[float],
) -> None:
    # Even a policy told to retry BaseException leaves cancellation and interrupts alone.
    step = Flaky(error_type)
    with pytest.raises(error_type) as info:
        run(style, retry(attempts=5, on=BaseException), step)
    assert type(info.value) is error_type
    assert info.value is step.raised[0]
    assert step.calls == 1
    assert not getattr(info.value, "__notes__", None)
    assert utils_logs == []
    assert retry_metrics(utils_metrics) == []


@pytest.mark.parametrize("error_type", [KeyboardInterrupt, asyncio.CancelledError])
@pytest.mark.parametrize("style", ALL_STYLES)
def test_base_exception_during_the_retries_propagates_at_once(
    style: str, error_type: type[BaseException], utils_instant_retries: list[float]
) -> None:
    step = Flaky(ConnectionResetError, error_type, "never reached")
    with pytest.raises(error_type) as info:
        run(style, retry(attempts=5), step)
    assert info.value is step.raised[1]
    assert step.calls == 2
    assert not getattr(info.value, "__notes__", None)
    assert len(utils_instant_retries) == 1


# --------------------------------------------------------------------------- on_result


@pytest.mark.parametrize("style", RESULT_STYLES)
def test_on_result_retries_until_the_result_is_good(
    style: str, utils_instant_retries: list[float]
) -> None:
    step = Flaky(None, None, "ready")
    assert run(style, retry(attempts=5, on_result=lambda r: r is None), step) == "ready"
    assert step.calls == 3
    assert len(utils_instant_retries) == 2


@pytest.mark.parametrize("style", RESULT_STYLES)
def test_on_result_returns_the_last_result_when_exhausted(
    style: str, utils_logs: Logs, utils_metrics: InMemorySink, utils_instant_retries: list[float]
) -> None:
    step = Flaky("pending")
    result = run(style, retry(attempts=3, on_result=lambda r: r == "pending", name="poll"), step)
    assert result == "pending"
    assert step.calls == 3
    failed = events(utils_logs, "retry.attempt_failed")
    assert [entry["attempt"] for entry in failed] == [1, 2, 3]
    assert [entry["result"] for entry in failed[:2]] == ["'pending'", "'pending'"]
    assert [entry["error"] for entry in failed] == [None, None, None]
    (gave_up,) = events(utils_logs, "retry.gave_up")
    assert gave_up["reason"] == "attempts"
    assert gave_up["error"] is None
    assert utils_metrics.count("retry.gave_up", retry="poll", reason="attempts") == 1


def test_last_attempt_failed_log_shows_the_rejected_result(utils_logs: Logs) -> None:
    with instant_retries_cm():
        retry(attempts=2, on_result=lambda r: r == "pending").call(Flaky("pending"))
    failed = events(utils_logs, "retry.attempt_failed")
    assert [entry["result"] for entry in failed] == ["'pending'", "'pending'"]


def test_on_result_and_exceptions_mix(utils_instant_retries: list[float]) -> None:
    step = Flaky(None, ConnectionResetError, None, "done")
    assert retry(attempts=4, on_result=lambda r: r is None).call(step) == "done"
    assert step.calls == 4

    async def main() -> Any:
        astep = Flaky(ConnectionResetError, None, ConnectionResetError, "done")

        async def operation() -> Any:
            return astep()

        return await retry(attempts=4, on_result=lambda r: r is None).acall(operation)

    assert asyncio.run(main()) == "done"


# --------------------------------------------------------------------------- backoff


@pytest.mark.parametrize("style", ["call", "acall", "block", "async for"])
def test_exponential_delays_without_jitter(style: str, utils_instant_retries: list[float]) -> None:
    step = Flaky(ConnectionResetError)
    with pytest.raises(ConnectionResetError):
        run(style, retry(attempts=6, jitter="none", initial=0.1, multiplier=2.0), step)
    assert utils_instant_retries == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6])


def test_delays_are_capped_by_maximum(utils_instant_retries: list[float]) -> None:
    step = Flaky(ConnectionResetError)
    with pytest.raises(ConnectionResetError):
        retry(attempts=7, jitter="none", initial=0.1, maximum=0.5).call(step)
    assert utils_instant_retries == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5, 0.5])


def test_full_jitter_stays_within_zero_and_the_capped_delay(
    utils_instant_retries: list[float],
) -> None:
    for _ in range(20):
        utils_instant_retries.clear()
        with pytest.raises(ConnectionResetError):
            retry(attempts=8, jitter="full", initial=0.1, maximum=1.0).call(
                Flaky(ConnectionResetError)
            )
        caps = [min(1.0, 0.1 * 2**n) for n in range(7)]
        assert len(utils_instant_retries) == 7
        assert all(0.0 <= d <= cap for d, cap in zip(utils_instant_retries, caps, strict=True))


def test_equal_and_decorrelated_jitter_bounds(utils_instant_retries: list[float]) -> None:
    with pytest.raises(ConnectionResetError):
        retry(attempts=8, jitter="equal", initial=0.1, maximum=1.0).call(
            Flaky(ConnectionResetError)
        )
    caps = [min(1.0, 0.1 * 2**n) for n in range(7)]
    assert all(cap / 2 <= d <= cap for d, cap in zip(utils_instant_retries, caps, strict=True))
    utils_instant_retries.clear()
    with pytest.raises(ConnectionResetError):
        retry(attempts=8, jitter="decorrelated", initial=0.1, maximum=1.0).call(
            Flaky(ConnectionResetError)
        )
    assert len(utils_instant_retries) == 7
    assert all(0.1 <= d <= 1.0 for d in utils_instant_retries)


# --------------------------------------------------------------------------- retry_after


@pytest.mark.parametrize("style", ALL_STYLES)
def test_retry_after_longer_than_the_backoff_is_honoured_without_jitter(
    style: str, utils_instant_retries: list[float]
) -> None:
    step = Flaky(ThrottledError("x", retry_after=5), RateLimitExceeded("y", retry_after=2.5), "ok")
    assert run(style, retry(attempts=3, jitter="full", initial=0.1), step) == "ok"
    assert utils_instant_retries == [5.0, 2.5]  # exactly, never shortened by jitter


def test_retry_after_shorter_than_the_backoff_changes_nothing(
    utils_instant_retries: list[float],
) -> None:
    step = Flaky(ThrottledError("x", retry_after=0.5), "ok")
    assert retry(jitter="none", initial=2.0).call(step) == "ok"
    assert utils_instant_retries == [2.0]


def test_retry_after_is_read_from_any_exception(utils_instant_retries: list[float]) -> None:
    class Busy(ConnectionError):
        def __init__(self, retry_after: Any) -> None:
            super().__init__("busy")
            self.retry_after = retry_after

    step = Flaky(Busy(3), Busy(None), Busy("soon"), "ok")
    assert retry(attempts=4, jitter="none", initial=0.1).call(step) == "ok"
    assert utils_instant_retries == pytest.approx([3.0, 0.2, 0.4])


@pytest.mark.parametrize("style", ALL_STYLES)
def test_retry_after_above_max_retry_after_gives_up_at_once(
    style: str, utils_logs: Logs, utils_metrics: InMemorySink, utils_instant_retries: list[float]
) -> None:
    error = ThrottledError("come back tomorrow", retry_after=86400)
    step = Flaky(error, "never reached")
    with pytest.raises(ThrottledError) as info:
        run(style, retry(attempts=5, max_retry_after=60, name="api"), step)
    assert info.value is error
    assert step.calls == 1
    assert utils_instant_retries == []
    assert only_note(error)["reason"] == "retry_after"
    assert events(utils_logs, "retry.gave_up")[0]["reason"] == "retry_after"
    assert utils_metrics.count("retry.gave_up", retry="api", reason="retry_after") == 1


# --------------------------------------------------------------------------- timeout=


@pytest.mark.parametrize("style", ALL_STYLES)
def test_timeout_never_sleeps_past_it(style: str, clock: FakeClock, utils_logs: Logs) -> None:
    started = clock.now
    step = Flaky(ConnectionResetError, on_call=lambda: clock.advance(1.0))
    policy = retry(attempts=None, timeout=5, initial=0.5, multiplier=1.0, jitter="none")
    with pytest.raises(ConnectionResetError) as info:
        run(style, policy, step)
    # Calls end at 1, 2.5, 4 and 5.5 s; the wait after the fourth would end past 5 s.
    assert step.calls == 4
    assert clock.sleep_ends == [started + 1.5, started + 3.0, started + 4.5]
    assert all(end < started + 5 for end in clock.sleep_ends)
    note = only_note(info.value)
    assert note["reason"] == "timeout"
    assert note["attempts"] == "4"
    assert note["elapsed"] == "5.500"
    (gave_up,) = events(utils_logs, "retry.gave_up")
    assert gave_up["reason"] == "timeout"
    assert gave_up["elapsed"] == 5.5


def test_attempts_still_apply_with_a_timeout(clock: FakeClock) -> None:
    step = Flaky(ConnectionResetError)
    with pytest.raises(ConnectionResetError) as info:
        retry(attempts=2, timeout=100, jitter="none").call(step)
    assert step.calls == 2
    assert only_note(info.value)["reason"] == "attempts"


def test_elapsed_is_measured_on_the_injected_clock(clock: FakeClock) -> None:
    step = Flaky(ConnectionResetError, on_call=lambda: clock.advance(0.25))
    with pytest.raises(ConnectionResetError) as info:
        retry(attempts=3, jitter="none", initial=1.0).call(step)
    # 3 calls of 0.25 s and waits of 1 and 2 s.
    assert only_note(info.value)["elapsed"] == "3.750"
    assert clock.slept == [1.0, 2.0]


# --------------------------------------------------------------------------- deadlines


@pytest.mark.parametrize("style", ALL_STYLES)
def test_expired_deadline_prevents_the_first_attempt(
    style: str, utils_logs: Logs, utils_instant_retries: list[float]
) -> None:
    step = Flaky("never")
    with deadline(0), pytest.raises(OperationTimeoutError, match="the first attempt"):
        run(style, retry(), step)
    assert step.calls == 0
    assert utils_logs == []


@pytest.mark.parametrize("style", ["decorator", "call", "acall"])
def test_expired_deadline_prevents_the_first_attempt_with_an_injected_clock(
    style: str, clock: FakeClock
) -> None:
    clock.now = 0.0  # an injected clock need not share time.monotonic's origin
    step = Flaky(ConnectionResetError)
    with deadline(0), pytest.raises(OperationTimeoutError):
        run(style, retry(), step)
    assert step.calls == 0


@pytest.mark.parametrize("style", ALL_STYLES)
def test_retry_gives_up_rather_than_sleep_past_the_deadline(
    style: str, utils_logs: Logs, utils_metrics: InMemorySink, utils_instant_retries: list[float]
) -> None:
    step = Flaky(ConnectionResetError)
    with deadline(30), pytest.raises(ConnectionResetError) as info:
        run(style, retry(attempts=5, initial=60, maximum=60, jitter="none", name="q"), step)
    assert step.calls == 1
    assert utils_instant_retries == []
    assert only_note(info.value)["reason"] == "deadline"
    assert events(utils_logs, "retry.gave_up")[0]["reason"] == "deadline"
    assert utils_metrics.count("retry.gave_up", retry="q", reason="deadline") == 1


def test_waits_that_fit_in_the_deadline_are_taken(utils_instant_retries: list[float]) -> None:
    step = Flaky(ConnectionResetError, ConnectionResetError, "ok")
    with deadline(30):
        assert retry(jitter="none", initial=1.0).call(step) == "ok"
    assert utils_instant_retries == [1.0, 2.0]


# --------------------------------------------------------------------------- budgets


@pytest.mark.parametrize("style", ALL_STYLES)
def test_budget_shared_by_two_policies(
    style: str, clock: FakeClock, utils_logs: Logs, utils_metrics: InMemorySink
) -> None:
    # ratio 0 and a floor of 0.1/s over 10 s: exactly one retry in the whole window.
    budget = RetryBudget(ratio=0.0, min_per_second=0.1, window=10)
    first = retry(attempts=5, budget=budget, name="first")
    second = retry(attempts=5, budget=budget, name="second")

    step = Flaky(ConnectionResetError)
    with pytest.raises(ConnectionResetError) as info:
        run(style, first, step)
    assert step.calls == 2  # one retry, then the budget is spent
    assert only_note(info.value)["reason"] == "budget"

    step = Flaky(ConnectionResetError)
    with pytest.raises(ConnectionResetError) as info:
        run(style, second, step)
    assert step.calls == 1  # no retry at all: the original error at once
    assert info.value is step.raised[0]
    assert only_note(info.value)["reason"] == "budget"
    assert utils_metrics.count("retry.gave_up", reason="budget") == 2
    assert [e["retry"] for e in events(utils_logs, "retry.gave_up")] == ["first", "second"]


@pytest.mark.parametrize("style", ALL_STYLES)
def test_every_call_counts_as_a_request_for_the_budget(style: str, clock: FakeClock) -> None:
    budget = RetryBudget(ratio=0.5, min_per_second=0, window=10)
    policy = retry(attempts=10, budget=budget)
    for _ in range(3):
        assert run(style, policy, Flaky("ok")) == "ok"
    # 4 requests in the window (3 + the failing one) at 50%: two retries.
    step = Flaky(ConnectionResetError)
    with pytest.raises(ConnectionResetError):
        run(style, policy, step)
    assert step.calls == 3


def test_budget_refills_as_the_window_slides(clock: FakeClock) -> None:
    budget = RetryBudget(ratio=0.0, min_per_second=0.1, window=10)
    policy = retry(attempts=5, budget=budget, jitter="none", initial=0.1)
    step = Flaky(ConnectionResetError)
    with pytest.raises(ConnectionResetError):
        policy.call(step)
    assert step.calls == 2
    clock.advance(10)
    step = Flaky(ConnectionResetError)
    with pytest.raises(ConnectionResetError):
        policy.call(step)
    assert step.calls == 2


# --------------------------------------------------------------------------- before_sleep


def test_before_sleep_gets_the_retry_state(clock: FakeClock) -> None:
    states: list[RetryState] = []
    step = Flaky(
        ConnectionResetError, ConnectionResetError, "ok", on_call=lambda: clock.advance(0.25)
    )
    policy = retry(jitter="none", initial=0.1, before_sleep=states.append, name="fetch")
    assert policy.call(step) == "ok"
    assert [(s.name, s.attempt, s.error, s.result) for s in states] == [
        ("fetch", 1, step.raised[0], None),
        ("fetch", 2, step.raised[1], None),
    ]
    assert [s.delay for s in states] == pytest.approx([0.1, 0.2])
    assert [s.elapsed for s in states] == pytest.approx([0.25, 0.6])  # calls + waits so far
    assert clock.slept == [s.delay for s in states]


def test_before_sleep_sees_results_asked_to_be_retried(utils_instant_retries: list[float]) -> None:
    states: list[RetryState] = []

    def check() -> int:
        return len(states)

    policy = retry(attempts=3, on_result=lambda r: r < 2, before_sleep=states.append)
    assert policy.call(check) == 2
    assert [(s.attempt, s.error, s.result) for s in states] == [(1, None, 0), (2, None, 1)]
    assert states[0].name.endswith("check")
    assert [s.delay for s in states] == utils_instant_retries


def test_attempt_failed_log_fields(clock: FakeClock, utils_logs: Logs) -> None:
    step = Flaky(ConnectionResetError("peer reset"), "ok", on_call=lambda: clock.advance(0.5))
    retry(jitter="none", initial=0.3, name="fetch").call(step)
    (failed,) = utils_logs
    assert failed["event"] == "retry.attempt_failed"
    assert failed["log_level"] == "warning"
    assert failed["logger"] == "utils.resilience.retry"
    assert failed["retry"] == "fetch"
    assert failed["attempt"] == 1
    assert failed["delay"] == 0.3
    assert failed["elapsed"] == 0.5
    assert failed["error"] == "ConnectionResetError: peer reset"
    assert failed["result"] is None


# --------------------------------------------------------------------------- sharing


def test_one_policy_shared_by_eight_threads(utils_instant_retries: list[float]) -> None:
    # tenacity#93: the per-call state must not live on the policy object.
    policy = retry(attempts=10, jitter="none", initial=0.01)
    barrier = threading.Barrier(8)
    calls = [0] * 8
    results: list[Any] = [None] * 8
    errors: list[BaseException] = []

    @policy
    def work(index: int) -> int:
        calls[index] += 1
        if calls[index] == 1:
            barrier.wait(timeout=10)  # everyone is inside a call at the same time
        if calls[index] <= index:
            raise ConnectionResetError(f"thread {index}")
        return index * 100

    def target(index: int) -> None:
        try:
            results[index] = work(index)
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=target, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert results == [i * 100 for i in range(8)]
    assert calls == [i + 1 for i in range(8)]
    assert len(utils_instant_retries) == sum(range(8))


@pytest.mark.parametrize("style", ["async decorator", "acall", "async for"])
def test_one_policy_shared_by_concurrent_tasks(
    style: str, utils_instant_retries: list[float]
) -> None:
    policy = retry(attempts=10, jitter="none", initial=0.01)
    calls = [0] * 8

    async def work(index: int) -> int:
        calls[index] += 1
        await asyncio.sleep(0)  # let the other tasks interleave
        if calls[index] <= index:
            raise ConnectionResetError(f"task {index}")
        return index * 100

    async def one(index: int) -> int:
        if style == "async decorator":
            result: int = await policy(work)(index)
            return result
        if style == "acall":
            return await policy.acall(work, index)
        async for attempt in policy:
            with attempt:
                return await work(index)
        raise AssertionError("unreachable")

    async def main() -> list[int]:
        return list(await asyncio.gather(*(one(i) for i in range(8))))

    assert asyncio.run(main()) == [i * 100 for i in range(8)]
    assert calls == [i + 1 for i in range(8)]
    assert len(utils_instant_retries) == sum(range(8))


# --------------------------------------------------------------------------- block form


def test_block_form_success_runs_once() -> None:
    numbers = []
    for attempt in retry(attempts=3):
        with attempt:
            numbers.append(attempt.number)
    assert numbers == [1]


def test_block_form_retries_and_numbers_attempts(utils_instant_retries: list[float]) -> None:
    numbers = []
    for attempt in retry(attempts=5, jitter="none"):
        assert isinstance(attempt, Attempt)
        with attempt:
            numbers.append(attempt.number)
            if attempt.number < 3:
                raise ConnectionResetError(attempt.number)
        if attempt.number < 3:
            assert isinstance(attempt.error, ConnectionResetError)
        else:
            assert attempt.error is None
    assert numbers == [1, 2, 3]
    assert utils_instant_retries == pytest.approx([0.1, 0.2])


def test_block_form_gives_up_from_the_for_statement(utils_instant_retries: list[float]) -> None:
    raised: list[BaseException] = []
    swallowed: list[int] = []

    def block() -> None:
        for attempt in retry(attempts=3):
            with attempt:
                raised.append(ConnectionResetError(attempt.number))
                raise raised[-1]
            swallowed.append(attempt.number)  # the with block swallowed every failure

    with pytest.raises(ConnectionResetError) as info:
        block()
    assert swallowed == [1, 2, 3]
    assert info.value is raised[-1]
    assert only_note(info.value)["name"] == "retry block"


def test_block_form_non_retryable_propagates_from_the_with_block() -> None:
    attempts = []

    def block() -> None:
        for attempt in retry(attempts=3):
            attempts.append(attempt)
            with attempt:
                raise ValueError("bad")

    with pytest.raises(ValueError, match="bad"):
        block()
    assert len(attempts) == 1
    assert attempts[0].error is None


def test_async_for_block_form(utils_instant_retries: list[float]) -> None:
    async def main() -> list[int]:
        numbers = []
        async for attempt in retry(attempts=4, jitter="none"):
            with attempt:
                numbers.append(attempt.number)
                await asyncio.sleep(0)
                if attempt.number < 3:
                    raise TimeoutError
        return numbers

    assert asyncio.run(main()) == [1, 2, 3]
    assert utils_instant_retries == pytest.approx([0.1, 0.2])

    async def give_up() -> None:
        async for attempt in retry(attempts=2):
            with attempt:
                raise TimeoutError(attempt.number)

    with pytest.raises(TimeoutError) as info:
        asyncio.run(give_up())
    assert info.value.args == (2,)
    assert only_note(info.value)["reason"] == "attempts"


def test_attempt_exit_without_error_is_a_no_op() -> None:
    attempt = Attempt(retry(), 1)
    assert attempt.__exit__(None, None, None) is False
    assert attempt.error is None


# --------------------------------------------------------------------------- decorating


def test_decorating_a_generator_function_is_a_type_error() -> None:
    def numbers() -> Iterator[int]:
        yield 1

    async def anumbers() -> AsyncIterator[int]:
        yield 1

    with pytest.raises(TypeError, match=r"generator function 'test_decorating.*numbers'"):
        retry()(numbers)
    with pytest.raises(TypeError, match="generator function"):
        retry()(anumbers)


def test_wraps_keeps_the_function_identity() -> None:
    def fetch(user_id: int, *, verbose: bool = False) -> str:
        """Fetch a user."""
        return f"user {user_id}"

    async def afetch(user_id: int) -> str:
        """Fetch a user, asynchronously."""
        return f"user {user_id}"

    wrapped = retry()(fetch)
    assert wrapped.__wrapped__ is fetch  # type: ignore[attr-defined]
    assert wrapped.__name__ == "fetch"
    assert wrapped.__qualname__ == fetch.__qualname__
    assert wrapped.__doc__ == "Fetch a user."
    assert inspect.signature(wrapped) == inspect.signature(fetch)
    assert wrapped(7) == "user 7"

    awrapped = retry()(afetch)
    assert awrapped.__wrapped__ is afetch  # type: ignore[attr-defined]
    assert awrapped.__name__ == "afetch"
    assert inspect.iscoroutinefunction(awrapped)
    assert asyncio.run(awrapped(8)) == "user 8"


def test_call_passes_arguments_through(utils_instant_retries: list[float]) -> None:
    def add(a: int, b: int, *, c: int = 0) -> int:
        return a + b + c

    async def aadd(a: int, b: int, *, c: int = 0) -> int:
        return a + b + c

    policy = retry()
    assert policy.call(add, 1, 2, c=3) == 6
    assert policy(add)(1, 2, c=4) == 7
    assert asyncio.run(policy.acall(aadd, 1, 2, c=5)) == 8
    assert asyncio.run(policy(aadd)(1, 2, c=6)) == 9


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"attempts": 0}, "attempts must be an int > 0"),
        ({"attempts": -2}, "attempts must be an int > 0"),
        ({"attempts": 2.5}, "attempts must be an int > 0"),
        ({"attempts": "3"}, "attempts must be an int > 0"),
        ({"timeout": 0}, "timeout must be seconds > 0"),
        ({"timeout": -1}, "timeout must be seconds > 0"),
        ({"timeout": math.nan}, "timeout must be seconds > 0"),
        ({"attempts": None}, "attempts=None retries forever: give a finite timeout"),
        ({"max_retry_after": -1}, "max_retry_after must be seconds >= 0"),
        ({"on": "x"}, "retry\\(on=...\\) takes an exception type"),
        ({"on": [ValueError]}, "retry\\(on=...\\) takes an exception type"),
        ({"on": (ValueError, "x")}, "tuple must hold exception types"),
        ({"initial": -1}, "initial must be a finite number >= 0"),
        ({"maximum": 0.01}, "maximum must be finite, at most 315360000 s and >= initial"),
        ({"multiplier": 0.5}, "multiplier must be a finite number >= 1"),
        ({"jitter": "random"}, "jitter must be one of full, equal, decorrelated, none"),
    ],
    ids=repr,
)
def test_invalid_arguments_are_validation_errors(kwargs: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        retry(**kwargs)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ValidationError) as info:
        retry(attempts=0, timeout=-1, max_retry_after=-5)
    message = str(info.value)
    assert message.startswith("invalid retry policy: ")
    assert "attempts must be" in message
    assert "timeout must be" in message
    assert "max_retry_after must be" in message


def test_attempts_none_with_a_timeout_is_valid() -> None:
    policy = retry(attempts=None, timeout=30)
    assert policy.attempts is None
    assert policy.timeout == 30


def test_on_with_a_class_that_is_not_an_exception_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"retry\(on=...\)"):
        retry(on=str)  # type: ignore[arg-type]


def test_repr_and_description() -> None:
    budget = RetryBudget()
    policy = retry(attempts=4, timeout=9, jitter="none", budget=budget)
    assert repr(policy) == (
        "Retry(attempts=4, timeout=9.0, backoff=Backoff(initial=0.1, maximum=10.0, "
        f"multiplier=2.0, jitter='none'), budget={budget!r})"
    )
    assert policy._describe() == "retry()"


def test_policy_is_reusable_and_state_free(utils_instant_retries: list[float]) -> None:
    policy = retry(attempts=3, jitter="none")
    before = repr(policy)
    for _ in range(3):
        step = Flaky(ConnectionResetError, "ok")
        assert policy.call(step) == "ok"
        assert step.calls == 2
    assert repr(policy) == before
    assert utils_instant_retries == pytest.approx([0.1, 0.1, 0.1])


def test_remaining_is_untouched_by_retry() -> None:
    assert retry().call(remaining) is None


def _coroutine_function() -> Callable[[], Coroutine[Any, Any, int]]:
    async def value() -> int:
        return 1

    return value


def test_decorated_async_function_returns_a_coroutine() -> None:
    decorated = retry()(_coroutine_function())
    coroutine = decorated()
    assert inspect.iscoroutine(coroutine)
    assert asyncio.run(coroutine) == 1


# --------------------------------------------------------------------------- utils_instant_retries


def test_instant_retries_records_and_restores_even_on_error() -> None:
    real = (_timing.clock, _timing.sleep, _timing.asleep)
    captured: list[list[float]] = []

    async def asleep() -> None:
        await _timing.asleep(4)

    def block() -> None:
        with instant_retries_cm() as delays:
            captured.append(delays)
            before = _timing.clock()
            _timing.sleep(3)
            asyncio.run(asleep())
            # Virtual time: the strategies' clock moved on by the skipped delays.
            assert _timing.clock() - before >= 7
            raise RuntimeError("inside")

    with pytest.raises(RuntimeError, match="inside"):
        block()
    assert captured == [[3, 4]]
    assert (_timing.clock, _timing.sleep, _timing.asleep) == real


def test_instant_retries_fixture_is_active(utils_instant_retries: list[float]) -> None:
    _timing.sleep(60)
    assert utils_instant_retries == [60]


def test_the_old_fixture_name_still_works_with_a_deprecation_warning(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import pytest
        from utils.resilience import retry

        def test_old(instant_retries):
            calls = []
            def flaky():
                calls.append(1)
                if len(calls) < 2:
                    raise TimeoutError
                return "ok"
            assert retry(attempts=2, jitter="none").call(flaky) == "ok"
            assert instant_retries == [0.1]

        def test_new(utils_instant_retries):
            assert utils_instant_retries == []
        """
    )
    result = pytester.runpytest_subprocess("-W", "default")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*'instant_retries' is deprecated: use 'utils_instant_retries'*"])
