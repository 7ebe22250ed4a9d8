"""``@cached``: memoize sync and async functions, methods and classmethods in any cache.

Keys come from :mod:`utils.cache._keys`: ``module.qualname(param=value,...)`` after defaults
are applied, ``self`` / ``cls`` left out unless ``key_self=True``, stable across processes.
Misses go through :mod:`utils.cache._compute`: computed once per process (and across
processes with ``lock=True`` on Redis), ``stale_ttl`` served while refreshing, ``None``
cached (a hit) unless ``cache_none=False``, or for ``negative_ttl``.

**Why the wrapper is generated.** The decorator compiles a wrapper with the function's own
parameter list (as :mod:`dataclasses` does for ``__init__``), so Python binds the call —
keywords, defaults, ``*args`` — at C speed, and no ``inspect.Signature.bind`` runs on a hit.
A hit then costs one dictionary lookup for the key (the key of each repeated argument tuple
of ``str`` / ``int`` / ``bool`` / ``None`` is remembered), then the cache read; on a
:class:`~utils.cache.memory.MemoryCache` that read is inlined too. Nothing is logged on a hit.

**Types.** The result is typed as :class:`CachedFunction` / :class:`AsyncCachedFunction`:
the function's own parameters and return type, plus ``key_for``, ``invalidate`` and
``cache``; methods and classmethods (in either decorator order) bind as usual. A type
checker cannot tell a cached ``staticmethod`` from a method: call it through the class.

Example:
    >>> from utils.cache.memory import MemoryCache
    >>> cache = MemoryCache()
    >>> calls = []
    >>> @cached(cache, ttl=60)
    ... def square(x: int, power: int = 2) -> int:
    ...     calls.append(x)
    ...     return x**power
    >>> square(3), square(x=3), square(3, 2), calls
    (9, 9, 9, [3])
    >>> square.key_for(3)
    'utils.cache.decorator.square(x=3,power=2)'
    >>> square.invalidate(3), square(3), calls
    (True, 9, [3, 3])
"""

from __future__ import annotations

import functools
import inspect
import keyword
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar, overload

from utils.cache import _compute
from utils.cache._compute import Job, Policy
from utils.cache._keys import KeySpec, qualname
from utils.cache.memory import GIL_ENABLED, AsyncMemoryCache, MemoryCache
from utils.cache.protocol import MISSING, TTL

__all__ = ["AsyncCachedFunction", "CachedFunction", "cached"]

P = ParamSpec("P")
Q = ParamSpec("Q")
R = TypeVar("R")
S = TypeVar("S")
R_co = TypeVar("R_co", covariant=True)

_Kind = inspect.Parameter


class CachedFunction(Protocol[P, R_co]):
    """What ``@cached`` returns for a sync function: the function plus its cache helpers."""

    #: The cache the function stores its results in.
    cache: Any
    __name__: str
    __qualname__: str
    __wrapped__: Callable[..., Any]

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R_co:
        """Call the function through the cache."""

    def key_for(self, *args: Any, **kwargs: Any) -> str:
        """The key a call with these arguments uses (leave out ``self`` / ``cls``)."""

    def invalidate(self, *args: Any, **kwargs: Any) -> bool:
        """Delete the entry of a call with these arguments; True when there was one."""

    # Binding for type checkers, like a function: a classmethod (first parameter
    # ``type[S]``) binds on the class and on instances, a method on instances only.
    @overload
    def __get__(
        self: CachedFunction[Concatenate[type[S], Q], R_co],
        instance: S | None,
        owner: type[S],
    ) -> CachedFunction[Q, R_co]: ...

    @overload
    def __get__(
        self, instance: None, owner: type[Any] | None = None
    ) -> CachedFunction[P, R_co]: ...

    @overload
    def __get__(
        self: CachedFunction[Concatenate[S, Q], R_co],
        instance: S,
        owner: type[Any] | None = None,
    ) -> CachedFunction[Q, R_co]: ...

    def __get__(self, instance: Any, owner: type[Any] | None = None) -> Any:
        """Bind like a function (methods)."""


