"""Request-scoped context that follows ``await`` and can be carried into threads.

Everything bound with :func:`bind_context` is merged into every log event emitted inside the
block, by ``utils`` loggers and by any structlog logger configured through
:func:`~utils.core.configure_logging`. The same context-variable machinery carries the
:func:`~utils.core.deadline`.

Example:
    >>> from utils.core import bind_context, get_context
    >>> with bind_context(request_id="r-1"):
    ...     get_context()
    {'request_id': 'r-1'}
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

import structlog

__all__ = ["bind_context", "get_context", "run_in_thread", "with_current_context"]

P = ParamSpec("P")
R = TypeVar("R")


@contextmanager
def bind_context(**values: Any) -> Iterator[None]:
    """Add ``values`` to the log context for the duration of the block.

    Inner blocks may override keys; leaving a block restores exactly what was there before.

    Example:
        >>> with bind_context(request_id="r-1"):
        ...     with bind_context(user="ann"):
        ...         sorted(get_context())
        ['request_id', 'user']
    """
    with structlog.contextvars.bound_contextvars(**values):
        yield


def get_context() -> dict[str, Any]:
    """Return a copy of the values currently bound with :func:`bind_context`.

    Example:
        >>> get_context()
        {}
    """
    return structlog.contextvars.get_contextvars()


def with_current_context(fn: Callable[P, R]) -> Callable[P, R]:
    """Wrap ``fn`` so it runs in a copy of the *caller's* context, wherever it is called.

    Threads and executors do not inherit context variables; wrap the target to carry the log
    context and the deadline across. Each call runs in its own fresh copy, so the wrapper can
    be used by many threads at once.

    Example:
        >>> import threading
        >>> seen = []
        >>> with bind_context(request_id="r-7"):
        ...     worker = threading.Thread(
        ...         target=with_current_context(lambda: seen.append(get_context()))
        ...     )
        >>> worker.start()
        >>> worker.join()
        >>> seen
        [{'request_id': 'r-7'}]
    """
    captured = contextvars.copy_context()

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        return captured.copy().run(fn, *args, **kwargs)

    return run


async def run_in_thread(fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
    """Run blocking ``fn`` in the default executor, keeping the log context and deadline.

    Example:
        >>> import asyncio
        >>> async def main() -> dict:
        ...     with bind_context(job="nightly"):
        ...         return await run_in_thread(get_context)
        >>> asyncio.run(main())
        {'job': 'nightly'}
    """
    import asyncio  # lazily: importing asyncio would double the cost of `import utils.core`

    # asyncio.to_thread copies the current context, which is exactly the contract we want.
    return await asyncio.to_thread(fn, *args, **kwargs)
