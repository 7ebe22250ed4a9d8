"""Key building: equivalent calls share a key, different ones never do, stable across processes."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import os
import subprocess
import sys
import textwrap
import uuid
from decimal import Decimal
from fractions import Fraction
from typing import Any, NamedTuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from utils.cache import _keys
from utils.cache._keys import MAX_KEY_LENGTH, KeySpec, shorten, stable_form
from utils.cache.decorator import cached
from utils.cache.memory import MemoryCache


class Color(enum.Enum):
    RED = "red"
    BLUE = 2


class Level(enum.IntEnum):
    LOW = 1


class Mode(str, enum.Enum):
    FAST = "fast"


class Perm(enum.Flag):
    R = 1
    W = 2


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: int
    label: str = dataclasses.field(default="", compare=False)


class Tenant:
    def __init__(self, slug: str) -> None:
        self.slug = slug

    def __cache_key__(self) -> str:
        return self.slug


class Pair(NamedTuple):
    a: int
    b: str


# -- forms --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "form"),
    [
        (None, "None"),
        (True, "1"),
        (False, "0"),
        (42, "42"),
        (-3, "-3"),
        (1.0, "1"),
        (-0.0, "0"),
        (0.1, "0.1"),
        (float("inf"), "inf"),
        (float("nan"), "nan"),
        ("a", '"a"'),
        ('say "hi"\\', '"say \\"hi\\"\\\\"'),
        (b"ab\x00", "b'ab\\x00'"),
        (bytearray(b"ab"), "b'ab'"),
        (Decimal("2.00"), "2"),
        (Decimal("2.5"), "Decimal(2.5)"),
        (Decimal("NaN"), "Decimal(NaN)"),
        (Fraction(3, 1), "3"),
        (Fraction(1, 3), "Fraction(1/3)"),
        (uuid.UUID(int=1), "UUID(00000000-0000-0000-0000-000000000001)"),
        (dt.date(2024, 5, 1), "date(2024-05-01)"),
        (dt.datetime(2024, 5, 1, 12, 30), "datetime(2024-05-01T12:30:00)"),
        (
            dt.datetime(2024, 5, 1, 14, 30, tzinfo=dt.timezone(dt.timedelta(hours=2))),
            "datetime(2024-05-01T12:30:00+00:00)",
        ),
        (dt.time(8, 15), "time(08:15:00)"),
        (dt.timedelta(days=1, seconds=5), "timedelta(1 day, 0:00:05)"),
        (Color.RED, f"{__name__}.Color.RED"),
        (Level.LOW, "1"),
        (Mode.FAST, '"fast"'),
        (Perm.R | Perm.W, f"{__name__}.Perm" + ("(3)" if sys.version_info < (3, 11) else ".R|W")),
        ((1, "a"), '(1,"a")'),
        ([1, [2]], "[1,[2]]"),
        ({"b": 1, "a": 2}, '{"a":2,"b":1}'),
        ({3, 1, 2}, "set{1,2,3}"),
        (frozenset({"x"}), 'set{"x"}'),
        (Pair(1, "b"), '(1,"b")'),
        (Point(1, 2, "ignored"), f"{__name__}.Point(x=1,y=2)"),
        (Tenant("acme"), f'{__name__}.Tenant("acme")'),
    ],
)
def test_stable_forms(value: Any, form: str) -> None:
    assert stable_form(value) == form


def test_huge_ints_beyond_the_str_digit_limit() -> None:
    huge = 10**5000
    assert stable_form(huge) == hex(huge)


def test_subclasses_and_foreign_numbers() -> None:
    class MyInt(int):
        pass

    class MyStr(str):
        pass

    class MyFloat(float):
        def __repr__(self) -> str:
            return "nope"

    class MyList(list):  # type: ignore[type-arg]
        pass

    class MyDict(dict):  # type: ignore[type-arg]
        pass

    class MyBytes(bytes):
        pass

    class MyDecimal(Decimal):
        pass

    class MyDatetime(dt.datetime):
        pass

    class MyDate(dt.date):
        pass

    class MyUUID(uuid.UUID):
        pass

    class Integral:  # like numpy.int64: not an int, but an Integral
        def __index__(self) -> int:
            return 7

    import numbers

    numbers.Integral.register(Integral)
    assert stable_form(MyInt(5)) == "5"
    assert stable_form(MyStr("s")) == '"s"'
    assert stable_form(MyFloat(2.5)) == "2.5"
    assert stable_form(MyList([1])) == "[1]"
    assert stable_form(MyDict(a=1)) == '{"a":1}'
    assert stable_form(MyBytes(b"x")) == "b'x'"
    assert stable_form(MyDecimal("3")) == "3"
    assert stable_form(MyDatetime(2024, 1, 1)) == "datetime(2024-01-01T00:00:00)"
    assert stable_form(MyDate(2024, 1, 1)) == "date(2024-01-01)"
    assert stable_form(MyUUID(int=0)).startswith("UUID(")
    assert stable_form(Integral()) == "7"


def test_aware_datetime_at_the_edge_keeps_its_offset() -> None:
    edge = dt.datetime(1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=5)))
    assert stable_form(edge) == "datetime(0001-01-01T00:00:00+05:00)"


def test_unkeyable_values_are_refused() -> None:
    with pytest.raises(TypeError, match=r"builtins\.object"):
        stable_form(object())
    with pytest.raises(TypeError, match="__cache_key__"):
        stable_form([1, {2: object()}])
    looped: list[Any] = []
    looped.append(looped)
    with pytest.raises(TypeError, match="a cycle"):
        stable_form(looped)


def test_shorten_keeps_a_readable_prefix_and_a_digest() -> None:
    short = "k" * MAX_KEY_LENGTH
    assert shorten(short) == short
    long_a, long_b = "p" * 150 + "a" * 100, "p" * 150 + "b" * 100
    assert len(shorten(long_a)) == 128 + 1 + 64
    assert shorten(long_a).startswith("p" * 128 + "~")
    assert shorten(long_a) != shorten(long_b)
    assert shorten(long_a) == shorten(long_a)
    assert shorten("\ud800" * 300)  # lone surrogates hash too


# -- KeySpec ------------------------------------------------------------------------------


def f(x: int = 1, y: str = "a") -> None: ...


class Repo:
    def get(self, user_id: int) -> None: ...

    @classmethod
    def make(cls, user_id: int) -> None: ...


class Other:
    def get(self, user_id: int) -> None: ...


def test_spec_defaults_namespace_and_self() -> None:
    spec = KeySpec(f)
    assert spec.namespace == f"{__name__}.f"
    assert spec.build((1, "a")) == f'{__name__}.f(x=1,y="a")'
    assert KeySpec(Repo.get).build((5,)) != KeySpec(Other.get).build((5,))
    assert [p.name for p in KeySpec(Repo.get).kept] == ["user_id"]
    assert [p.name for p in KeySpec(Repo.__dict__["make"].__func__).kept] == ["user_id"]
    assert [p.name for p in KeySpec(Repo.get, key_self=True).kept] == ["self", "user_id"]
    assert KeySpec(f, namespace="").build((1, "a")) == '(x=1,y="a")'


def test_spec_rejects_bad_ignore() -> None:
    with pytest.raises(TypeError, match=r"does not have: \['nope'\]"):
        KeySpec(f, ignore=("nope",))
    with pytest.raises(TypeError, match="collection of names"):
        KeySpec(f, ignore="x")


def test_unkeyable_argument_error_names_argument_type_and_fixes() -> None:
    spec = KeySpec(f)
    with pytest.raises(TypeError) as info:
        spec.build((1, object()))
    message = str(info.value)
    assert "argument 'y'" in message
    assert "builtins.object" in message
    assert "__cache_key__" in message
    assert "ignore=('y',)" in message


def test_custom_key_results() -> None:
    spec = KeySpec(f, namespace="ns")
    assert spec.custom("abc") == "ns:abc"
    assert spec.custom(42) == "ns:42"
    assert KeySpec(f, namespace="").custom("abc") == "abc"
    with pytest.raises(TypeError, match="return a str"):
        spec.custom(object())


def test_memo_only_remembers_exact_simple_types_and_stays_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = KeySpec(f)
    spec.build((1, "a"))
    spec.build((1.5, "a"))  # floats are not remembered
    spec.build((Level.LOW, "a"))  # nor IntEnum members
    assert list(spec.memo) == [(1, "a")]
    single = KeySpec(lambda x: None)
    single.build(("v",))
    assert single.memo == {"v": single.build(("v",))}
    monkeypatch.setattr(_keys, "MEMO_SIZE", 4)
    for i in range(10):
        single.build((i,))
    assert len(single.memo) <= 4


def test_variadic_parameters_are_keyed_but_not_memoized() -> None:
    def g(a: int, *args: int, **kwargs: int) -> None: ...

    spec = KeySpec(g)
    assert not spec.memoizable
    assert (
        spec.build((1, (2, 3), {"b": 4}))
        == f'{__name__}.{g.__qualname__}(a=1,args=(2,3),kwargs={{"b":4}})'
    )
    assert spec.memo == {}


# -- through @cached: equivalent calls share one entry ------------------------------------


def test_equivalent_calls_share_a_key() -> None:
    cache = MemoryCache()

    @cached(cache)
    def g(x: int = 1, *, y: str = "a") -> int:
        return x

    keys = {g.key_for(), g.key_for(1), g.key_for(x=1), g.key_for(1, y="a"), g.key_for(y="a")}
    assert len(keys) == 1
    assert g.key_for(2) not in keys
    assert g.key_for(1.0) in keys  # equal arguments share an entry, like lru_cache
    assert g.key_for(True) in keys


def test_memo_hits_agree_with_the_slow_path() -> None:
    cache = MemoryCache()

    @cached(cache)
    def g(x: Any) -> Any:
        return x

    first = g.key_for(1)
    assert g.key_for(True) == first == g.key_for(1.0) == g.key_for(Decimal(1))
    assert g.key_for(Mode.FAST) == g.key_for("fast")
    assert g.key_for("1") != first


def test_kwargs_order_does_not_matter() -> None:
    cache = MemoryCache()

    @cached(cache)
    def g(**kwargs: int) -> None: ...

    assert g.key_for(a=1, b=2) == g.key_for(b=2, a=1)


simple = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(),
    st.binary(max_size=8),
    st.decimals(allow_nan=False),
    st.dates(),
    st.datetimes(),
    st.times(),
    st.uuids(),
    st.sampled_from(list(Color) + list(Level) + list(Mode)),
)
values = st.recursive(
    simple,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=4).map(tuple),
        st.dictionaries(st.text(max_size=4), children, max_size=4),
        st.frozensets(st.one_of(st.integers(), st.text(max_size=4)), max_size=4),
    ),
    max_leaves=12,
)


@given(values, values)
@settings(max_examples=300, deadline=None)
def test_equal_forms_mean_equal_values(a: Any, b: Any) -> None:
    if stable_form(a) == stable_form(b):
        assert a == b


@given(values)
@settings(max_examples=200, deadline=None)
def test_forms_are_deterministic_and_follow_equality(value: Any) -> None:
    import copy

    assert stable_form(copy.deepcopy(value)) == stable_form(value)


@given(st.integers(), st.text(), st.booleans())
@settings(max_examples=200, deadline=None)
def test_positional_and_keyword_calls_share_a_key(x: int, y: str, z: bool) -> None:
    cache = MemoryCache()

    @cached(cache)
    def g(x: int, y: str = "", z: bool = False) -> None: ...

    key = g.key_for(x, y, z)
    assert key == g.key_for(x, y=y, z=z) == g.key_for(z=z, y=y, x=x) == g.key_for(x, y, z=z)
    if not y and not z:
        assert key == g.key_for(x)


@given(
    st.lists(st.tuples(st.integers(), st.text(max_size=5)), min_size=2, max_size=6, unique=True)
)
@settings(max_examples=100, deadline=None)
def test_different_arguments_get_different_keys(calls: list[tuple[int, str]]) -> None:
    cache = MemoryCache()

    @cached(cache)
    def g(x: int, y: str) -> None: ...

    assert len({g.key_for(x, y) for x, y in calls}) == len(calls)


CROSS_PROCESS = textwrap.dedent(
    """
    import datetime as dt, json, sys, uuid
    from decimal import Decimal
    sys.path.insert(0, {tests!r})
    from test_keys import SAMPLES, sample_function
    print(json.dumps([sample_function.key_for(*args) for args in SAMPLES]))
    """
)

# Types whose module is the same whichever way the test file is imported.
StableColor = enum.Enum("StableColor", {"BLUE": 2}, module="stable_samples")
StablePoint = dataclasses.make_dataclass(
    "StablePoint", ["x", "y"], frozen=True, namespace={"__module__": "stable_samples"}
)

SAMPLES: list[tuple[Any, ...]] = [
    (1, "a"),
    ("x" * 300, {"b", "a", "c", "zz", "é"}),
    ({"k2": [1, 2.5], "k1": (None, True)}, frozenset({"p", "q", "r"})),
    (Decimal("1.25"), uuid.UUID(int=7)),
    (dt.datetime(2024, 1, 1, 9, tzinfo=dt.timezone.utc), dt.date(2020, 2, 29)),
    (StableColor.BLUE, StablePoint(1, 2)),
    (uuid.SafeUUID.safe, Level.LOW),
]


@cached(MemoryCache(), namespace="stable")
def sample_function(a: Any, b: Any = None) -> None: ...


@pytest.mark.parametrize("seed", ["0", "12345"])
def test_keys_are_stable_across_processes(seed: str) -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    env = {**os.environ, "PYTHONHASHSEED": seed}
    out = subprocess.run(
        [sys.executable, "-c", CROSS_PROCESS.format(tests=here)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=60,
    )
    theirs = json.loads(out.stdout)
    ours = [sample_function.key_for(*args) for args in SAMPLES]
    assert theirs == ours