class AsyncCachedFunction(Protocol[P, R_co]):
    """What ``@cached`` returns for an async function (``invalidate`` is awaited)."""

    #: The cache the function stores its results in.
    cache: Any
    __name__: str
    __qualname__: str
    __wrapped__: Callable[..., Any]

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R_co]:
        """Call the function through the cache."""

    def key_for(self, *args: Any, **kwargs: Any) -> str:
        """The key a call with these arguments uses (leave out ``self`` / ``cls``)."""

    async def invalidate(self, *args: Any, **kwargs: Any) -> bool:
        """Delete the entry of a call with these arguments; True when there was one."""

    # Binding for type checkers, like a function: a classmethod (first parameter
    # ``type[S]``) binds on the class and on instances, a method on instances only.
    @overload
    def __get__(
        self: AsyncCachedFunction[Concatenate[type[S], Q], R_co],
        instance: S | None,
        owner: type[S],
    ) -> AsyncCachedFunction[Q, R_co]: ...

    @overload
    def __get__(
        self, instance: None, owner: type[Any] | None = None
    ) -> AsyncCachedFunction[P, R_co]: ...

    @overload
    def __get__(
        self: AsyncCachedFunction[Concatenate[S, Q], R_co],
        instance: S,
        owner: type[Any] | None = None,
    ) -> AsyncCachedFunction[Q, R_co]: ...

    def __get__(self, instance: Any, owner: type[Any] | None = None) -> Any:
        """Bind like a function (methods)."""


def _is_async_cache(cache: Any) -> bool:
    return inspect.iscoroutinefunction(getattr(cache, "get", None))


class _Source:
    """The pieces of Python source that mirror one signature."""

    def __init__(self, params: list[inspect.Parameter], pfx: str) -> None:
        tokens: list[str] = []
        positional: list[str] = []
        keywords: list[str] = []
        direct: list[str] = []
        self.defaults: dict[str, Any] = {}
        slash_due = False
        star_done = False
        for param in params:
            name, kind = param.name, param.kind
            if not name.isidentifier() or keyword.iskeyword(name):  # pragma: no cover
                raise TypeError(f"@cached cannot mirror the parameter name {name!r}")
            if kind is _Kind.POSITIONAL_ONLY:
                slash_due = True
            elif slash_due:
                tokens.append("/")
                slash_due = False
            token = name
            if param.default is not _Kind.empty:
                self.defaults[f"{pfx}d_{name}"] = param.default
                token = f"{name}={pfx}d_{name}"
            if kind is _Kind.VAR_POSITIONAL:
                tokens.append(f"*{name}")
                positional.append(f"*{name}")
                direct.append(f"*{name}")
                star_done = True
            elif kind is _Kind.VAR_KEYWORD:
                tokens.append(f"**{name}")
                keywords.append(f"**{name}")
                direct.append(f"**{name}")
            elif kind is _Kind.KEYWORD_ONLY:
                if not star_done:
                    tokens.append("*")
                    star_done = True
                tokens.append(token)
                keywords.append(f"{name!r}: {name}")
                direct.append(f"{name}={name}")
            else:
                tokens.append(token)
                positional.append(name)
                direct.append(name)
        if slash_due:
            tokens.append("/")
        #: The parameter list of a ``def``.
        self.signature = ", ".join(tokens)
        #: ``(args,)`` and ``{kwargs}`` to call the function with.
        self.args = f"({', '.join(positional)},)" if positional else "()"
        self.kwargs = "{" + ", ".join(keywords) + "}"
        #: The arguments of a direct call: ``a, *args, c=c, **kw``.
        self.direct = ", ".join(direct)


def _prefix(params: list[inspect.Parameter]) -> str:
    """A prefix for generated names that no parameter starts with."""
    pfx = "_uc_"
    while any(param.name.startswith(pfx) for param in params):
        pfx += "_"
    return pfx


