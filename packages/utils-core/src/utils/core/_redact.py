"""Masking of secrets in log events: sensitive keys and secret-looking values.

Kept separate from the logging set-up so that it is easy to test and reuse (the ``Settings``
repr and error messages use the same masking).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, MutableMapping
from typing import Any

MASK = "***"

#: Substrings that make a key sensitive wherever they appear in it (case-insensitive):
#: ``db_password``, ``X-Api-Key``, ``aws_secret_access_key`` and ``github_token`` all match.
DEFAULT_SENSITIVE_KEY_PARTS: tuple[str, ...] = (
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "authorization",
    "api_key",
    "apikey",
    "api-key",
    "private_key",
    "credential",
    "cookie",
    "session_key",
)

# Each kind of embedded secret has its own pattern, tried only when a cheap substring test
# says it could match: most logged strings are short identifiers that need no regex at all.
# (A single alternation regex looked neat but cost microseconds per string.)
_URL_CREDENTIALS = re.compile(r"(://[^:/@\s]*:)[^@/\s]+@")  # scheme://user:password@
_AUTH_HEADER = re.compile(r"\b((?:bearer|basic|token)\s+)[A-Za-z0-9._~+/\-]+=*", re.IGNORECASE)
# `(?<!://)`: in `scheme://apikey:pw@host` the user name is not a key; the URL rule masks pw.
_KEY_VALUE = re.compile(
    r"(?<!://)\b((?:password|passwd|pwd|secret|token|api_key|apikey|access_key|"
    r"aws_secret_access_key|aws_session_token)\s*[=:]\s*)[^\s&,;'\"]+",
    re.IGNORECASE,
)
_AWS_ACCESS_KEY_ID = re.compile(r"(?<![A-Za-z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Za-z0-9])")
_BASE64_RUN = re.compile(r"[A-Za-z0-9/+=]{40,}")


# Query parameters whose values are secrets: a name containing one of these parts
# (``access_token``, ``X-Amz-Signature``, ``client_secret``...) or equal to one of the names.
# The parts extend the log-redaction keys with the parameters of signed and OAuth URLs.
_URL_SECRET_PARTS = (
    *DEFAULT_SENSITIVE_KEY_PARTS,
    "session",
    "signature",
    "access_key",
)
_URL_SECRET_NAMES = frozenset({"key", "sig", "code", "auth", "pass", "jwt", "sid"})


def _secret_parameter(name: str) -> bool:
    lowered = name.lower()
    return lowered in _URL_SECRET_NAMES or any(part in lowered for part in _URL_SECRET_PARTS)


def redact_url(url: object) -> str:
    """``url`` as text with its credentials and secret query values masked, and no fragment.

    For URLs that end up in error messages, logs or HTTP answers (an upstream's address in
    an exception, a request URL in an access line). ``https://user:pw@host`` keeps the user
    name; a user-info without a password (often a token: ``https://ghp_x@github.com``) is
    masked whole; a query value is masked when its name says secret (``token``,
    ``api_key``, ``X-Amz-Signature``, ``code``, ``sig``...); the fragment, where OAuth puts
    tokens and which never reaches a server, is dropped. Accepts anything whose ``str()`` is
    a URL (``httpx.URL``, ``yarl.URL``).

    Example:
        >>> redact_url("https://bob:hunter2@api.example/v1?api_key=k1&page=2#access_token=t")
        'https://bob:***@api.example/v1?api_key=***&page=2'
    """
    from urllib.parse import unquote_plus, urlsplit, urlunsplit

    text = str(url)
    try:
        parts = urlsplit(text)
    except ValueError:  # e.g. an unbalanced IPv6 bracket: show nothing rather than a secret
        return "<unparseable URL>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user, colon, _password = userinfo.partition(":")
        netloc = f"{user}:{MASK}@{host}" if colon else f"{MASK}@{host}"
    query = parts.query
    if query:
        pairs = []
        for pair in query.split("&"):
            name, equals, _value = pair.partition("=")
            secret = equals and _secret_parameter(unquote_plus(name))
            pairs.append(f"{name}={MASK}" if secret else pair)
        query = "&".join(pairs)
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def _keep_prefix(match: re.Match[str]) -> str:
    return match.group(1) + MASK


def _keep_url_prefix(match: re.Match[str]) -> str:
    return match.group(1) + MASK + "@"


def _mask_aws_secret(match: re.Match[str]) -> str:
    # An AWS secret access key is exactly 40 base64 characters mixing upper case, lower
    # case and digits; 40-character hex digests (git SHAs) and longer runs are left alone.
    run = match.group(0)
    if (
        len(run) == 40
        and any(c.isupper() for c in run)
        and any(c.islower() for c in run)
        and any(c.isdigit() for c in run)
    ):
        return MASK
    return run


def redact_text(text: str) -> str:
    """Mask credentials embedded in free text (URLs, auth headers, AWS keys, key=value).

    Example:
        >>> redact_text("postgresql://app:hunter2@db:5432/main")
        'postgresql://app:***@db:5432/main'
        >>> redact_text("curl -H 'Authorization: Bearer abc.def'")
        "curl -H 'Authorization: Bearer ***'"
    """
    if len(text) < 20 and " " not in text and "=" not in text and ":" not in text:
        return text  # a short identifier cannot hold any of the patterns below
    if "@" in text and "://" in text:
        text = _URL_CREDENTIALS.sub(_keep_url_prefix, text)
    lowered = text.lower()
    if "bearer" in lowered or "basic" in lowered or "token" in lowered:
        text = _AUTH_HEADER.sub(_keep_prefix, text)
    if ("=" in text or ":" in text) and (
        "pass" in lowered
        or "pwd" in lowered
        or "secret" in lowered
        or "token" in lowered
        or "key" in lowered
    ):
        text = _KEY_VALUE.sub(_keep_prefix, text)
    if "AKIA" in text or "ASIA" in text:
        text = _AWS_ACCESS_KEY_ID.sub(MASK, text)
    if len(text) >= 40:
        text = _BASE64_RUN.sub(_mask_aws_secret, text)
    return text


def is_sensitive_key(key: str, parts: Iterable[str] = DEFAULT_SENSITIVE_KEY_PARTS) -> bool:
    """Return True when values under ``key`` must be masked: the one rule for logs and settings.

    Example:
        >>> is_sensitive_key("db_password"), is_sensitive_key("X-Api-Key"), is_sensitive_key("host")
        (True, True, False)
    """
    lowered = key.lower()
    return any(part in lowered for part in parts)


def _unredactable(value: object) -> str:
    # Shown instead of a value redaction choked on: only the type name, never the value.
    return f"<{type(value).__name__} not logged: redaction failed>"


class Redactor:
    """Masks sensitive keys and secret-looking values in nested event dictionaries.

    Decisions per key are memoised, so the hot path for an ordinary key is one dict lookup.

    Example:
        >>> Redactor()(None, "info", {"password": "pw", "url": "redis://u:pw@h/0", "n": 1})
        {'password': '***', 'url': 'redis://u:***@h/0', 'n': 1}
    """

    __slots__ = ("_decisions", "_parts")

    _MAX_MEMO = 4096

    def __init__(self, extra_keys: Iterable[str] = ()) -> None:
        self._parts = tuple({*DEFAULT_SENSITIVE_KEY_PARTS, *(key.lower() for key in extra_keys)})
        self._decisions: dict[str, bool] = {}

    def is_sensitive(self, key: str) -> bool:
        """Return True when values under ``key`` must be masked."""
        decision = self._decisions.get(key)
        if decision is None:
            decision = is_sensitive_key(key, self._parts)
            if len(self._decisions) >= self._MAX_MEMO:
                self._decisions.clear()
            self._decisions[key] = decision
        return decision

    def value(self, value: Any) -> Any:  # noqa: PLR0911 - a flat type switch, one per kind
        """Return ``value`` with embedded secrets masked (containers are copied, not mutated).

        Lists, dicts and sets come back as plain ``list``, ``dict``, ``set`` or ``frozenset``;
        a namedtuple keeps its type (fields named like a secret are masked); other tuples,
        such as ``sys.version_info``, become plain tuples; bytes stay bytes (a bytearray that
        held a secret comes back as bytes).

        Example:
            >>> from collections import namedtuple
            >>> Login = namedtuple("Login", "url password")
            >>> Redactor().value([Login("redis://u:pw@h/0", "pw"), {b"redis://u:pw@h/0"}])
            [Login(url='redis://u:***@h/0', password='***'), {b'redis://u:***@h/0'}]
        """
        if isinstance(value, str):
            return redact_text(value)
        if value.__class__ in _LEAF_TYPES:
            return value
        if isinstance(value, dict):
            return {
                self._key(key): MASK
                if isinstance(key, str) and self.is_sensitive(key)
                else self.value(item)
                for key, item in value.items()
            }
        if isinstance(value, list):
            # Not type(value)(...): a subclass's constructor may take other arguments.
            return [self.value(item) for item in value]
        if isinstance(value, tuple):
            return self._tuple(value)
        if isinstance(value, (set, frozenset)):
            items = (self.value(item) for item in value)
            return frozenset(items) if isinstance(value, frozenset) else set(items)
        if isinstance(value, (bytes, bytearray)):
            # surrogateescape round-trips any bytes, UTF-8 or not, so only secrets change.
            text = value.decode("utf-8", "surrogateescape")
            redacted = redact_text(text)
            return value if redacted == text else redacted.encode("utf-8", "surrogateescape")
        if isinstance(value, BaseException):
            return redact_text(f"{type(value).__name__}: {value}")
        return value

    def _key(self, key: Any) -> Any:
        return redact_text(key) if isinstance(key, str) else self.value(key)

    def _tuple(self, value: tuple[Any, ...]) -> tuple[Any, ...]:
        cls = type(value)
        if cls is not tuple:
            fields = getattr(cls, "_fields", None)
            if isinstance(fields, tuple) and len(fields) == len(value) and hasattr(cls, "_make"):
                # A namedtuple: _make skips a custom __new__, and field names are keys.
                return cls._make(  # type: ignore[no-any-return]
                    MASK if isinstance(name, str) and self.is_sensitive(name) else self.value(item)
                    for name, item in zip(fields, value, strict=True)
                )
        # A plain tuple, or one that cannot be rebuilt from its items (sys.version_info and
        # other structseqs, subclasses with their own __new__): a plain tuple says the same.
        return tuple(self.value(item) for item in value)

    def __call__(
        self, logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        """Structlog processor: mask the event dictionary in place.

        It never raises: a value it cannot redact is replaced by a placeholder naming its
        type, because a log call must not fail and must not show what it could not mask.
        """
        # The memo is read inline and scalars are recognised by one set look-up: this runs
        # for every key of every emitted event.
        decisions = self._decisions
        leaves = _LEAF_TYPES
        try:
            for key, value in event_dict.items():
                sensitive = decisions.get(key)
                if sensitive is None:
                    sensitive = self.is_sensitive(key)
                if sensitive:
                    event_dict[key] = MASK
                elif isinstance(value, str):
                    if len(value) >= 8:
                        event_dict[key] = redact_text(value)
                elif value.__class__ in leaves:
                    pass
                elif isinstance(value, _CONTAINERS):
                    event_dict[key] = self.value(value)
                elif len(leaves) < _MAX_LEAF_TYPES:
                    leaves.add(value.__class__)  # e.g. datetime, UUID, Secret: skip next time
        except Exception:
            self._redact_carefully(event_dict)
        return event_dict

    def _redact_carefully(self, event_dict: MutableMapping[str, Any]) -> None:
        """Redo the event key by key, replacing what cannot be redacted (the rare path)."""
        for key, value in list(event_dict.items()):
            try:
                sensitive = isinstance(key, str) and self.is_sensitive(key)
                event_dict[key] = MASK if sensitive else self.value(value)
            except Exception:
                event_dict[key] = _unredactable(value)


_CONTAINERS = (dict, list, tuple, set, frozenset, bytes, bytearray, BaseException)

#: Classes of values seen to hold nothing to redact (scalars, datetimes, UUIDs...), so the
#: processor skips them with one set look-up instead of a long ``isinstance`` test.
_LEAF_TYPES: set[type] = {int, float, bool, type(None)}
_MAX_LEAF_TYPES = 256
