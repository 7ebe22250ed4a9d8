"""Connection strings without their secrets: for reprs, logs and error messages."""

from __future__ import annotations

import re

__all__ = ["redact_dsn"]

# postgresql://user:secret@host/db  ->  postgresql://user:***@host/db
_URL_PASSWORD = re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^:/?#@\s]*:)[^@\s]*@")
# password=secret / password = 'se cret' / sslpassword=...  ->  password=***
_KV_PASSWORD = re.compile(r"(?i)(\b(?:ssl)?password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]+)")


def redact_dsn(text: str) -> str:
    """Replace every password in ``text`` (URL or key=value DSNs, query options) by ``***``.

    Example:
        >>> redact_dsn("postgresql://ann:s3cret@db:5432/app")
        'postgresql://ann:***@db:5432/app'
        >>> redact_dsn("host=db password='a b' user=ann")
        'host=db password=*** user=ann'
        >>> redact_dsn("postgresql://db/app?password=s3cret&sslmode=require")
        'postgresql://db/app?password=***&sslmode=require'
    """
    return _KV_PASSWORD.sub(r"\1***", _URL_PASSWORD.sub(r"\1***@", text))