def _key_lines(spec: KeySpec, pfx: str, source: _Source, custom: bool) -> list[str]:
    kept = [param.name for param in spec.kept]
    if custom:
        return [f"{pfx}k = {pfx}custom({pfx}keyfn({source.direct}))"]
    if not kept:
        return [f"{pfx}k = {pfx}const"]
    values = f"({', '.join(kept)},)"
    if not spec.memoizable:
        return [f"{pfx}k = {pfx}build({values})"]
    memo_key = kept[0] if spec.single else values
    return [
        "try:",
        f"    {pfx}k = {pfx}memo[{memo_key}]",
        "except Exception:  # not seen yet, or unhashable",
        f"    {pfx}k = {pfx}build({values})",
    ]


def _hit_lines(
    pfx: str,
    *,
    inline: list[str] | None,
    swr: bool,
    await_get: bool,
    await_fill: bool,
    call: str,
) -> list[str]:
    aw = "await " if await_fill else ""
    if inline is not None:  # MemoryCache's own hit path, inlined
        return [*inline, f"return {aw}{pfx}fill({pfx}k, {call})"]
    lines = [f"{pfx}v = {'await ' if await_get else ''}{pfx}get({pfx}k, {pfx}MISSING)"]
    if swr:
        lines += [
            f"if {pfx}v is {pfx}MISSING:",
            f"    return {aw}{pfx}fill({pfx}k, {call})",
            f"return {pfx}hit({pfx}k, {pfx}v, {call})",
        ]
    else:
        lines += [
            f"if {pfx}v is not {pfx}MISSING:",
            f"    return {pfx}v",
            f"return {aw}{pfx}fill({pfx}k, {call})",
        ]
    return lines


def _compile(name: str, source: str, namespace: dict[str, Any]) -> dict[str, Any]:
    code = compile(source, f"<@cached {name}>", "exec")
    scope: dict[str, Any] = {}
    exec(code, dict(namespace), scope)  # noqa: S102 - source built from a signature only
    return scope


