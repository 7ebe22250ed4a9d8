"""JsonSerializer and PickleSerializer: round trips (hypothesis), refusals, tampering."""

from __future__ import annotations

import collections
import enum
import importlib.util
import math
import pickle
import threading
from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone, tzinfo
from decimal import Decimal
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from utils.cache.errors import CacheError, CacheIntegrityError, CacheValueError
from utils.cache.serializers import (
    MIN_SECRET_BYTES,
    JsonSerializer,
    PickleSerializer,
    Serializer,
)
from utils.core import ValidationError

SECRET = "k" * MIN_SECRET_BYTES
HAVE_ORJSON = importlib.util.find_spec("orjson") is not None
BACKENDS = ["orjson", "json"] if HAVE_ORJSON else ["json"]


def same(a: Any, b: Any) -> None:
    """Assert ``b`` is ``a`` rebuilt: equal, with the same types all the way down."""
    assert type(a) is type(b), (a, b)
    if isinstance(a, float):
        assert (math.isnan(a) and math.isnan(b)) or (
            a == b and math.copysign(1, a) == math.copysign(1, b)
        )
    elif isinstance(a, list | tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            same(x, y)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for key in a:
            same(a[key], b[key])
    elif isinstance(a, datetime | time):
        assert a == b
        assert a.replace(tzinfo=None) == b.replace(tzinfo=None)
        assert a.utcoffset() == b.utcoffset()
        assert a.fold == b.fold
        if isinstance(a.tzinfo, ZoneInfo):
            assert b.tzinfo is a.tzinfo
    else:
        assert a == b, (a, b)


# -- strategies ----------------------------------------------------------------------------------

fixed_zones = st.builds(
    timezone,
    st.timedeltas(
        min_value=timedelta(hours=-23, minutes=-59), max_value=timedelta(hours=23, minutes=59)
    ),
)
zones = st.none() | st.timezones() | fixed_zones

hashable_leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.text()
    | st.binary(max_size=20)
    | st.dates()
    | st.uuids()
    | st.decimals(allow_nan=False)
)
leaves = (
    hashable_leaves
    | st.floats()
    | st.datetimes(timezones=zones)
    | st.times(timezones=st.none() | st.timezones() | fixed_zones)
    | st.timedeltas()
    | st.just("__utils__")
)
hashables = st.recursive(hashable_leaves, lambda inner: st.tuples(inner, inner), max_leaves=4)
values = st.recursive(
    leaves,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=4).map(tuple)
        | st.dictionaries(st.text(max_size=8) | st.just("__utils__"), inner, max_size=4)
        | st.dictionaries(hashables, inner, max_size=3)
        | st.sets(hashables, max_size=3)
        | st.frozensets(hashables, max_size=3)
    ),
    max_leaves=20,
)


# -- JSON round trips ---------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=300, deadline=None)
@given(value=values)
def test_json_round_trips_nested_values(backend: Any, value: Any) -> None:
    serializer = JsonSerializer(backend=backend)
    data = serializer.dumps(value)
    assert isinstance(data, bytes)
    same(value, serializer.loads(data))


@pytest.mark.skipif(not HAVE_ORJSON, reason="orjson is not installed")
@settings(max_examples=150, deadline=None)
@given(value=values)
def test_the_two_json_backends_read_each_other(value: Any) -> None:
    fast, stdlib = JsonSerializer(backend="orjson"), JsonSerializer(backend="json")
    same(value, stdlib.loads(fast.dumps(value)))
    same(value, fast.loads(stdlib.dumps(value)))


