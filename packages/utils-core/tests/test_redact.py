from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from utils.core._redact import MASK, Redactor, redact_text


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
