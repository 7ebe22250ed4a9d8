"""Deprecating a public name the same way everywhere in the family.

``@deprecated(since=..., removed_in=..., instead=...)`` marks a function, method, class or
keyword argument. Using it emits a :class:`DeprecationWarning` that points at the *caller's*
line (so ``python -W error::DeprecationWarning`` and pytest's warning filters name the code to
change), and the docstring gains a ``.. deprecated::`` note, so the API reference says it too.
The policy (docs/deprecations.md): a deprecated name lives for at least one minor release and
is removed only in a major one.

Example:
    >>> import warnings
    >>> @deprecated(since="0.2.0", removed_in="1.0.0", instead="fetch_required()")
    ... def fetch_or_fail(key: str) -> str:
    ...     return key
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     _ = fetch_or_fail("k")
    >>> print(caught[0].message)
    fetch_or_fail() is deprecated since 0.2.0 and will be removed in 1.0.0; use fetch_required() instead.
"""

from __future__ import annotations

import functools
import inspect
import warnings
from collections.abc import Callable
from typing import Any, TypeVar, cast

__all__ = ["deprecated"]

F = TypeVar("F", bound=Callable[..., Any])


def _message(what: str, since: str, removed_in: str, instead: str | None) -> str:
    text = f"{what} is deprecated since {since} and will be removed in {removed_in}"
    return f"{text}; use {instead} instead." if instead else f"{text}."


def _note(doc: str | None, since: str, message: str) -> str:
    # A reST directive Sphinx renders; indented like the rest of an inspect.cleandoc'd text.
    note = f".. deprecated:: {since}\n   {message}"
    return f"{inspect.cleandoc(doc)}\n\n{note}\n" if doc else f"{note}\n"


def deprecated(
    *,
    since: str,
    removed_in: str,
    instead: str | None = None,
    keyword: str | None = None,
    name: str | None = None,
) -> Callable[[F], F]:
    """Mark a function, method, class or keyword argument as deprecated.

    Args:
        since: The release that deprecated it.
        removed_in: The (major) release that will remove it.
        instead: What to use instead, as the user would write it (``"force_close()"``).
        keyword: Deprecate only this keyword argument of the decorated callable: the
            warning fires when a caller passes it. When ``instead`` is the name of another
            parameter of the callable and the caller did not pass that one, the value is
            handed over under the new name.
        name: The deprecated name, when it differs from the object's own — for an alias
            such as ``aclose = deprecated(..., name="aclose")(aforce_close)``.

    Example:
        >>> import warnings
        >>> @deprecated(since="0.2.0", removed_in="1.0.0", instead="timeout", keyword="wait")
        ... def acquire(*, timeout: float | None = None, wait: float | None = None) -> float:
        ...     return timeout or 0.0
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     acquire(wait=2.0)
        2.0
        >>> "acquire(wait=...) is deprecated" in str(caught[0].message)
        True
    """

    def decorate(obj: F) -> F:
        label = name or getattr(obj, "__qualname__", None) or repr(obj)
        if isinstance(obj, type):
            return cast("F", _deprecate_class(obj, label, since, removed_in, instead))
        if keyword is not None:
            return _deprecate_keyword(obj, keyword, label, since, removed_in, instead)
        message = _message(f"{label}()", since, removed_in, instead)
        wrapper = _warning_wrapper(obj, lambda _args, _kwargs: message)
        if name is not None:
            wrapper.__name__ = wrapper.__qualname__ = name
        wrapper.__doc__ = _note(obj.__doc__, since, message)
        return cast("F", wrapper)

    return decorate


def _warning_wrapper(
    fn: Callable[..., Any], check: Callable[[tuple[Any, ...], dict[str, Any]], str | None]
) -> Callable[..., Any]:
    """Wrap ``fn`` (sync or async) to warn with ``check(args, kwargs)``'s message, if any."""
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            message = check(args, kwargs)
            if message is not None:
                warnings.warn(message, DeprecationWarning, stacklevel=2)
            return await fn(*args, **kwargs)

        return async_wrapper

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        message = check(args, kwargs)
        if message is not None:
            warnings.warn(message, DeprecationWarning, stacklevel=2)
        return fn(*args, **kwargs)

    return wrapper


def _deprecate_keyword(
    fn: F, keyword: str, label: str, since: str, removed_in: str, instead: str | None
) -> F:
    message = _message(f"{label}({keyword}=...)", since, removed_in, instead)
    parameters = inspect.signature(fn).parameters
    rename = instead if instead in parameters and instead != keyword else None

    def check(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
        if keyword not in kwargs:
            return None
        if rename is not None and rename not in kwargs:
            kwargs[rename] = kwargs.pop(keyword)
        return message

    wrapper = _warning_wrapper(fn, check)
    wrapper.__doc__ = _note(fn.__doc__, since, message)
    return cast("F", wrapper)


def _deprecate_class(
    cls: type, label: str, since: str, removed_in: str, instead: str | None
) -> type:
    message = _message(label, since, removed_in, instead)
    original_init: Callable[..., None] = getattr(cls, "__init__")  # noqa: B009 - mypy

    @functools.wraps(original_init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:  # noqa: N807 - replaces __init__
        if type(self) is cls:  # subclasses deprecate themselves if they mean to
            warnings.warn(message, DeprecationWarning, stacklevel=2)
        original_init(self, *args, **kwargs)

    cls.__init__ = __init__  # type: ignore[misc]
    cls.__doc__ = _note(cls.__doc__, since, message)
    return cls