@pytest.mark.parametrize("backend", BACKENDS)
def test_json_special_values(backend: Any) -> None:
    s = JsonSerializer(backend=backend)
    berlin = ZoneInfo("Europe/Berlin")
    cases = [
        datetime(2024, 10, 27, 2, 30, fold=1, tzinfo=berlin),  # the second 02:30 of the night
        datetime(2024, 10, 27, 2, 30, fold=0, tzinfo=berlin),
        datetime(2024, 1, 1, 12, 0),
        datetime(2024, 1, 1, 12, 0, fold=1),
        datetime(2024, 1, 1, tzinfo=timezone(timedelta(hours=5, minutes=30))),
        time(8, 15, 1, 5),
        time(8, 15, tzinfo=timezone.utc),
        time(8, 15, fold=1, tzinfo=berlin),
        Decimal("-0.000"),
        Decimal("Infinity"),
        2**200,
        -(2**64),
        2**63 - 1,
        -(2**63),
        float("inf"),
        float("-inf"),
        -0.0,
        b"",
        (),
        frozenset(),
        {(1, "a"): {2: [3]}},
        {"__utils__": "tuple", "v": [1]},
        {"nested": {"__utils__": 1}},
        "__utils__",
        ['"__utils__"', '{"__utils__":"uuid","v":"x"}'],
        timedelta(days=-3, microseconds=7),
    ]
    for value in cases:
        same(value, s.loads(s.dumps(value)))
    assert math.isnan(s.loads(s.dumps(float("nan"))))
    assert s.loads(s.dumps(Decimal("NaN"))).is_nan()


@pytest.mark.parametrize("backend", BACKENDS)
def test_plain_json_stays_plain(backend: Any) -> None:
    s = JsonSerializer(backend=backend)
    assert s.dumps(5) == b"5"  # INCRBY reads and writes this
    assert s.dumps(-12) == b"-12"
    assert s.dumps({"a": [1, None, True, "é"]}) == '{"a":[1,null,true,"é"]}'.encode()
    assert s.loads(b"17") == 17
    assert (
        s.dumps(["__utils_cache_swr__", 1.5, {"x": 1}]) == b'["__utils_cache_swr__",1.5,{"x":1}]'
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_user_dicts_with_the_tag_key_are_escaped(backend: Any) -> None:
    s = JsonSerializer(backend=backend)
    sneaky = {"__utils__": "bytes", "v": "AAAA"}
    data = s.dumps(sneaky)
    assert b'"map"' in data
    assert s.loads(data) == sneaky


class Color(enum.Enum):
    RED = 1


class Point(NamedTuple):
    x: int


@dataclass
class Box:
    size: int


class MyStr(str):
    __slots__ = ()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("value", "type_name", "path"),
    [
        (object(), "object", ""),
        ({"a": [1, object()]}, "object", "['a'][1]"),
        ([(1, {"k": Color.RED})], "tests.test_serializers.Color", "[0][1]['k']"),
        (Point(1), "tests.test_serializers.Point", ""),
        (Box(1), "tests.test_serializers.Box", ""),
        (collections.OrderedDict(a=1), "collections.OrderedDict", ""),
        ({1: threading.Lock()}, "_thread.lock", "[1]"),
        (MyStr("x"), "tests.test_serializers.MyStr", ""),
        (bytearray(b"x"), "bytearray", ""),
        ({frozenset([complex(1, 1)])}, "complex", "[0][0]"),
    ],
)
def test_json_refuses_what_it_cannot_round_trip(
    backend: Any, value: Any, type_name: str, path: str
) -> None:
    with pytest.raises(CacheValueError) as caught:
        JsonSerializer(backend=backend).dumps(value)
    error = caught.value
    assert isinstance(error, ValidationError)
    assert error.details["type"].endswith(type_name.rsplit(".", 1)[-1])
    assert error.details["path"] == path
    assert repr(type_name.rsplit(".", 1)[-1])[1:-1] in str(error)


@pytest.mark.parametrize("backend", BACKENDS)
def test_json_refuses_self_containing_and_unencodable_values(backend: Any) -> None:
    s = JsonSerializer(backend=backend)
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(CacheValueError, match="deeply"):
        s.dumps(loop)
    with pytest.raises(CacheValueError):
        s.dumps("lone surrogate \ud800")
    zone_without_key = ZoneInfo.from_file(_berlin_file())
    with pytest.raises(CacheValueError, match="time"):
        s.dumps(time(1, tzinfo=zone_without_key))
    with pytest.raises(CacheValueError, match="datetime"):
        s.dumps(datetime(2024, 1, 1, tzinfo=Nowhere()))
    moment = datetime(2024, 1, 1, tzinfo=zone_without_key)
    same(moment.astimezone(timezone(timedelta(hours=1))), s.loads(s.dumps(moment)))


