"""How cached values become bytes: :class:`JsonSerializer` (default) and :class:`PickleSerializer`.

A serializer is any object with ``dumps(value) -> bytes`` and ``loads(data) -> value``
(:class:`Serializer`). Both serializers here refuse what they cannot round-trip with a
:class:`~utils.cache.errors.CacheValueError` (a ``ValidationError``) naming the type, and
refuse stored bytes they cannot trust or decode with a
:class:`~utils.cache.errors.CacheIntegrityError` instead of guessing.

Example:
    >>> from datetime import date
    >>> s = JsonSerializer()
    >>> s.loads(s.dumps({"when": date(2024, 5, 1), "ids": (1, 2)}))
    {'when': datetime.date(2024, 5, 1), 'ids': (1, 2)}
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import pickle
import re
from collections.abc import Callable, Iterable
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any, Literal, Protocol, runtime_checkable
from uuid import UUID
from zoneinfo import ZoneInfo

from utils.cache.errors import CacheIntegrityError, CacheValueError
from utils.core import Secret, ValidationError

__all__ = ["JsonSerializer", "PickleSerializer", "Serializer"]


@runtime_checkable
class Serializer(Protocol):
    """What a cache needs to store values: bytes out, the same value back.

    Example:
        >>> isinstance(JsonSerializer(), Serializer)
        True
    """

    def dumps(self, value: Any) -> bytes:
        """Encode ``value``; raise :class:`~utils.cache.errors.CacheValueError` if impossible."""

    def loads(self, data: bytes) -> Any:
        """Decode bytes made by :meth:`dumps` (or an integer written by ``incr``)."""


# --------------------------------------------------------------------------------------------
# JSON
# --------------------------------------------------------------------------------------------

#: The key that marks an encoded special value: ``{"__utils__": "<tag>", "v": ...}``. User
#: dicts that contain this key are themselves encoded (tag "map"), so a decoded dict holding
#: it is always one of ours.
TAG = "__utils__"
# Fast path: a document whose bytes lack this holds no tagged value, so decoding it is just
# the parser (the quotes are unescaped JSON syntax, so a string *containing* the marker text
# cannot produce it). A false positive (a string equal to "__utils__") only costs a walk.
_MARKER = b'"__utils__"'

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1


class _Unsupported(Exception):  # noqa: N818 - internal signal, converted to CacheValueError
    def __init__(self, value: Any, path: str = "") -> None:
        super().__init__(value, path)
        self.value = value
        self.path = path


def _with_fold(value: datetime | time, encoded: dict[str, Any]) -> dict[str, Any]:
    # ``fold`` picks the side of a DST overlap; ``isoformat`` does not carry it.
    if value.fold:
        encoded["fold"] = 1
    return encoded


def _encode_clock(value: datetime | time) -> dict[str, Any]:
    # A ZoneInfo zone is kept by name (with the wall time and fold), so the value comes back
    # identical; any other tzinfo is kept as its UTC offset, which ``isoformat`` carries.
    tag = "datetime" if type(value) is datetime else "time"
    tz = value.tzinfo
    if isinstance(tz, ZoneInfo) and tz.key is not None:
        naive = value.replace(tzinfo=None).isoformat()
        return _with_fold(value, {TAG: tag, "v": naive, "tz": tz.key})
    offset = value.utcoffset() if tz is not None else None
    if tz is not None and offset is None:
        # A zone that cannot tell its offset here (a time needs a date for that).
        raise _Unsupported(value)
    if offset is not None and offset.microseconds:
        # isoformat writes a sub-second offset, but fromisoformat (3.10, 3.11) drops it:
        # keep such an offset apart, in microseconds.
        naive = value.replace(tzinfo=None).isoformat()
        off = offset // timedelta(microseconds=1)
        return _with_fold(value, {TAG: tag, "v": naive, "off": off})
    return _with_fold(value, {TAG: tag, "v": value.isoformat()})


def _encode_tuple(value: tuple[Any, ...]) -> dict[str, Any]:
    return {TAG: "tuple", "v": _encode_items(value)}


def _encode_set(value: set[Any] | frozenset[Any]) -> dict[str, Any]:
    return {TAG: type(value).__name__, "v": _encode_items(value)}


def _encode_mapping(value: dict[Any, Any]) -> dict[str, Any]:
    if TAG not in value and all(type(k) is str for k in value):
        encoded: dict[str, Any] = {}
        for k, item in value.items():
            try:
                encoded[k] = _encode(item)
            except _Unsupported as exc:
                raise _Unsupported(exc.value, f"[{k!r}]{exc.path}") from None
        return encoded
    # Non-string keys (JSON would turn 1 into "1") or a key that looks like our tag.
    pairs = []
    for k, item in value.items():
        try:
            pairs.append([_encode(k), _encode(item)])
        except _Unsupported as exc:
            raise _Unsupported(exc.value, f"[{k!r}]{exc.path}") from None
    return {TAG: "map", "v": pairs}


#: Encoders of the special types, by exact type (a subclass would come back as its base).
_ENCODERS: dict[type, Callable[[Any], Any]] = {
    dict: _encode_mapping,
    tuple: _encode_tuple,
    set: _encode_set,
    frozenset: _encode_set,
    datetime: _encode_clock,
    date: lambda value: {TAG: "date", "v": value.isoformat()},
    time: _encode_clock,
    timedelta: lambda value: {
        TAG: "timedelta",
        "v": [value.days, value.seconds, value.microseconds],
    },
    Decimal: lambda value: {TAG: "decimal", "v": str(value)},
    UUID: lambda value: {TAG: "uuid", "v": str(value)},
    bytes: lambda value: {TAG: "bytes", "v": base64.b64encode(value).decode("ascii")},
}


def _encode(value: Any) -> Any:  # noqa: PLR0911 - a flat type switch: the fast path
    """Return a structure of JSON-native values (exact types only) that encodes ``value``."""
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return value
    if kind is int:
        if _INT64_MIN <= value <= _INT64_MAX:
            return value
        # Parsers turn big integers into floats; hex has no int<->str digit limit.
        return {TAG: "int", "v": hex(value)}
    if kind is float:
        if value - value == 0.0:  # finite (inf - inf and nan - nan are nan)
            return value
        return {TAG: "float", "v": repr(value)}  # JSON has no NaN / Infinity
    if kind is list:
        return _encode_items(value)
    encoder = _ENCODERS.get(kind)
    if encoder is None:
        raise _Unsupported(value)
    return encoder(value)


def _encode_items(items: Iterable[Any]) -> list[Any]:
    encoded = []
    for index, item in enumerate(items):
        try:
            encoded.append(_encode(item))
        except _Unsupported as exc:
            raise _Unsupported(exc.value, f"[{index}]{exc.path}") from None
    return encoded


def _decode_tz(value: Any, encoded: dict[str, Any]) -> Any:
    zone = encoded.get("tz")
    if zone is not None:
        value = value.replace(tzinfo=ZoneInfo(zone))
    offset = encoded.get("off")
    if offset is not None:
        value = value.replace(tzinfo=timezone(timedelta(microseconds=offset)))
    if encoded.get("fold"):
        value = value.replace(fold=1)
    return value


def _decode_timedelta(payload: Any, encoded: dict[str, Any]) -> timedelta:
    days, seconds, microseconds = payload
    return timedelta(days=days, seconds=seconds, microseconds=microseconds)


_DECODERS: dict[str, Callable[[Any, dict[str, Any]], Any]] = {
    "tuple": lambda payload, _: tuple(_decode(item) for item in payload),
    "map": lambda payload, _: {_decode(k): _decode(item) for k, item in payload},
    "datetime": lambda payload, encoded: _decode_tz(datetime.fromisoformat(payload), encoded),
    "date": lambda payload, _: date.fromisoformat(payload),
    "time": lambda payload, encoded: _decode_tz(time.fromisoformat(payload), encoded),
    "timedelta": _decode_timedelta,
    "decimal": lambda payload, _: Decimal(payload),
    "uuid": lambda payload, _: UUID(payload),
    "bytes": lambda payload, _: base64.b64decode(payload, validate=True),
    "set": lambda payload, _: {_decode(item) for item in payload},
    "frozenset": lambda payload, _: frozenset(_decode(item) for item in payload),
    "int": lambda payload, _: int(payload, 16),
    "float": lambda payload, _: float(payload),
}


def _decode_tagged(encoded: dict[str, Any]) -> Any:
    tag = encoded[TAG]
    decoder = _DECODERS.get(tag)
    if decoder is None:
        raise ValueError(f"unknown value tag {tag!r} (written by a newer utils-cache?)")
    return decoder(encoded.get("v"), encoded)


def _decode(value: Any) -> Any:
    kind = type(value)
    if kind is list:
        return [_decode(item) for item in value]
    if kind is dict:
        if TAG in value:
            return _decode_tagged(value)
        return {k: _decode(item) for k, item in value.items()}
    return value


def _describe(value: Any) -> str:
    kind = type(value)
    module = kind.__module__
    return kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"


def _orjson() -> tuple[Callable[[Any], bytes], Callable[[bytes], Any], type[Exception]] | None:
    try:
        import orjson
    except ImportError:  # pragma: no cover - orjson is optional
        return None
    return orjson.dumps, orjson.loads, orjson.JSONEncodeError


def _json_dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


class JsonSerializer:
    """JSON that round-trips the values Python code caches, not just what JSON has.

    Besides ``dict`` (string keys), ``list``, ``str``, ``int``, ``float``, ``bool`` and
    ``None``, these come back as what went in, nested anywhere: ``tuple``, ``set``,
    ``frozenset``, dicts with non-string keys (``{1: "a"}`` stays keyed by the int),
    ``datetime`` (naive or aware; a ``ZoneInfo`` zone and ``fold`` are kept, any other
    ``tzinfo`` comes back as a fixed-offset ``timezone`` of the same offset), ``date``,
    ``time``, ``timedelta``, ``Decimal``, ``UUID``, ``bytes``, integers beyond 64 bits and
    non-finite floats. Special values are written as ``{"__utils__": "<tag>", "v": ...}``;
    a user dict that has a ``"__utils__"`` key is itself encoded, so it can never be taken
    for one. Plain JSON values are written as plain JSON, so an int is its decimal text and
    ``incr`` (Redis ``INCRBY``) works on it.

    Anything else — including subclasses such as ``OrderedDict``, named tuples and enums,
    which would come back as their base type — raises
    :class:`~utils.cache.errors.CacheValueError` naming the type and where it sits.

    Args:
        backend: ``"orjson"`` (fast; needs the ``orjson`` package), ``"json"`` (the standard
            library) or ``"auto"`` (orjson when installed). Both write the same documents.

    Example:
        >>> from decimal import Decimal
        >>> s = JsonSerializer()
        >>> s.dumps([1, "a"])
        b'[1,"a"]'
        >>> s.loads(s.dumps({1: Decimal("0.10"), "__utils__": b"x"}))
        {1: Decimal('0.10'), '__utils__': b'x'}
        >>> s.dumps({"sock": object()})
        Traceback (most recent call last):
        ...
        utils.cache.errors.CacheValueError: JsonSerializer cannot store a value of type 'object' (at ['sock']); convert it first or use PickleSerializer
    """

    __slots__ = ("_backend_dumps", "_backend_loads", "_encode_errors", "backend")

    def __init__(self, backend: Literal["auto", "orjson", "json"] = "auto") -> None:
        found = _orjson() if backend in ("auto", "orjson") else None
        if found is not None:
            self._backend_dumps, self._backend_loads, encode_error = found
            self._encode_errors: tuple[type[Exception], ...] = (
                encode_error,
                TypeError,
                UnicodeError,
            )
            self.backend: str = "orjson"
        elif backend == "orjson":  # pragma: no cover - orjson is optional
            raise ValidationError("JsonSerializer(backend='orjson') needs: pip install orjson")
        elif backend in ("auto", "json"):
            self._backend_dumps = _json_dumps
            self._backend_loads = json.loads
            self._encode_errors = (ValueError, TypeError, UnicodeError)
            self.backend = "json"
        else:
            raise ValidationError(
                f"JsonSerializer backend must be 'auto', 'orjson' or 'json', got {backend!r}"
            )

    def __repr__(self) -> str:
        return f"JsonSerializer(backend={self.backend!r})"

    def dumps(self, value: Any) -> bytes:
        """Encode ``value`` as UTF-8 JSON bytes.

        Raises:
            CacheValueError: the value (or something inside it) has no JSON form here.

        Example:
            >>> JsonSerializer().dumps((1, 2))
            b'{"__utils__":"tuple","v":[1,2]}'
        """
        try:
            encoded = _encode(value)
        except _Unsupported as exc:
            where = f" (at {exc.path})" if exc.path else ""
            raise CacheValueError(
                f"JsonSerializer cannot store a value of type {_describe(exc.value)!r}{where}; "
                "convert it first or use PickleSerializer",
                details={"type": _describe(exc.value), "path": exc.path},
            ) from None
        except RecursionError:
            raise CacheValueError(
                "JsonSerializer cannot store a value nested this deeply (or a value that "
                "contains itself)"
            ) from None
        try:
            return self._backend_dumps(encoded)
        except self._encode_errors as exc:
            # Lone surrogates in a str are the remaining way to get here.
            raise CacheValueError(f"JsonSerializer cannot store this value: {exc}") from exc

    def loads(self, data: bytes) -> Any:
        """Decode bytes made by :meth:`dumps`.

        Raises:
            CacheIntegrityError: the bytes are not a document this serializer wrote.

        Example:
            >>> JsonSerializer().loads(b'{"__utils__":"uuid","v":"12345678-1234-5678-1234-567812345678"}')
            UUID('12345678-1234-5678-1234-567812345678')
        """
        try:
            if _MARKER in data:
                return _decode(self._backend_loads(data))
            return self._backend_loads(data)
        except Exception as exc:  # any malformed document, whatever the parser raises
            raise CacheIntegrityError(
                f"cached data is not a document JsonSerializer can read: {exc}",
                details={"size": len(data)},
            ) from exc


# --------------------------------------------------------------------------------------------
# Pickle
# --------------------------------------------------------------------------------------------

#: Start of every signed payload: the format's name and version (never a digit or "-", so
#: it cannot be mistaken for an integer written by ``incr``).
_MAGIC = b"U1"
_MAC_SIZE = hashlib.sha256().digest_size
_HEADER = len(_MAGIC) + _MAC_SIZE
#: Protocol 5 is the newest every supported Python reads: processes on different Python
#: versions can share a cache.
PICKLE_PROTOCOL = 5
MIN_SECRET_BYTES = 16
# Integers in int64 range are stored as their decimal text, the form Redis INCRBY reads and
# writes, so incr works on them and its results read back. Parsing digits runs no code.
_INT_TEXT = re.compile(rb"-?[0-9]{1,19}")


def _secret_bytes(secret: str | bytes | Secret, what: str) -> bytes:
    if isinstance(secret, Secret):  # as read by a Settings class: the guide's way
        secret = secret.get_secret_value()
    if isinstance(secret, str):
        secret = secret.encode()
    if not isinstance(secret, bytes):
        raise ValidationError(
            f"{what} must be str, bytes or utils.core.Secret, got {type(secret).__name__}"
        )
    if len(secret) < MIN_SECRET_BYTES:
        raise ValidationError(
            f"{what} must be at least {MIN_SECRET_BYTES} bytes of secret material (got "
            f"{len(secret)}); generate one with `python -c 'import secrets; "
            "print(secrets.token_urlsafe(32))'`"
        )
    return secret


class PickleSerializer:
    """Pickle, signed with HMAC-SHA256: bytes that were not signed with your key are refused.

    Unpickling runs code chosen by whoever wrote the bytes, so a cache that anyone else can
    write to (a shared Redis) must never unpickle unsigned data. Every payload is
    ``b"U1" + HMAC-SHA256(key, b"U1" + pickle) + pickle``; :meth:`loads` checks the MAC in
    constant time *before* unpickling and raises
    :class:`~utils.cache.errors.CacheIntegrityError` for unsigned, truncated or tampered
    data. Plain ``int`` values in the 64-bit range are stored as decimal text instead (the
    form Redis ``INCRBY`` uses) so ``incr`` works; reading decimal text never unpickles.

    Args:
        secret_key: At least 16 bytes (a ``str`` is UTF-8 encoded), or a
            :class:`utils.core.Secret` holding them, as a ``Settings`` field reads it. Keep it
            secret: anyone with it can make this process run code.
        fallback_keys: Older keys still accepted by :meth:`loads` during a key rotation
            (new data is always signed with ``secret_key``).

    Example:
        >>> s = PickleSerializer(secret_key="0123456789abcdef-not-a-real-secret")
        >>> s.loads(s.dumps({"a": complex(1, 2)}))
        {'a': (1+2j)}
        >>> data = bytearray(s.dumps("hello"))
        >>> data[-3] ^= 1
        >>> s.loads(bytes(data))
        Traceback (most recent call last):
        ...
        utils.cache.errors.CacheIntegrityError: cached pickle data failed its signature check: refused (never unpickled)
    """

    __slots__ = ("_keys",)

    def __init__(
        self,
        secret_key: str | bytes | Secret,
        *,
        fallback_keys: Iterable[str | bytes | Secret] = (),
    ) -> None:
        keys = [_secret_bytes(secret_key, "PickleSerializer secret_key")]
        keys.extend(_secret_bytes(key, "each of fallback_keys") for key in fallback_keys)
        self._keys = tuple(keys)

    def __repr__(self) -> str:
        return f"PickleSerializer(secret_key=<{len(self._keys)} key(s) hidden>)"

    def dumps(self, value: Any) -> bytes:
        """Pickle and sign ``value``.

        Raises:
            CacheValueError: the value cannot be pickled (a lock, a socket, a lambda...).

        Example:
            >>> s = PickleSerializer(secret_key=b"k" * 32)
            >>> s.dumps(42), s.dumps("x")[:2]
            (b'42', b'U1')
        """
        if type(value) is int and _INT64_MIN <= value <= _INT64_MAX:
            return str(value).encode()
        try:
            payload = _MAGIC + pickle.dumps(value, protocol=PICKLE_PROTOCOL)
        except Exception as exc:  # PicklingError, TypeError, AttributeError...: all "cannot"
            raise CacheValueError(
                f"PickleSerializer cannot store a value of type {_describe(value)!r}: {exc}",
                details={"type": _describe(value)},
            ) from exc
        mac = hmac.new(self._keys[0], payload, hashlib.sha256).digest()
        return payload[: len(_MAGIC)] + mac + payload[len(_MAGIC) :]

    def loads(self, data: bytes) -> Any:
        """Check the signature, then unpickle; decimal text reads as an ``int``.

        Raises:
            CacheIntegrityError: unsigned, truncated or tampered data (never unpickled).

        Example:
            >>> s = PickleSerializer(secret_key=b"k" * 32)
            >>> s.loads(b"-7")
            -7
            >>> import pickle
            >>> s.loads(pickle.dumps("unsigned"))
            Traceback (most recent call last):
            ...
            utils.cache.errors.CacheIntegrityError: cached data is not signed by PickleSerializer: refused (never unpickled)
        """
        if type(data) is not bytes:
            data = bytes(data)
        if not data.startswith(_MAGIC):
            if _INT_TEXT.fullmatch(data):
                return int(data)
            raise CacheIntegrityError(
                "cached data is not signed by PickleSerializer: refused (never unpickled)",
                details={"size": len(data)},
            )
        mac, payload = data[len(_MAGIC) : _HEADER], _MAGIC + data[_HEADER:]
        if len(data) <= _HEADER or not any(
            hmac.compare_digest(mac, hmac.new(key, payload, hashlib.sha256).digest())
            for key in self._keys
        ):
            raise CacheIntegrityError(
                "cached pickle data failed its signature check: refused (never unpickled)",
                details={"size": len(data)},
            )
        try:
            return pickle.loads(payload[len(_MAGIC) :])  # noqa: S301 - signed by our key
        except Exception as exc:  # signed by us but unreadable here (a class that moved...)
            raise CacheIntegrityError(
                f"signed pickle data could not be loaded: {type(exc).__name__}: {exc}"
            ) from exc
