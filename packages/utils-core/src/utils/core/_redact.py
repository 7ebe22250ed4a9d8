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


class Redactor:
    """Masks sensitive keys and secret-looking values in nested event dictionaries.

    Decisions per key are memoised, so the hot path for an ordinary key is one dict lookup.
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
            lowered = key.lower()
            decision = any(part in lowered for part in self._parts)
            if len(self._decisions) >= self._MAX_MEMO:
                self._decisions.clear()
            self._decisions[key] = decision
        return decision

    def value(self, value: Any) -> Any:
        """Return ``value`` with embedded secrets masked (containers are copied, not mutated)."""
        if isinstance(value, str):
            return redact_text(value)
        if isinstance(value, dict):
            return {
                key: MASK if isinstance(key, str) and self.is_sensitive(key) else self.value(item)
                for key, item in value.items()
            }
        if isinstance(value, list | tuple):
            return type(value)(self.value(item) for item in value)
        if isinstance(value, BaseException):
            return redact_text(f"{type(value).__name__}: {value}")
        return value

    def __call__(
        self, logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        """Structlog processor: mask the event dictionary in place."""
        # The memo is read inline and the type test uses a tuple: this runs for every key
        # of every emitted event.
        decisions = self._decisions
        for key, value in event_dict.items():
            sensitive = decisions.get(key)
            if sensitive is None:
                sensitive = self.is_sensitive(key)
            if sensitive:
                event_dict[key] = MASK
            elif isinstance(value, str):
                if len(value) >= 8:
                    event_dict[key] = redact_text(value)
            elif isinstance(value, _CONTAINERS):
                event_dict[key] = self.value(value)
        return event_dict


_CONTAINERS = (dict, list, tuple, BaseException)