class _Decorator:
    """The decorator made by :func:`cached` (one per ``@cached(...)`` expression)."""

    __slots__ = ("_custom", "_ignore", "_key_self", "_namespace", "_policy", "cache")

    def __init__(
        self,
        cache: Any,
        policy: Policy,
        key: Callable[..., Any] | None,
        ignore: tuple[str, ...],
        namespace: str | None,
        key_self: bool,
    ) -> None:
        self.cache: Any = cache
        self._policy = policy
        self._custom = key
        self._ignore = ignore
        self._namespace = namespace
        self._key_self = key_self

    @overload
    def __call__(  # type: ignore[overload-overlap]  # a coroutine function is a callable too
        self, fn: Callable[P, Coroutine[Any, Any, R]]
    ) -> AsyncCachedFunction[P, R]: ...

    @overload
    def __call__(self, fn: Callable[P, R]) -> CachedFunction[P, R]: ...

    def __call__(self, fn: Any) -> Any:
        """Decorate ``fn`` (sync or async function, method, classmethod, staticmethod)."""
        if isinstance(fn, classmethod | staticmethod):
            return type(fn)(self(fn.__func__))
        if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
            raise TypeError(
                f"@cached cannot decorate the generator function {qualname(fn)!r}: it "
                "would cache the generator object, which can be consumed only once. Cache "
                "a function that returns a list instead."
            )
        if not callable(fn):
            raise TypeError(f"@cached decorates functions, got {fn!r}")
        return self._wrap(fn, is_async=inspect.iscoroutinefunction(fn))

    def _wrap(self, fn: Callable[..., Any], *, is_async: bool) -> Any:
        cache, policy = self.cache, self._policy
        memory = cache.sync if isinstance(cache, AsyncMemoryCache) else cache
        if not isinstance(memory, MemoryCache):
            memory = None
        if memory is None and _is_async_cache(cache) != is_async:
            if is_async:
                raise TypeError(
                    f"@cached on the async function {qualname(fn)!r} needs an async cache "
                    "(AsyncRedisCache, AsyncTieredCache) or a MemoryCache, not "
                    f"{type(cache).__name__}"
                )
            raise TypeError(
                f"@cached on the sync function {qualname(fn)!r} needs a sync cache "
                f"(MemoryCache, RedisCache, TieredCache), not {type(cache).__name__}"
            )
        spec = KeySpec(fn, namespace=self._namespace, ignore=self._ignore, key_self=self._key_self)
        params = spec.parameters
        pfx = _prefix(params)
        source = _Source(params, pfx)
        custom = self._custom is not None
        # key_for / invalidate leave out a self / cls that is not part of the key.
        drop_self = not custom and bool(params) and params[0].name in spec.ignored
        drop_self = drop_self and params[0].name in ("self", "cls")
        key_source = _Source(params[1:], pfx) if drop_self else source

        # Caches are never tested for truth: an empty MemoryCache has len() == 0.
        local = cache if memory is None else memory  # what the sync paths read
        # The cache the miss path uses: async functions over a MemoryCache use its view.
        target = memory.as_async() if (memory is not None and is_async) else local
        fill_impl = _compute.afill if is_async else _compute.fill
        hit_impl = _compute.aon_hit if is_async else _compute.on_hit
        swr = policy.stale_ttl is not None
        inline = memory is not None and not swr and GIL_ENABLED

        def fill(key: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            return fill_impl(Job(target, key, fn, args, kwargs, policy))

        def hit(key: str, value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            return hit_impl(Job(target, key, fn, args, kwargs, policy), value)

        names: dict[str, Any] = {
            f"{pfx}memo": spec.memo,
            f"{pfx}build": spec.build,
            f"{pfx}custom": spec.custom,
            f"{pfx}keyfn": self._custom,
            f"{pfx}const": spec.build(()) if not spec.kept else None,
            f"{pfx}fill": fill,
            f"{pfx}hit": hit,
            f"{pfx}MISSING": MISSING,
            **source.defaults,
            **key_source.defaults,
        }
        hit_source: list[str] | None = None
        if inline:
            assert memory is not None
            hit_source, hit_names = memory._hit_source(pfx)
            names.update(hit_names)
        else:
            names[f"{pfx}get"] = local.get
        call = f"{source.args}, {source.kwargs}"
        key_lines = _key_lines(spec, pfx, source, custom)
        hit_lines = _hit_lines(
            pfx,
            inline=hit_source,
            swr=swr,
            await_get=is_async and memory is None,  # a MemoryCache is read without awaiting
            await_fill=is_async,
            call=call,
        )
        body = "\n".join(f"        {line}" for line in key_lines + hit_lines)
        key_body = "\n".join(f"        {line}" for line in key_lines)
        make = f"{pfx}make"
        text = (
            f"def {make}({', '.join(names)}):\n"
            f"    {'async ' if is_async else ''}def wrapper({source.signature}):\n{body}\n"
            f"    def key_for({key_source.signature}):\n{key_body}\n        return {pfx}k\n"
            "    return wrapper, key_for\n"
        )
        name = qualname(fn)
        wrapper, key_for = _compile(name, text, {})[make](**names)
        functools.update_wrapper(wrapper, fn)
        key_for.__name__ = "key_for"
        key_for.__qualname__ = f"{name}.key_for"
        key_for.__doc__ = f"The cache key of a call of {name} (without self / cls)."
        wrapper.key_for = key_for
        wrapper.cache = cache
        wrapper.invalidate = _invalidator(key_for, cache, memory, is_async, name)
        return wrapper


def _invalidator(
    key_for: Callable[..., str],
    cache: Any,
    memory: MemoryCache | None,
    is_async: bool,
    qualname: str,
) -> Callable[..., Any]:
    if not is_async:
        delete = (cache if memory is None else memory).delete

        def invalidate(*args: Any, **kwargs: Any) -> bool:
            return bool(delete(key_for(*args, **kwargs)))

    elif memory is not None:
        sync_delete = memory.delete

        async def invalidate(*args: Any, **kwargs: Any) -> bool:  # type: ignore[misc]
            return sync_delete(key_for(*args, **kwargs))

    else:
        adelete = cache.delete

        async def invalidate(*args: Any, **kwargs: Any) -> bool:  # type: ignore[misc]
            return bool(await adelete(key_for(*args, **kwargs)))

    invalidate.__qualname__ = f"{qualname}.invalidate"
    invalidate.__doc__ = f"Delete the cached result of a call of {qualname}."
    return invalidate


def cached(
    cache: Any,
    *,
    ttl: TTL = None,
    key: Callable[..., Any] | None = None,
    ignore: Iterable[str] = (),
    namespace: str | None = None,
    stale_ttl: TTL = None,
    lock: bool = True,
    cache_none: bool = True,
    negative_ttl: TTL = None,
    key_self: bool = False,
) -> _Decorator:
    """Cache the results of a function in ``cache``, keyed by its arguments.

    Works on sync functions (with a sync cache), async functions (with an async cache, or a
    :class:`~utils.cache.memory.MemoryCache`, which serves both), methods, classmethods and
    staticmethods. The decorated function keeps its signature and gains ``.key_for(...)``,
    ``.invalidate(...)`` (awaited for async functions) and ``.cache``.

    Args:
        cache: Where results are stored.
        ttl: Seconds (or ``timedelta``) a result is kept; ``None`` (the default) = the
            cache's own default TTL (its constructor's ``ttl``; itself None: no expiry).
        key: A function taking the same arguments and returning the key's variable part (a
            str, or any value with a stable form); the key is then ``namespace:that``.
        ignore: Parameters that do not take part in the key (sessions, loggers, clients).
        namespace: Front of every key, ``module.qualname`` by default. Give each function
            its own: functions sharing a namespace share entries for equal arguments.
        stale_ttl: Serve a result this long after ``ttl`` while one caller refreshes it in
            the background (stale-while-revalidate).
        lock: On a cross-process cache (Redis), also compute a missing value once across
            processes (a bounded wait, then compute anyway).
        cache_none: False never stores a ``None`` result.
        negative_ttl: Keep a ``None`` result this long instead of ``ttl``.
        key_self: Keep ``self`` / ``cls`` in the key (it needs a stable form, e.g. a
            ``__cache_key__`` method); by default every instance shares the entries.

    Returns:
        A decorator; the decorated function is a :class:`CachedFunction` (or
        :class:`AsyncCachedFunction`) with ``key_for``, ``invalidate`` and ``cache``.

    Raises:
        TypeError: at decoration for a generator function, a sync function with an async
            cache or the reverse, or an ``ignore`` name the function does not have; at call
            time when an argument has no stable key form (the message says how to fix it).

    Example:
        >>> import asyncio
        >>> from utils.cache.memory import MemoryCache
        >>> cache = MemoryCache()
        >>> class Users:
        ...     @cached(cache, ttl=300, ignore=("db",))
        ...     def get(self, user_id: int, db: object = None) -> dict:
        ...         return {"id": user_id}
        ...
        ...     @cached(cache, negative_ttl=5)
        ...     async def find(self, email: str) -> dict | None:
        ...         return None
        >>> Users().get(7), Users.get.key_for(7)
        ({'id': 7}, 'utils.cache.decorator.Users.get(user_id=7)')
        >>> asyncio.run(Users().find("a@example.com")) is None
        True
    """
    policy = Policy.make(
        ttl, lock=lock, stale_ttl=stale_ttl, negative_ttl=negative_ttl, cache_none=cache_none
    )
    if isinstance(ignore, str):
        raise TypeError(f"ignore must be a collection of names, e.g. ({ignore!r},)")
    if key is not None and not callable(key):
        raise TypeError(f"key must be a function of the same arguments, got {key!r}")
    return _Decorator(cache, policy, key, tuple(ignore), namespace, key_self)