class Nowhere(tzinfo):
    """A zone that never knows its offset."""

    def utcoffset(self, dt: datetime | None) -> timedelta | None:
        return None

    def dst(self, dt: datetime | None) -> timedelta | None:
        return None

    def tzname(self, dt: datetime | None) -> str | None:
        return None


def _berlin_file() -> Any:
    import io
    from importlib import resources

    try:
        return io.BytesIO(
            resources.files("tzdata.zoneinfo.Europe").joinpath("Berlin").read_bytes()
        )
    except ModuleNotFoundError:
        from zoneinfo import TZPATH

        for root in TZPATH:
            try:
                with open(f"{root}/Europe/Berlin", "rb") as handle:
                    return io.BytesIO(handle.read())
            except OSError:
                continue
    pytest.skip("no time zone data")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "data",
    [
        b"{not json",
        b"",
        b'{"__utils__":"martian","v":1}',
        b'{"__utils__":"bytes","v":"!!"}',
        b'{"__utils__":"timedelta","v":[1]}',
        b'{"__utils__":"map","v":[[[1],2]]}',
        b"\xff\xfe",
    ],
)
def test_json_refuses_data_it_did_not_write(backend: Any, data: bytes) -> None:
    with pytest.raises(CacheIntegrityError) as caught:
        JsonSerializer(backend=backend).loads(data)
    assert isinstance(caught.value, CacheError)


def test_json_backend_choice() -> None:
    assert JsonSerializer().backend == ("orjson" if HAVE_ORJSON else "json")
    if not HAVE_ORJSON:
        with pytest.raises(ValidationError, match="orjson"):
            JsonSerializer(backend="orjson")
    assert JsonSerializer(backend="json").backend == "json"
    assert repr(JsonSerializer(backend="json")) == "JsonSerializer(backend='json')"
    with pytest.raises(ValidationError, match="backend"):
        JsonSerializer(backend="yaml")  # type: ignore[arg-type]


def test_serializers_satisfy_the_protocol() -> None:
    assert isinstance(JsonSerializer(), Serializer)
    assert isinstance(PickleSerializer(SECRET), Serializer)


# -- pickle ------------------------------------------------------------------------------------


class Exploit:
    """Unpickling this would record that code ran."""

    ran: list[int] = []  # noqa: RUF012

    def __reduce__(self) -> Any:
        return (Exploit.ran.append, (1,))


@settings(max_examples=200, deadline=None)
@given(value=values)
def test_pickle_round_trips(value: Any) -> None:
    s = PickleSerializer(SECRET)
    same(value, s.loads(s.dumps(value)))


@given(number=st.integers())
def test_pickle_stores_64_bit_ints_as_text(number: int) -> None:
    s = PickleSerializer(SECRET)
    data = s.dumps(number)
    if -(2**63) <= number < 2**63:
        assert data == str(number).encode()
    else:
        assert data.startswith(b"U1")
    assert s.loads(data) == number


def test_pickle_keeps_bool_a_bool() -> None:
    s = PickleSerializer(SECRET)
    assert s.loads(s.dumps(True)) is True
    assert s.dumps(True).startswith(b"U1")


@settings(max_examples=200, deadline=None)
@given(position=st.integers(min_value=0), bit=st.integers(min_value=0, max_value=7))
def test_any_flipped_bit_is_refused(position: int, bit: int) -> None:
    s = PickleSerializer(SECRET)
    data = bytearray(s.dumps({"payload": list(range(10))}))
    data[position % len(data)] ^= 1 << bit
    with pytest.raises(CacheIntegrityError):
        s.loads(bytes(data))


