"""Keep credentials out of botocore's own DEBUG log records (private).

botocore logs, at DEBUG, the requests it signs and sends (the session token travels as the
``X-Amz-Security-Token`` header or query parameter; a presigned URL carries its signature)
and the response bodies it parses (a ``GetSecretValue`` answer holds the secret). A filter
on those loggers masks the token, signatures and secret or parameter values (the JSON
fields ``SecretString``, ``SecretBinary`` and ``Value``) before any handler sees the record. It is installed once, when ``utils.aws`` builds its first client.
"""

from __future__ import annotations

import logging
import re
import threading

__all__ = ["install"]

_PATTERNS = (
    # header dicts ('X-Amz-Security-Token': b'...') and query strings (X-Amz-Security-Token=...)
    (re.compile(r"(X-Amz-Security-Token['\"]?\s*[:=]\s*b?['\"]?)[^'\"&\s,}]+", re.I), r"\1***"),
    (re.compile(r"(X-Amz-Signature['\"]?\s*[:=]\s*b?['\"]?)[^'\"&\s,}]+", re.I), r"\1***"),
    (re.compile(r"(Signature=)[0-9a-f]{16,}", re.I), r"\1***"),
    (re.compile(r"(^Signature:\s*)[0-9a-f]{16,}", re.I | re.M), r"\1***"),
    # JSON bodies of Secrets Manager and SSM: "SecretString": "...", "Value": "..."
    (
        re.compile(
            r"(\\?[\"'](?:SecretString|SecretBinary|Value)\\?[\"']\s*:\s*)(\\?[\"']).*?(?<!\\)\2"
        ),
        r"\1\2***\2",
    ),
)
_LOGGERS = ("botocore.auth", "botocore.endpoint", "botocore.parsers", "botocore.httpsession")
_installed = False
_lock = threading.Lock()


def redact(text: str) -> str:
    r"""``text`` with session tokens, signatures and secret values masked.

    Example:
        >>> redact("GET /k?X-Amz-Security-Token=abc&X-Amz-Signature=0123")
        'GET /k?X-Amz-Security-Token=***&X-Amz-Signature=***'
        >>> redact('{"Name": "/db/pw", "Value": "s3cr\\"et", "Version": 1}')
        '{"Name": "/db/pw", "Value": "***", "Version": 1}'
    """
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class _Filter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken record is not ours to fix
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def install() -> None:
    """Add the filter to botocore's loggers (once per process)."""
    global _installed  # noqa: PLW0603 - once per process
    if _installed:
        return
    with _lock:
        if not _installed:
            for name in _LOGGERS:
                logging.getLogger(name).addFilter(_Filter())
            _installed = True
