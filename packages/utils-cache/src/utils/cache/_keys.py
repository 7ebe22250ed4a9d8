"""Cache keys for ``@cached``: stable across processes, readable, never ``hash()`` or ``repr()``.

A key reads like the call it stands for: ``app.users.get_user(user_id=42,active=1)`` — the
namespace (module + qualname by default) and every argument that takes part, by name, after
defaults are applied. So ``f(1)``, ``f(x=1)`` and ``f()`` with default 1 share one entry, and
two functions (or two methods of two classes) with the same arguments never collide.

Each argument is written in a canonical form that is the same in every process and on every
Python version: numbers by value, strings quoted, containers element by element (sets and
dicts sorted), dates in ISO 8601, enums by qualified name, dataclasses field by field, and any
object with a ``__cache_key__()`` method through what that returns. Anything else is a clear
``TypeError`` naming the argument: an ``id``-based ``repr`` would silently never hit.

Arguments that compare equal share an entry, as with :func:`functools.lru_cache`: ``f(1)``,
``f(1.0)`` and ``f(True)`` are one entry (written ``1``), and an ``IntEnum`` or ``StrEnum``
member is written as its value. That is what lets the hot path find the key of a repeated call
with one dictionary lookup (see :class:`KeySpec`).

Keys longer than :data:`MAX_KEY_LENGTH` keep a readable prefix and end with the SHA-256 of
the whole key.

Example:
    >>> def get_user(user_id: int, active: bool = True) -> dict: ...
    >>> spec = KeySpec(get_user, namespace="users")
    >>> spec.build((42, True))
    'users(user_id=42,active=1)'
    >>> stable_form({"b": [1, 2.5], "a": None})
    '{"a":None,"b":[1,2.5]}'
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import enum
import hashlib
import inspect
import numbers
import operator
import uuid
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

__all__ = ["MAX_KEY_LENGTH", "KeySpec", "shorten", "stable_form"]

#: Keys longer than this become a readable prefix plus a SHA-256 digest.
MAX_KEY_LENGTH = 200
_PREFIX_LENGTH = 128

#: Containers nested deeper than this are refused (a self-referencing list would never end).
_MAX_DEPTH = 32

#: How many argument tuples each function remembers the key of (the fast path). Bounded so a
#: function called with millions of distinct arguments cannot grow it without limit.
MEMO_SIZE = 2048

#: Exact argument types whose key the memo may remember. Only these: their equality agrees
#: with their canonical form (an equal value of another type — 1.0 or True for 1, a StrEnum
#: for its str — is written the same way), so a memo hit can never return another value's key.
_MEMO_TYPES = frozenset({str, int, bool, type(None)})


class _Unkeyable(Exception):  # noqa: N818 - internal signal, turned into TypeError
    def __init__(self, kind: type, reason: str = "") -> None:
        super().__init__(kind, reason)
        self.kind = kind
        self.reason = reason


def _type_name(kind: type) -> str:
    return f"{kind.__module__}.{kind.__qualname__}"


def _str_form(value: str) -> str:
    # Quote and escape the two characters that could end the quotes early: injective.
    return '"' + str.__str__(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _int_form(value: int) -> str:
    try:
        return int.__repr__(value)  # int.__repr__: True -> '1', an IntEnum -> its digits
    except ValueError:  # more digits than sys.get_int_max_str_digits(): hex has no limit
        return hex(value)


def _float_form(value: float) -> str:
    if value.is_integer():
        return _int_form(int(value))  # 1.0 == 1: one entry; -0.0 -> '0'
    return float.__repr__(value)  # shortest round-trip repr: 'nan', 'inf', '0.1'


def _decimal_form(value: Decimal) -> str:
    if value.is_finite() and value.adjusted() < 4000 and value == value.to_integral_value():
        return _int_form(int(value))
    return f"Decimal({value})"


def _bytes_form(value: bytes | bytearray) -> str:
    return repr(bytes(value))  # bytes repr is fixed ASCII with escapes on every version


def _datetime_form(value: dt.datetime) -> str:
    if value.utcoffset() is not None:
        # Equal instants in different zones share one entry; near year 1 or 9999 the
        # conversion can overflow: keep the offset then.
        with contextlib.suppress(OverflowError):
            value = value.astimezone(dt.timezone.utc)
    return f"datetime({value.isoformat()})"


def _seq_form(value: Iterable[Any], depth: int, open_: str, close: str) -> str:
    return open_ + ",".join([_form(item, depth) for item in value]) + close


def _dict_form(value: dict[Any, Any], depth: int) -> str:
    items = sorted(_form(k, depth) + ":" + _form(v, depth) for k, v in value.items())
    return "{" + ",".join(items) + "}"


def _set_form(value: set[Any] | frozenset[Any], depth: int) -> str:
    return "set{" + ",".join(sorted(_form(item, depth) for item in value)) + "}"


_SCALARS: dict[type, Callable[[Any], str]] = {
    str: _str_form,
    int: _int_form,
    bool: _int_form,
    float: _float_form,
    type(None): lambda _: "None",
    Decimal: _decimal_form,
    bytes: _bytes_form,
    uuid.UUID: lambda value: f"UUID({value})",
    dt.datetime: _datetime_form,
    dt.date: lambda value: f"date({value.isoformat()})",
    dt.time: lambda value: f"time({value.isoformat()})",
    dt.timedelta: lambda value: f"timedelta({value})",
}


def _form(value: Any, depth: int = 0) -> str:  # noqa: PLR0911, PLR0912 - one branch per kind
    kind = type(value)
    scalar = _SCALARS.get(kind)
    if scalar is not None:
        return scalar(value)
    depth += 1
    if depth > _MAX_DEPTH:
        raise _Unkeyable(kind, f"nested more than {_MAX_DEPTH} levels deep (a cycle?)")
    if kind is tuple:
        return _seq_form(value, depth, "(", ")")
    if kind is list:
        return _seq_form(value, depth, "[", "]")
    if kind is dict:
        return _dict_form(value, depth)
    hook = getattr(kind, "__cache_key__", None)
    if hook is not None:
        return f"{_type_name(kind)}({_form(hook(value), depth)})"
    # Subclasses, checked in the order that keeps equal values on one form.
    if isinstance(value, int):  # bool, IntEnum, IntFlag: written as their value
        return _int_form(value)
    if isinstance(value, str):  # StrEnum and other str subclasses: their value
        return _str_form(value)
    if isinstance(value, float):
        return _float_form(value)
    if isinstance(value, enum.Enum):
        name: str | None = value.name  # None for a combination of flags on Python 3.10
        if name is not None:
            return f"{_type_name(kind)}.{name}"
        return f"{_type_name(kind)}({_form(value.value, depth)})"  # pragma: no cover - 3.10
    if isinstance(value, tuple):  # namedtuple: equal to the plain tuple
        return _seq_form(value, depth, "(", ")")
    if isinstance(value, list):
        return _seq_form(value, depth, "[", "]")
    if isinstance(value, dict):
        return _dict_form(value, depth)
    if isinstance(value, set | frozenset):
        return _set_form(value, depth)
    if isinstance(value, bytes | bytearray):
        return _bytes_form(value)
    if isinstance(value, Decimal):
        return _decimal_form(value)
    if isinstance(value, dt.datetime):
        return _datetime_form(value)
    for base in (dt.date, dt.time, dt.timedelta, uuid.UUID):
        if isinstance(value, base):
            return _SCALARS[base](value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = ",".join(
            f"{field.name}={_form(getattr(value, field.name), depth)}"
            for field in dataclasses.fields(value)
            if field.compare
        )
        return f"{_type_name(kind)}({fields})"
    if isinstance(value, numbers.Integral):  # numpy integers and the like
        return _int_form(operator.index(value))
    if isinstance(value, numbers.Rational):  # Fraction
        if value.denominator == 1:
            return _int_form(int(value.numerator))
        return f"Fraction({value.numerator}/{value.denominator})"
    raise _Unkeyable(kind)


def _unkeyable_message(where: str, name: str, exc: _Unkeyable) -> str:
    what = exc.reason or f"a {_type_name(exc.kind)} has no stable key form"
    return (
        f"@cached cannot build a cache key for argument {name!r} of {where}: {what}. "
        f"Give {exc.kind.__qualname__} a __cache_key__() method returning a str or a tuple, "
        f"pass key=... to @cached, or leave the argument out with ignore=({name!r},)"
    )


def stable_form(value: Any) -> str:
    """The canonical text of ``value`` used in cache keys (same in every process).

    Raises:
        TypeError: when ``value`` (or something inside it) has no stable form.

    Example:
        >>> import datetime
        >>> stable_form((1, 1.0, True, "a,b", datetime.date(2024, 5, 1), {3, 2}))
        '(1,1,1,"a,b",date(2024-05-01),set{2,3})'
        >>> stable_form(object())
        Traceback (most recent call last):
        ...
        TypeError: no stable cache key form for builtins.object: give it a __cache_key__() method returning a str or a tuple
    """
    try:
        return _form(value)
    except _Unkeyable as exc:
        what = exc.reason or f"no stable cache key form for {_type_name(exc.kind)}"
        raise TypeError(
            f"{what}: give it a __cache_key__() method returning a str or a tuple"
        ) from None


def shorten(key: str) -> str:
    """Return ``key``, or a readable prefix plus its SHA-256 when it is too long.

    Example:
        >>> shorten("users(id=1)")
        'users(id=1)'
        >>> long = shorten("report(ids=" + "1," * 200 + ")")
        >>> len(long), long[:12], long[128]
        (193, 'report(ids=1', '~')
    """
    if len(key) <= MAX_KEY_LENGTH:
        return key
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{key[:_PREFIX_LENGTH]}~{digest}"


def qualname(fn: Callable[..., Any]) -> str:
    """The qualified name of a function, or of the class of a callable object."""
    return getattr(fn, "__qualname__", None) or type(fn).__qualname__


def _is_self(param: inspect.Parameter) -> bool:
    positional = (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD)
    return param.name in ("self", "cls") and param.kind in positional


class KeySpec:
    """How the keys of one function are built: which arguments count, and the memo.

    Args:
        fn: The function whose calls are keyed.
        namespace: Replaces the default ``module.qualname`` at the front of each key. Give
            each function its own: two functions with one namespace share entries. ``""``
            leaves the namespace out.
        ignore: Names of parameters left out of the key (a session, a logger).
        key_self: Keep a first ``self`` / ``cls`` parameter in the key (it is left out by
            default, so every instance shares the entries; its ``__cache_key__`` decides).

    The key of a call is built from the values of the kept parameters *after* binding (see
    :mod:`utils.cache.decorator`, whose generated wrapper has the function's own signature,
    so Python itself applies defaults and keyword arguments). :meth:`build` remembers the key
    of up to :data:`MEMO_SIZE` argument tuples made only of ``str`` / ``int`` / ``bool`` /
    ``None``, so a repeated call costs one dictionary lookup in :attr:`memo`.

    Example:
        >>> class Users:
        ...     def get(self, user_id: int, *, fields: tuple = ("name",), db=None): ...
        >>> spec = KeySpec(Users.get, ignore=("db",))
        >>> [p.name for p in spec.kept]
        ['user_id', 'fields']
        >>> spec.build((7, ("name",)))
        'utils.cache._keys.Users.get(user_id=7,fields=("name"))'
    """

    __slots__ = (
        "_labels",
        "_prefix",
        "_where",
        "ignored",
        "kept",
        "memo",
        "memoizable",
        "namespace",
        "parameters",
        "single",
    )

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        namespace: str | None = None,
        ignore: Iterable[str] = (),
        key_self: bool = False,
    ) -> None:
        if isinstance(ignore, str):
            raise TypeError(f"ignore must be a collection of names, e.g. ({ignore!r},)")
        self.parameters = list(inspect.signature(fn).parameters.values())
        names = [param.name for param in self.parameters]
        where = f"{getattr(fn, '__module__', None) or '?'}.{qualname(fn)}"
        unknown = sorted(set(ignore) - set(names))
        if unknown:
            raise TypeError(f"ignore names parameters that {where} does not have: {unknown}")
        ignored = set(ignore)
        if self.parameters and _is_self(self.parameters[0]) and not key_self:
            ignored.add(self.parameters[0].name)
        self.ignored = frozenset(ignored)
        self.kept = [param for param in self.parameters if param.name not in ignored]
        self.namespace = where if namespace is None else namespace
        self._where = where
        self._prefix = self.namespace
        self._labels = [f"{param.name}=" for param in self.kept]
        self.single = len(self.kept) == 1
        variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        #: False when a kept parameter is *args / **kwargs: tuples and dicts never memoize.
        self.memoizable = bool(self.kept) and all(p.kind not in variadic for p in self.kept)
        #: Kept-argument values (the value itself for one parameter) -> the key.
        self.memo: dict[Any, str] = {}

    def build(self, values: tuple[Any, ...]) -> str:
        """The key of a call whose kept parameters have these ``values`` (in order).

        Raises:
            TypeError: naming the argument when a value has no stable form.
        """
        parts = []
        for label, value in zip(self._labels, values, strict=True):
            try:
                parts.append(label + _form(value))
            except _Unkeyable as exc:
                name = label[:-1]
                raise TypeError(_unkeyable_message(self._where, name, exc)) from None
        key = shorten(f"{self._prefix}({','.join(parts)})")
        if self.memoizable and all(type(value) in _MEMO_TYPES for value in values):
            memo = self.memo
            if len(memo) >= MEMO_SIZE:
                memo.clear()  # cheap and thread-safe; the next calls refill it
            memo[values[0] if self.single else values] = key
        return key

    def custom(self, result: Any) -> str:
        """The key made from what a ``key=`` function returned (a str, or any keyable value).

        Example:
            >>> spec = KeySpec(lambda user_id: None, namespace="users")
            >>> spec.custom("42"), spec.custom(("eu", 42))
            ('users:42', 'users:("eu",42)')
        """
        if type(result) is not str:
            try:
                result = _form(result)
            except _Unkeyable as exc:
                raise TypeError(
                    f"the key function of {self._where} returned a {_type_name(exc.kind)}, "
                    "which has no stable form: return a str"
                ) from None
        return shorten(f"{self._prefix}:{result}" if self._prefix else result)
