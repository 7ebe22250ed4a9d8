"""utils.core.deprecated: warnings point at the caller, docstrings say it, behaviour is kept."""

from __future__ import annotations

import asyncio
import inspect
import warnings

import pytest

from utils.core import deprecated


def _caught(
    fn: object, *args: object, **kwargs: object
) -> tuple[object, list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fn(*args, **kwargs)  # type: ignore[operator]
    return result, caught


def test_a_function_warns_at_the_callers_line_and_still_works() -> None:
    @deprecated(since="0.2.0", removed_in="1.0.0", instead="new()")
    def old(x: int) -> int:
        """Double ``x``."""
        return 2 * x

    result, caught = _caught(old, 21)
    assert result == 42
    assert len(caught) == 1
    warning = caught[0]
    assert warning.category is DeprecationWarning
    assert str(warning.message) == (
        "test_a_function_warns_at_the_callers_line_and_still_works.<locals>.old() is "
        "deprecated since 0.2.0 and will be removed in 1.0.0; use new() instead."
    )
    assert warning.filename == __file__  # the caller (here: _caught), not deprecation.py
    assert old.__name__ == "old"
    assert old.__doc__ is not None
    assert old.__doc__.startswith("Double ``x``.")
    assert ".. deprecated:: 0.2.0" in old.__doc__


def test_without_instead_the_message_ends_plainly() -> None:
    @deprecated(since="0.2.0", removed_in="1.0.0", name="gone")
    def gone() -> None:
        pass

    _, caught = _caught(gone)
    assert (
        str(caught[0].message) == "gone() is deprecated since 0.2.0 and will be removed in 1.0.0."
    )
    assert gone.__doc__ is not None
    assert gone.__doc__.startswith(".. deprecated:: 0.2.0")


def test_an_alias_of_a_method_keeps_its_own_name_and_binds_self() -> None:
    class Breaker:
        def force_close(self) -> str:
            """Close the circuit."""
            return "closed"

        close_circuit = deprecated(
            since="0.2.0", removed_in="1.0.0", instead="force_close()", name="close_circuit"
        )(force_close)

    result, caught = _caught(Breaker().close_circuit)
    assert result == "closed"
    assert Breaker.close_circuit.__name__ == "close_circuit"
    assert str(caught[0].message).startswith("close_circuit() is deprecated since 0.2.0")


def test_an_async_function_stays_a_coroutine_function() -> None:
    @deprecated(since="0.2.0", removed_in="1.0.0", instead="anew()")
    async def aold() -> int:
        return 7

    assert inspect.iscoroutinefunction(aold)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert asyncio.run(aold()) == 7
    assert [w.category for w in caught] == [DeprecationWarning]


def test_a_keyword_warns_only_when_passed_and_is_renamed() -> None:
    @deprecated(since="0.2.0", removed_in="1.0.0", instead="timeout", keyword="wait")
    def acquire(
        *, timeout: float | None = None, wait: float | None = None
    ) -> tuple[object, object]:
        return timeout, wait

    result, caught = _caught(acquire, timeout=1.0)
    assert result == (1.0, None)
    assert caught == []
    result, caught = _caught(acquire, wait=2.0)
    assert result == (2.0, None)  # handed over under the new name
    assert "acquire(wait=...) is deprecated" in str(caught[0].message)
    result, caught = _caught(acquire, wait=2.0, timeout=3.0)  # both: the new one wins
    assert result == (3.0, 2.0)
    assert len(caught) == 1


def test_a_keyword_without_a_replacement_parameter_is_passed_through() -> None:
    @deprecated(since="0.2.0", removed_in="1.0.0", instead="a deadline()", keyword="budget")
    def run(*, budget: float = 0.0) -> float:
        return budget

    result, caught = _caught(run, budget=5.0)
    assert result == 5.0
    assert len(caught) == 1


def test_a_class_warns_on_instantiation_but_not_for_subclasses() -> None:
    @deprecated(since="0.2.0", removed_in="1.0.0", instead="NewStore")
    class OldStore:
        """A store."""

        def __init__(self, size: int) -> None:
            self.size = size

    class Child(OldStore):
        pass

    store, caught = _caught(OldStore, 3)
    assert isinstance(store, OldStore)
    assert store.size == 3
    assert "OldStore is deprecated since 0.2.0" in str(caught[0].message)
    _, caught = _caught(Child, 1)
    assert caught == []
    assert OldStore.__doc__ is not None
    assert ".. deprecated:: 0.2.0" in OldStore.__doc__


def test_warnings_as_errors_name_the_call() -> None:
    @deprecated(since="0.2.0", removed_in="1.0.0")
    def old() -> None:
        pass

    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        with pytest.raises(DeprecationWarning, match=r"old\(\) is deprecated"):
            old()
