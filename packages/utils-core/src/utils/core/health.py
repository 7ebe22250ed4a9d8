"""Health checks: registered at run time, or contributed by installed packages.

A check is a callable taking no arguments, sync or async. It passes when it returns
(a returned string becomes the result's detail) and fails when it raises or returns ``False``.

Checks come from two places:

- :func:`register_check`, at run time, with the application's own clients
  (``register_check("redis", redis_check(cache), kind="readiness", timeout=0.5)``). Each has
  a *kind* and a timeout of its own.
- The ``utils.health`` entry points of installed packages (``redis-cache``, ``postgres``,
  ``aws-sts``), configured from the environment. They are **readiness** checks (they reach
  dependencies) and run with the caller's ``timeout``. A registered check with the same name
  replaces an entry-point check. The built-in ``python`` and ``plugins`` checks are
  diagnostics for ``utils doctor`` alone: they never run under a ``kind``.

The kinds are Kubernetes' three probes: ``liveness`` (is the process able to work at all?
never a dependency: a database outage must not restart every pod), ``readiness`` (can it
serve traffic now? its dependencies) and ``startup`` (has it finished starting?).

Checks run concurrently. An async check runs under ``asyncio.wait_for``; a sync check runs
in a daemon thread of its own, so a check that hangs cannot hold the run past its timeout:
it is answered ``TimeoutError: timed out after ...`` and left to finish on its own. A check
still running from an earlier run is not started again (it is answered as failed at once),
so a hung check holds one thread, never one per probe. Each check runs under a
:func:`~utils.core.deadline` of its timeout, so checks built on ``utils`` helpers give up in
time. Details are shortened to :data:`MAX_DETAIL` characters and redacted like log events:
a DSN's password or a token never reaches a probe's body.

Example:
    >>> register_check("queue", lambda: "3 jobs waiting", kind="readiness", timeout=0.5)
    >>> [(r.name, r.ok, r.detail) for r in run_checks(["queue"])]
    [('queue', True, '3 jobs waiting')]
    >>> unregister_check("queue")
    True
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import platform
import queue
import re
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal, TypeAlias

from utils.core._redact import redact_text
from utils.core.deadline import deadline
from utils.core.errors import ValidationError
from utils.core.forksafe import reset_after_fork
from utils.core.validate import duration, flag, one_of

__all__ = [
    "KINDS",
    "MAX_DETAIL",
    "CheckResult",
    "Kind",
    "arun_checks",
    "is_draining",
    "iter_checks",
    "mark_draining",
    "plugins_import",
    "python_runtime",
    "register_check",
    "run_checks",
    "unregister_check",
]

#: What a check answers for: one of Kubernetes' three probes.
Kind: TypeAlias = Literal["liveness", "readiness", "startup"]
#: Every kind, in the order the probes are usually listed.
KINDS: tuple[Kind, ...] = ("liveness", "readiness", "startup")
#: The longest detail kept (characters): a probe body is read by people and dashboards.
MAX_DETAIL = 200

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
_DRAINING = "shutting down: no new work accepted"


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
    kind: Kind = "readiness"

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict.

        Example:
            >>> CheckResult("x", True, "", 0.5).as_dict()["ok"]
            True
        """
        return {
            "name": self.name,
            "ok": self.ok,
            "detail": self.detail,
            "seconds": self.seconds,
            "kind": self.kind,
        }


@dataclass(frozen=True)
class _Check:
    """One check ready to run: where it came from no longer matters."""

    name: str
    fn: Callable[[], Any]
    kind: Kind
    timeout: float
    is_async: bool


