"""Health checks contributed by installed packages (entry-point group ``utils.health``).

A check is a callable (sync or async) that takes no arguments; it passes when it returns
(optionally a short detail string) and fails when it raises or returns ``False``.
``utils doctor`` runs them all; :func:`run_checks` does the same from code.

Example:
    >>> results = run_checks(["python"])
    >>> results[0].name, results[0].ok
    ('python', True)
"""

from __future__ import annotations

import asyncio
import inspect
import platform
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from utils.core.deadline import deadline

__all__ = ["CheckResult", "iter_checks", "plugins_import", "python_runtime", "run_checks"]


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one health check.

    Example:
        >>> CheckResult("redis", ok=False, detail="connection refused", seconds=0.01).ok
        False
    """

    name: str
    ok: bool
    detail: str
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict.

        Example:
            >>> CheckResult("x", True, "", 0.5).as_dict()["ok"]
            True
        """
        return {"name": self.name, "ok": self.ok, "detail": self.detail, "seconds": self.seconds}


def python_runtime() -> str:
    """Built-in check: reports the interpreter running the checks (always passes).

    Example:
        >>> python_runtime().startswith(platform.python_implementation())
        True
    """
    return f"{platform.python_implementation()} {platform.python_version()}"


def plugins_import() -> str:
    """Built-in check: every ``utils.transient`` and ``utils.cli`` plugin imports.

    Example:
        >>> plugins_import().endswith("plugins import")
        True
    """
    from utils.core import plugins

    failures: list[str] = []
    count = 0
    for group in ("utils.transient", "utils.cli"):
        wanted = plugins.names(group)
        loaded = plugins.load(group)
        count += len(loaded)
        failures += [f"{group}:{name}" for name in wanted if name not in loaded]
    if failures:
        raise RuntimeError("plugins failed to import: " + ", ".join(failures))
    return f"{count} plugins import"


def _run_one(name: str, check: Callable[[], Any], timeout: float) -> CheckResult:
    started = time.perf_counter()
    try:
        with deadline(timeout):
            outcome = check()
            if inspect.isawaitable(outcome):
                outcome = asyncio.run(_await(outcome, timeout))
    except Exception as exc:  # a failing check is a result, not a crash of the doctor
        return CheckResult(name, False, f"{type(exc).__name__}: {exc}", _since(started))
    if outcome is False:
        return CheckResult(name, False, "check returned False", _since(started))
    detail = "" if outcome in (None, True) else str(outcome)
    return CheckResult(name, True, detail, _since(started))


async def _await(awaitable: Any, timeout: float) -> Any:
    return await asyncio.wait_for(awaitable, timeout)


def _since(started: float) -> float:
    return round(time.perf_counter() - started, 6)


def iter_checks(
    names: Iterable[str] | None = None, *, timeout: float = 5.0
) -> Iterator[CheckResult]:
    """Run the installed health checks one by one, yielding each result as it finishes.

    Plugins are loaded once. Each check runs under a :func:`~utils.core.deadline` of
    ``timeout`` seconds, so checks built on ``utils`` helpers give up in time. A plugin that
    cannot be imported is reported as a failed check rather than hidden.

    Example:
        >>> [result.ok for result in iter_checks(["python"])]
        [True]
    """
    from utils.core import plugins

    available = plugins.names("utils.health")
    wanted = list(available if names is None else names)
    loaded = plugins.load("utils.health")
    for name in wanted:
        check = loaded.get(name)
        if check is None:
            reason = "failed to import" if name in available else "no such check installed"
            yield CheckResult(name, False, reason, 0.0)
        else:
            yield _run_one(name, check, timeout)


def run_checks(names: Iterable[str] | None = None, *, timeout: float = 5.0) -> list[CheckResult]:
    """Run the installed health checks (all, or only ``names``) and return their results.

    Example:
        >>> [r.name for r in run_checks(["python"])]
        ['python']
    """
    return list(iter_checks(names, timeout=timeout))
