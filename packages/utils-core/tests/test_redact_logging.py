"""Property: whatever nesting holds a credential URL, a log call neither raises nor leaks it."""

from __future__ import annotations

import io
import string
from typing import Any, NamedTuple

import pytest
from hypothesis import given
from hypothesis import strategies as st

from utils.core import configure_logging, get_logger


class Pair(NamedTuple):
    left: Any
    right: Any


# "Pw" cannot occur in anything else the test logs (lower-case text, digits, our own keys).
# Shared: every draw in one example uses the same password.
PASSWORD = st.shared(
    st.text(alphabet=string.ascii_letters + string.digits + "!$%*-_.", min_size=1, max_size=12),
    key="password",
).map(lambda text: "Pw" + text)


def _form(password: str, kind: int) -> str | bytes:
    url = f"redis://app:{password}@cache.internal:6379/0"
    return (url, f"cannot connect to {url}: refused", url.encode())[kind]


#: The credential URL as text, inside a sentence, and as bytes.
URL_FORMS = st.builds(_form, PASSWORD, st.integers(0, 2))
#: Dict keys: text only, as the JSON renderer cannot write bytes or tuple keys (see
#: test_redact.py for those: redaction masks them too).
KEYS = st.text(string.ascii_lowercase) | st.builds(_form, PASSWORD, st.integers(0, 1))
# 64-bit ints: orjson cannot write larger ones (a renderer limit, not a redaction one).
NOISE = st.text(string.ascii_lowercase, max_size=8) | st.integers(-(2**63), 2**63 - 1) | st.none()


def nested(leaves: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Any nesting of lists, tuples, namedtuples, sets, frozensets and dicts over ``leaves``."""
    hashable = st.recursive(
        leaves,
        lambda children: (
            st.tuples(children, children)
            | st.builds(Pair, children, children)
            | st.frozensets(children, max_size=3)
        ),
        max_leaves=4,
    )
    return st.recursive(
        leaves,
        lambda children: (
            st.lists(children, max_size=3)
            | st.lists(children, max_size=3).map(tuple)
            | st.builds(Pair, children, children)
            | st.sets(hashable, max_size=3)
            | st.frozensets(hashable, max_size=3)
            | st.dictionaries(KEYS, children, max_size=3)
        ),
        max_leaves=10,
    )


@pytest.mark.parametrize("format", ["json", "console"])
@given(password=PASSWORD, payload=nested(URL_FORMS), mixed=nested(URL_FORMS | NOISE))
def test_a_nested_credential_url_is_never_logged(
    format: Any, password: str, payload: Any, mixed: Any
) -> None:
    out = io.StringIO()
    configure_logging(format=format, stream=out)
    get_logger("utils.property").warning("payload.logged", payload=payload, mixed=mixed)
    text = out.getvalue()
    assert "payload.logged" in text
    assert password not in text