class _State:
    """The registry (copied on write: runs read it without a lock) and the running checks."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.checks: Mapping[str, _Check] = {}
        # (name, id(fn)) -> fn of every sync check whose thread has not finished; the value
        # keeps fn alive, so its id cannot be reused while the key is here.
        self.running: dict[tuple[str, int], Callable[[], Any]] = {}
        self.draining = False
        reset_after_fork(self, _State._after_fork)

    def _after_fork(self) -> None:
        self.lock = threading.Lock()
        self.running = {}  # the threads that ran them did not survive the fork


_state = _State()


# --------------------------------------------------------------------------- registry


def _positive_seconds(value: float | timedelta, what: str) -> float:
    seconds = duration(value, what, allow_zero=False, allow_none=False, allow_infinite=False)
    assert seconds is not None  # allow_none=False, allow_infinite=False
    return seconds


def _is_async(fn: Callable[[], Any]) -> bool:
    # An object whose __call__ is a coroutine function is async too (not seen by the first).
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - the method itself is inspected
    )


def register_check(
    name: str,
    fn: Callable[[], Any],
    *,
    kind: Kind = "readiness",
    timeout: float | timedelta = 1.0,
    replace: bool = False,
) -> None:
    """Register a health check (sync or async) under ``name``.

    Args:
        name: 1 to 64 letters, digits, ``.``, ``_``, ``:`` or ``-``, starting with a letter
            or digit: it appears in probe bodies and in ``utils doctor --check``.
        fn: A callable taking no arguments: passes when it returns (a string is the
            detail), fails when it raises or returns ``False``.
        kind: ``"readiness"`` (default: a dependency), ``"liveness"`` or ``"startup"``.
        timeout: Seconds (or a ``timedelta``) the check may take; it is answered failed
            after that. Keep it below the probe's ``timeoutSeconds``.
        replace: Replace a check already registered under ``name`` instead of refusing.

    Raises:
        ValidationError: A bad name, kind or timeout; ``fn`` not callable; ``name`` taken.

    Example:
        >>> register_check("cache", lambda: True, kind="readiness", timeout=0.5)
        >>> register_check("cache", lambda: True)
        Traceback (most recent call last):
        ...
        utils.core.errors.ValidationError: a check named 'cache' is already registered: call unregister_check('cache') first, or pass replace=True
        >>> unregister_check("cache")
        True
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValidationError(
            "check name must be 1 to 64 letters, digits, '.', '_', ':' or '-', starting "
            f"with a letter or digit, got {name!r}",
            details={"name": "name", "value": repr(name)},
        )
    if not callable(fn):
        raise ValidationError(
            f"check {name!r} must be a callable taking no arguments (sync or async), "
            f"got {type(fn).__name__}",
            details={"name": "fn", "check": name},
        )
    one_of(kind, "kind", KINDS)
    seconds = _positive_seconds(timeout, "timeout")
    flag(replace, "replace")
    check = _Check(name, fn, kind, seconds, _is_async(fn))
    with _state.lock:
        if name in _state.checks and not replace:
            raise ValidationError(
                f"a check named {name!r} is already registered: call "
                f"unregister_check({name!r}) first, or pass replace=True",
                details={"check": name},
            )
        _state.checks = {**_state.checks, name: check}


def unregister_check(name: str) -> bool:
    """Remove the check registered under ``name``; return whether there was one.

    Example:
        >>> unregister_check("never-registered")
        False
    """
    with _state.lock:
        if name not in _state.checks:
            return False
        _state.checks = {key: check for key, check in _state.checks.items() if key != name}
        return True


def mark_draining(draining: bool = True) -> None:
    """Fail every readiness run from now on (or stop failing, with ``False``).

    Call it when the process starts shutting down (on ``SIGTERM``, before closing its
    clients): readiness answers ``503`` with one failed ``draining`` result, without running
    any check, so the load balancer stops sending traffic while requests in flight finish.
    Liveness and startup are not affected.

    Example:
        >>> mark_draining()
        >>> [(r.name, r.ok) for r in run_checks(kind="readiness")]
        [('draining', False)]
        >>> mark_draining(False)
        >>> is_draining()
        False
    """
    _state.draining = flag(draining, "draining")


def is_draining() -> bool:
    """Whether :func:`mark_draining` is in force.

    Example:
        >>> is_draining()
        False
    """
    return _state.draining


# --------------------------------------------------------------------------- built-ins


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


# Diagnostics of the installation, not of a dependency: ``utils doctor`` runs them, a probe
# never does (``plugins`` fails where the optional CLI extra is not installed, which must
# not keep a pod out of service).
_DOCTOR_ONLY: tuple[Callable[[], str], ...] = (python_runtime, plugins_import)


# --------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class _EntryPoints:
    """The ``utils.health`` entry points: the loaded checks and every declared name."""

    loaded: Mapping[str, Any]
    declared: tuple[str, ...]


def _load_entry_points() -> _EntryPoints:
    """Import the ``utils.health`` entry points (a broken one is logged and left out)."""
    from utils.core import plugins

    return _EntryPoints(plugins.load("utils.health"), tuple(plugins.names("utils.health")))


@dataclass(frozen=True)
class _Plan:
    """What one run does: the checks to run and the results known without running any."""

    checks: tuple[_Check, ...]
    answered: tuple[CheckResult, ...]
    order: tuple[str, ...]

    def sort(self, results: Iterable[CheckResult]) -> list[CheckResult]:
        """``results`` in the order the names were asked for (or by name)."""
        position = {name: index for index, name in enumerate(self.order)}
        return sorted(results, key=lambda result: position.get(result.name, len(position)))


