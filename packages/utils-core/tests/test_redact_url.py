"""utils.core.redact_url: URLs safe to show in errors, logs and HTTP answers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from utils.core import redact_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://u:pw@h/p?a=1", "https://u:***@h/p?a=1"),
        ("https://ghp_tokenvalue@h/p", "https://***@h/p"),
        ("https://u:p%40ss:w@h:8443/p", "https://u:***@h:8443/p"),
        ("https://h/p?api%5Fkey=abc&x=1&token", "https://h/p?api%5Fkey=***&x=1&token"),
        (
            "https://h/p?X-Amz-Signature=abc&X-Amz-Date=1",
            "https://h/p?X-Amz-Signature=***&X-Amz-Date=1",
        ),
        ("https://h/p?q=1#access_token=abc", "https://h/p?q=1"),
        ("https://h/p?monkey=1&keyword=2", "https://h/p?monkey=1&keyword=2"),
        ("https://h/p?code=oauth-code&state=s", "https://h/p?code=***&state=s"),
        (
            "https://h/p?client_secret=x&session_id=y",
            "https://h/p?client_secret=***&session_id=***",
        ),
        ("http://[::1/p", "<unparseable URL>"),
        ("/relative/path?token=t", "/relative/path?token=***"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_redact_url_takes_url_objects() -> None:
    class URL:  # httpx.URL, yarl.URL: anything whose str() is the URL
        def __str__(self) -> str:
            return "https://u:pw@h/p?token=t"

    assert redact_url(URL()) == "https://u:***@h/p?token=***"


@given(
    secret=st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=8, max_size=30),
    name=st.sampled_from(["token", "api_key", "X-Amz-Signature", "password", "sig", "code"]),
)
def test_a_secret_in_the_url_never_survives(secret: str, name: str) -> None:
    url = f"https://user:{secret}@api.example/v1/{name}?{name}={secret}&page=2#{secret}"
    shown = redact_url(url)
    assert secret not in shown
    assert shown.startswith("https://user:***@api.example/v1/")
    assert shown.endswith("&page=2")
