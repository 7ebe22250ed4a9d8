from __future__ import annotations

import string
import sys
from typing import NamedTuple

import pytest
from hypothesis import given
from hypothesis import strategies as st

from utils.core._redact import (
    _LEAF_TYPES,
    _MAX_LEAF_TYPES,
    MASK,
    Redactor,
    redact_text,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("postgresql://app:hunter2@db:5432/main", "postgresql://app:***@db:5432/main"),
        ("redis://:pw@cache:6379/0", "redis://:***@cache:6379/0"),
        ("amqp://guest:guest@mq//", "amqp://guest:***@mq//"),
        ("Authorization: Bearer abc.def-ghi", "Authorization: Bearer ***"),
        ("authorization: basic dXNlcjpwYXNz", "authorization: basic ***"),
        ("GET /x?password=xyz&page=2", "GET /x?password=***&page=2"),
        ("Password: s3cr3t! more", "Password: *** more"),
        ("api_key=abc123,other=1", "api_key=***,other=1"),
        ("id AKIAIOSFODNN7EXAMPLE used", "id *** used"),
        ("key wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY end", "key *** end"),
    ],
)
def test_secrets_in_text_are_masked(text: str, expected: str) -> None:
    assert redact_text(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "user.login",
        "cache.miss",
        "commit 0123456789abcdef0123456789abcdef01234567",  # a git SHA is not a key
        "https://example.com/path?page=2",
        "connection refused by host db.internal port 5432",
        "a" * 60,
        "ABCDEFGHIJABCDEFGHIJABCDEFGHIJABCDEFGHIJ",  # 40 chars, but no digits/lowercase
        "x" * 41 + "Aa1",  # a longer run is not an AWS secret key
        "mailto:ann@example.com",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert redact_text(text) == text


@given(st.text(alphabet=string.ascii_letters + string.digits + "._-", max_size=30))
def test_short_identifiers_never_change(text: str) -> None:
    assert redact_text(text) == text


@given(
    user=st.text(alphabet=string.ascii_lowercase, min_size=1, max_size=10),
    password=st.text(alphabet=string.ascii_letters + string.digits + "!$%^*", min_size=1),
    host=st.text(alphabet=string.ascii_lowercase, min_size=1, max_size=10),
)
def test_url_passwords_never_survive(user: str, password: str, host: str) -> None:
    masked = redact_text(f"postgresql://{user}:{password}@{host}/db")
    assert masked == f"postgresql://{user}:{MASK}@{host}/db"


def test_key_decisions_are_memoised_and_bounded() -> None:
    redactor = Redactor(["SSN"])
    assert redactor.is_sensitive("customer_ssn")
    assert redactor.is_sensitive("X-Api-Key")
    assert redactor.is_sensitive("AWS_SECRET_ACCESS_KEY")
    assert not redactor.is_sensitive("user")
    for i in range(Redactor._MAX_MEMO + 10):
        redactor.is_sensitive(f"key{i}")
    assert len(redactor._decisions) <= Redactor._MAX_MEMO


def test_nested_values_are_copied_not_mutated() -> None:
    redactor = Redactor()
    original = {"password": "p", "items": [("redis://:pw@h", {"token": "t"})]}
    event = {"payload": original}
    redactor(None, "info", event)
    assert event["payload"] == {"password": MASK, "items": [("redis://:***@h", {"token": MASK})]}
    assert original["password"] == "p"


def test_exception_values_are_rendered_and_masked() -> None:
    event: dict[str, object] = {"error": ValueError("postgresql://a:b@c/d unreachable")}
    Redactor()(None, "info", event)
    assert event["error"] == "ValueError: postgresql://a:***@c/d unreachable"


def test_non_string_values_pass_through() -> None:
    event = {"n": 3, "ok": True, "none": None, "short": "abc"}
    assert Redactor()(None, "info", dict(event)) == event


# --- tuples of every kind, sets, bytes (regressions) ----------------------------------------


class Snapshot(NamedTuple):
    """Shaped like a library's ``BreakerSnapshot``."""

    state: str
    failures: int
    opened_at: float | None = None


class Credentials(NamedTuple):
    user: str
    password: str


URL = "redis://user:hunter2@cache:6379/0"
MASKED_URL = "redis://user:***@cache:6379/0"


def test_namedtuples_are_rebuilt_with_their_type() -> None:
    event = {"snapshot": Snapshot(URL, 3), "v": sys.version_info}
    Redactor()(None, "info", event)
    assert event["snapshot"] == Snapshot(MASKED_URL, 3)
    assert type(event["snapshot"]) is Snapshot
    # a structseq cannot be rebuilt from its items: it becomes a plain tuple of them
    assert event["v"] == tuple(sys.version_info)
    assert type(event["v"]) is tuple


def test_namedtuple_fields_are_masked_by_name() -> None:
    assert Redactor().value(Credentials("ann", "hunter2")) == Credentials("ann", MASK)


def test_tuple_subclasses_that_cannot_be_rebuilt_become_plain_tuples() -> None:
    class Pair(tuple[str, str]):
        def __new__(cls, a: str, b: str) -> Pair:
            return super().__new__(cls, (a, b))

    assert Redactor().value(Pair(URL, "x")) == (MASKED_URL, "x")
    assert Redactor().value([Pair(URL, "x")]) == [(MASKED_URL, "x")]


def test_list_subclasses_become_plain_lists() -> None:
    class Items(list[str]):
        def __init__(self, first: str, second: str) -> None:
            super().__init__([first, second])

    assert Redactor().value(Items(URL, "x")) == [MASKED_URL, "x"]


def test_urls_in_sets_and_frozensets_are_masked() -> None:
    event: dict[str, object] = {"hosts": {URL, "a"}, "frozen": frozenset({URL, ("b", URL)})}
    Redactor()(None, "info", event)
    assert event["hosts"] == {MASKED_URL, "a"}
    assert type(event["hosts"]) is set
    assert event["frozen"] == frozenset({MASKED_URL, ("b", MASKED_URL)})
    assert type(event["frozen"]) is frozenset


def test_urls_in_bytes_are_masked() -> None:
    event: dict[str, object] = {
        "raw": URL.encode(),
        "mutable": bytearray(URL.encode()),
        "nested": [b"GET " + URL.encode() + b" \xff\xfe"],  # not UTF-8: kept byte for byte
        "plain": b"\x00\x01 no secret here at all, just bytes",
    }
    Redactor()(None, "info", event)
    assert event["raw"] == MASKED_URL.encode()
    assert event["mutable"] == MASKED_URL.encode()
    assert event["nested"] == [b"GET " + MASKED_URL.encode() + b" \xff\xfe"]
    assert event["plain"] == b"\x00\x01 no secret here at all, just bytes"


def test_urls_in_dict_keys_are_masked() -> None:
    assert Redactor().value({URL: 1, (URL,): 2}) == {MASKED_URL: 1, (MASKED_URL,): 2}


# --- a redaction failure never escapes and never shows the value ----------------------------


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("broken __str__")


def test_a_value_that_cannot_be_redacted_is_replaced_not_raised() -> None:
    looped: list[object] = [URL]
    looped.append(looped)
    event: dict[str, object] = {
        "before": URL,
        "bad": [URL, Unprintable()],
        "loop": looped,
        "password": "p",
        "after": {"k": URL},
    }
    Redactor()(None, "info", event)
    assert event["bad"] == "<list not logged: redaction failed>"
    assert event["loop"] == "<list not logged: redaction failed>"
    assert event["before"] == MASKED_URL
    assert event["after"] == {"k": MASKED_URL}
    assert event["password"] == MASK
    assert "hunter2" not in repr(event)


def test_non_string_event_keys_do_not_break_redaction() -> None:
    event: dict[object, object] = {1: URL, "k": URL}
    Redactor()(None, "info", event)  # type: ignore[arg-type]
    assert event == {1: MASKED_URL, "k": MASKED_URL}


def test_leaf_type_memo_is_bounded() -> None:
    redactor = Redactor()
    for i in range(_MAX_LEAF_TYPES + 10):
        redactor(None, "info", {"v": type(f"T{i}", (), {})()})
    assert len(_LEAF_TYPES) <= _MAX_LEAF_TYPES
    assert redactor(None, "info", {"v": [URL]}) == {"v": [MASKED_URL]}