def test_unsigned_pickles_are_never_unpickled() -> None:
    s = PickleSerializer(SECRET)
    Exploit.ran.clear()
    evil = pickle.dumps(Exploit())
    for data in (evil, b"U1" + evil, b"U1" + b"\x00" * 32 + evil, b"U1", b"U1" + b"x" * 32):
        with pytest.raises(CacheIntegrityError, match="never unpickled"):
            s.loads(data)
    signed_by_someone_else = PickleSerializer("another-secret-key-0123456789").dumps(Exploit())
    with pytest.raises(CacheIntegrityError):
        s.loads(signed_by_someone_else)
    assert Exploit.ran == []


def test_truncated_data_is_refused() -> None:
    s = PickleSerializer(SECRET)
    data = s.dumps("some text")
    for cut in range(len(data)):
        if data[:cut].isdigit():
            continue
        with pytest.raises(CacheIntegrityError):
            s.loads(data[:cut])


def test_fallback_keys_read_old_data_and_new_data_uses_the_new_key() -> None:
    old = PickleSerializer("the-old-secret-key-0123456789")
    rotated = PickleSerializer(
        b"the-new-secret-key-0123456789", fallback_keys=[b"the-old-secret-key-0123456789"]
    )
    assert rotated.loads(old.dumps([1, 2])) == [1, 2]
    with pytest.raises(CacheIntegrityError):
        old.loads(rotated.dumps([1, 2]))
    assert "secret" not in repr(rotated).replace("secret_key", "")
    assert repr(rotated) == "PickleSerializer(secret_key=<2 key(s) hidden>)"


def test_signed_data_that_cannot_be_loaded_is_an_integrity_error() -> None:
    import hashlib
    import hmac

    payload = b"U1" + b"\x80\x05not a pickle"
    mac = hmac.new(SECRET.encode(), payload, hashlib.sha256).digest()
    with pytest.raises(CacheIntegrityError, match="could not be loaded"):
        PickleSerializer(SECRET).loads(b"U1" + mac + payload[2:])


def test_pickle_accepts_memoryview_and_bytearray() -> None:
    s = PickleSerializer(SECRET)
    data = s.dumps("x")
    assert s.loads(memoryview(data)) == "x"  # type: ignore[arg-type]
    assert s.loads(bytearray(data)) == "x"  # type: ignore[arg-type]


def test_unpicklable_values_are_refused_naming_the_type() -> None:
    with pytest.raises(CacheValueError, match="lock") as caught:
        PickleSerializer(SECRET).dumps({"lock": threading.Lock()})
    assert caught.value.details["type"] == "dict"
    with pytest.raises(CacheValueError, match="function"):
        PickleSerializer(SECRET).dumps(lambda: 1)


@pytest.mark.parametrize("key", ["", "short", b"x" * (MIN_SECRET_BYTES - 1), 12345])
def test_weak_or_wrong_secret_keys_are_refused(key: Any) -> None:
    with pytest.raises(ValidationError, match="secret_key"):
        PickleSerializer(key)
    with pytest.raises(ValidationError, match="fallback_keys"):
        PickleSerializer(SECRET, fallback_keys=[key])


def test_secret_keys_are_accepted_as_utils_core_secret() -> None:
    from utils.core import Secret

    plain = PickleSerializer(SECRET)
    wrapped = PickleSerializer(Secret(SECRET))
    assert wrapped.loads(plain.dumps({"a": 1})) == {"a": 1}
    assert plain.loads(wrapped.dumps({"a": 1})) == {"a": 1}
    rotated = PickleSerializer(
        Secret("the-new-secret-key-0123456789"), fallback_keys=[Secret(SECRET)]
    )
    assert rotated.loads(plain.dumps([1])) == [1]
    assert SECRET not in repr(wrapped)
    with pytest.raises(ValidationError, match="secret_key"):
        PickleSerializer(Secret("short"))


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_sub_second_utc_offset_survives(backend: Any) -> None:
    # fromisoformat drops a sub-second offset on Python 3.10 and 3.11 (found by hypothesis).
    zone = timezone(timedelta(hours=1, microseconds=1))
    serializer = JsonSerializer(backend=backend)
    for value in (time(12, 0, tzinfo=zone), datetime(2024, 5, 1, 12, tzinfo=zone)):
        back = serializer.loads(serializer.dumps(value))
        assert back == value
        assert back.utcoffset() == value.utcoffset()