def _plan(
    names: Iterable[str] | None,
    kind: Kind | None,
    timeout: float,
    entry_points: _EntryPoints | None,
) -> _Plan:
    """Decide which checks a run executes (the probe apps and the functions below share it)."""
    if kind is not None:
        one_of(kind, "kind", KINDS)
    if kind == "readiness" and _state.draining:
        return _Plan((), (CheckResult("draining", False, _DRAINING, 0.0, "readiness"),), ())
    registered = _state.checks
    # Entry-point checks are readiness checks: liveness and startup never run them.
    entry = entry_points if kind in (None, "readiness") else None
    found: dict[str, _Check] = {}
    if entry is not None:
        for name, fn in entry.loaded.items():
            if kind is None or not any(fn is builtin for builtin in _DOCTOR_ONLY):
                found[name] = _Check(name, fn, "readiness", timeout, _is_async(fn))
    # A registered check replaces an entry-point check of the same name.
    found.update(
        {name: check for name, check in registered.items() if kind is None or check.kind == kind}
    )
    if names is None:  # everything, and the entry points that failed to import (not hidden)
        broken = () if entry is None else (n for n in entry.declared if n not in entry.loaded)
        names = sorted({*found, *broken})
    order = tuple(dict.fromkeys(names))
    answered = [_unavailable(name, kind, registered, entry) for name in order if name not in found]
    return _Plan(tuple(found[name] for name in order if name in found), tuple(answered), order)


def _unavailable(
    name: str, kind: Kind | None, registered: Mapping[str, _Check], entry: _EntryPoints | None
) -> CheckResult:
    wanted: Kind = kind or "readiness"
    if name in registered:
        detail = f"a {registered[name].kind} check, not {kind}"
    elif entry is not None and name in entry.loaded:
        detail = f"an entry-point check of utils doctor, not a {kind} check"
    elif entry is not None and name in entry.declared:
        detail = "failed to import"
    elif kind in (None, "readiness"):
        detail = "no such check installed"
    else:
        detail = f"no {kind} check of that name is registered"
    return CheckResult(name, False, detail, 0.0, wanted)


# --------------------------------------------------------------------------- running


def _detail(text: str) -> str:
    text = redact_text(" ".join(text.split()))  # one line, then masked
    return text if len(text) <= MAX_DETAIL else text[: MAX_DETAIL - 3] + "..."


def _judge(check: _Check, outcome: Any, started: float) -> CheckResult:
    seconds = round(time.perf_counter() - started, 6)
    if outcome is False:
        return CheckResult(check.name, False, "check returned False", seconds, check.kind)
    detail = "" if outcome is None or outcome is True else _detail(str(outcome))
    return CheckResult(check.name, True, detail, seconds, check.kind)


def _failed(check: _Check, exc: BaseException, started: float) -> CheckResult:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    seconds = round(time.perf_counter() - started, 6)
    return CheckResult(check.name, False, _detail(text), seconds, check.kind)


def _timed_out(check: _Check, seconds: float) -> CheckResult:
    detail = f"TimeoutError: timed out after {check.timeout:g} s"
    return CheckResult(check.name, False, detail, round(seconds, 6), check.kind)


async def _bounded(awaitable: Awaitable[Any], timeout: float) -> Any:
    return await asyncio.wait_for(awaitable, timeout)


def _call_in_thread(check: _Check) -> CheckResult:
    started = time.perf_counter()
    try:
        with deadline(check.timeout):
            outcome = check.fn()
            if inspect.isawaitable(outcome):  # an async check outside an event loop
                outcome = asyncio.run(_bounded(outcome, check.timeout))
    except BaseException as exc:  # in a worker thread even SystemExit is the check's failure
        return _failed(check, exc, started)
    return _judge(check, outcome, started)


def _start_thread(check: _Check, report: Callable[[CheckResult], None]) -> CheckResult | None:
    """Run ``check`` in a daemon thread that calls ``report``; or answer at once if it hangs."""
    key = (check.name, id(check.fn))
    with _state.lock:
        if key in _state.running:
            return CheckResult(
                check.name,
                False,
                "still running from an earlier run (hung?): not started again",
                0.0,
                check.kind,
            )
        _state.running[key] = check.fn

    def work() -> None:
        try:
            result = _call_in_thread(check)
        finally:
            with _state.lock:
                _state.running.pop(key, None)
        report(result)

    # Daemon: a check that never returns must not keep the interpreter from exiting. The
    # thread runs in a copy of the caller's context (request id in logs, deadline).
    context = contextvars.copy_context()
    threading.Thread(
        target=context.run, args=(work,), name=f"utils-health:{check.name}", daemon=True
    ).start()
    return None


def _reporter(
    finished: queue.SimpleQueue[tuple[int, CheckResult]], index: int
) -> Callable[[CheckResult], None]:
    return lambda result: finished.put((index, result))


def _run_plan(steps: _Plan) -> Iterator[CheckResult]:
    """Run a plan's checks in threads; yield each result as it finishes or times out."""
    yield from steps.answered
    finished: queue.SimpleQueue[tuple[int, CheckResult]] = queue.SimpleQueue()
    started = time.perf_counter()
    due: dict[int, float] = {}
    for index, check in enumerate(steps.checks):
        at_once = _start_thread(check, _reporter(finished, index))
        if at_once is None:
            due[index] = started + check.timeout
        else:
            yield at_once
    while due:
        try:
            index, result = finished.get(timeout=max(0.0, min(due.values()) - time.perf_counter()))
        except queue.Empty:
            now = time.perf_counter()
            for index in [i for i, at in due.items() if at <= now]:
                del due[index]
                yield _timed_out(steps.checks[index], now - started)
            continue
        if due.pop(index, None) is not None:  # else it was already answered "timed out"
            yield result


async def _arun_async(check: _Check) -> CheckResult:
    started = time.perf_counter()
    try:
        async with deadline(check.timeout):
            outcome = await asyncio.wait_for(check.fn(), check.timeout)
    except asyncio.TimeoutError:
        return _timed_out(check, time.perf_counter() - started)
    except Exception as exc:  # a failing check is a result, not a crash of the probe
        return _failed(check, exc, started)
    return _judge(check, outcome, started)


async def _arun_in_thread(check: _Check) -> CheckResult:
    loop = asyncio.get_running_loop()
    future: asyncio.Future[CheckResult] = loop.create_future()

    def deliver(result: CheckResult) -> None:
        if not future.done():
            future.set_result(result)

    def report(result: CheckResult) -> None:
        # RuntimeError: the loop closed while the check hung; nobody is waiting any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(deliver, result)

    started = time.perf_counter()
    at_once = _start_thread(check, report)
    if at_once is not None:
        return at_once
    try:
        return await asyncio.wait_for(future, check.timeout)
    except asyncio.TimeoutError:
        return _timed_out(check, time.perf_counter() - started)


async def _arun_plan(steps: _Plan) -> list[CheckResult]:
    """Run a plan's checks concurrently on the running loop; results in the plan's order."""
    ran = await asyncio.gather(
        *(
            _arun_async(check) if check.is_async else _arun_in_thread(check)
            for check in steps.checks
        )
    )
    return steps.sort([*steps.answered, *ran])


# --------------------------------------------------------------------------- public runs


def _entry_points_for(kind: Kind | None, names: list[str] | None) -> _EntryPoints | None:
    # Liveness and startup never run entry-point checks, and registered names need none:
    # do not scan the installed distributions for nothing.
    if kind not in (None, "readiness"):
        return None
    if names is not None and all(name in _state.checks for name in names):
        return None
    return _load_entry_points()


def iter_checks(
    names: Iterable[str] | None = None,
    *,
    kind: Kind | None = None,
    timeout: float | timedelta = 5.0,
) -> Iterator[CheckResult]:
    """Run health checks concurrently, yielding each result as it finishes.

    Args:
        names: Only these checks (default: all). A name that is not installed, failed to
            import, or is of another kind is answered as a failed result, not hidden.
        kind: Only checks of this kind (default: every check, the built-in diagnostics
            included: what ``utils doctor`` runs).
        timeout: Seconds allowed to each entry-point check; a registered check has its own.

    Example:
        >>> [result.ok for result in iter_checks(["python"])]
        [True]
    """
    limit = _positive_seconds(timeout, "timeout")
    wanted = None if names is None else list(names)
    return _run_plan(_plan(wanted, kind, limit, _entry_points_for(kind, wanted)))


def run_checks(
    names: Iterable[str] | None = None,
    *,
    kind: Kind | None = None,
    timeout: float | timedelta = 5.0,
) -> list[CheckResult]:
    """Run health checks concurrently; return their results (in the order of ``names``).

    Takes the arguments of :func:`iter_checks`.

    Example:
        >>> [r.name for r in run_checks(["python"])]
        ['python']
        >>> run_checks(kind="liveness")  # nothing registered: nothing to fail
        []
    """
    limit = _positive_seconds(timeout, "timeout")
    wanted = None if names is None else list(names)
    steps = _plan(wanted, kind, limit, _entry_points_for(kind, wanted))
    return steps.sort(_run_plan(steps))


async def arun_checks(
    names: Iterable[str] | None = None,
    *,
    kind: Kind | None = None,
    timeout: float | timedelta = 5.0,
) -> list[CheckResult]:
    """The async twin of :func:`run_checks`: async checks run on the running event loop.

    Use it where the checks' clients belong to the loop (``redis.asyncio``, ``AsyncDatabase``).

    Example:
        >>> async def ping() -> str:
        ...     return "pong"
        >>> register_check("ping", ping, kind="liveness")
        >>> [(r.name, r.detail) for r in asyncio.run(arun_checks(kind="liveness"))]
        [('ping', 'pong')]
        >>> unregister_check("ping")
        True
    """
    limit = _positive_seconds(timeout, "timeout")
    wanted = None if names is None else list(names)
    return await _arun_plan(_plan(wanted, kind, limit, _entry_points_for(kind, wanted)))
